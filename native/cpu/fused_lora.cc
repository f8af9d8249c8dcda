// See fused_lora.h.
#include "fused_lora.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "dispatch.h"
#include "ops.h"  // addBias

namespace openlora::cpu {

void fusedProjections(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const FusedProjection* ps, int count, bool bf16Activations,
                      FusedScratch& scratch) {
  if (count < 1 || count > kMaxFusedProjections)
    throw std::invalid_argument("fusedProjections: count must be in [1, " + std::to_string(kMaxFusedProjections) + "], got " +
                                std::to_string(count));
  requireSameWidth("fusedProjections", count, [&](int j) { return ps[j].w->cols(); });
  if (m <= 0) return;
  const int64_t in = ps[0].w->cols();
  PackedProduct prods[kMaxFusedProjections];
  for (int j = 0; j < count; j++) prods[j] = PackedProduct{ps[j].w, nullptr, ps[j].y, ps[j].ldy};
  PackedJob& gemm = scratch.gemm;
  gemm.prepare(x, ldx, prods, count, m, bf16Activations);
  auto& tasks = scratch.loraTasks;
  tasks.clear();
  for (int j = 0; j < count; j++) {
    if (!ps[j].lora || ps[j].lora->empty()) continue;
    scratch.lora[j].prepare(x, ldx, in, ps[j].w->rows(), *ps[j].lora);
    for (int64_t i = 0; i < scratch.lora[j].tasks(); i++) tasks.push_back({j, i});
  }
  // Units: unit s runs chunks [s C / S, (s + 1) C / S) then LoRA tasks [s L / S, (s + 1) L / S).
  // NOTE(why): one LoRA task (a group: one adapter's A and B^T, 15-450 KB) per unit when there are
  // fewer tasks than chunks, so the prefetch distance is a few chunks and a unit's prefetched
  // bytes fit the L2 beside its chunks' panels; at least two units per thread for the balance.
  const int64_t C = gemm.chunks(), L = int64_t(tasks.size());
  const int64_t hi = std::max(C, L), lo = std::min(C, L);
  const int64_t S = std::max(lo, std::min<int64_t>(hi, 2 * pool.size()));
  const SgmvJob* lora = scratch.lora;
  pool.parallelFor(S, 1, [&](int64_t s0, int64_t s1) {
    // NOTE(why): thread_local named inside the lambda: each pool thread its own ranges.
    thread_local PrefetchRanges pf;
    for (int64_t s = s0; s < s1; s++) {
      const int64_t c0 = s * C / S, c1 = (s + 1) * C / S, l0 = s * L / S, l1 = (s + 1) * L / S;
      pf.clear();
      for (int64_t l = l0; l < l1; l++) lora[tasks[size_t(l)].first].addPrefetch(tasks[size_t(l)].second, pf);
      if (c1 > c0) gemm.run(c0, c1, &pf);
      for (int64_t l = l0; l < l1; l++) lora[tasks[size_t(l)].first].run(tasks[size_t(l)].second);
    }
  });
  // Bias, then the terms, per row (the order sgmv after addBias gives).
  int64_t width = 0;
  for (int j = 0; j < count; j++) width += ps[j].w->rows();
  const int64_t grain = std::max<int64_t>(1, (int64_t(16) * 1024 + width - 1) / std::max<int64_t>(1, width));
  pool.parallelFor(m, grain, [&](int64_t r0, int64_t r1) {
    for (int j = 0; j < count; j++) {
      const FusedProjection& p = ps[j];
      if (p.bias) addBias(p.y + r0 * p.ldy, p.ldy, p.bias, r1 - r0, p.w->rows());
      if (p.lora && !p.lora->empty()) lora[j].finishRows(r0, r1, p.y, p.ldy);
    }
  });
}

}  // namespace openlora::cpu
