// See attention_bench.h.
#include "attention_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>

#include "../cpu/paged_attention.h"
#include "../cpu/thread_pool.h"

namespace openlora::cli {

std::string benchAttention(const AttentionBenchOptions& o) {
  cpu::ThreadPool pool(o.threads);
  const size_t es = o.kvDtype == DType::BF16 ? 2 : 4;
  const int64_t ld = int64_t(o.heads) * o.headDim;
  std::mt19937 rng(1);
  std::string runs;
  for (int ctx : o.contexts) {
    const int perSeq = (ctx + o.blockSize - 1) / o.blockSize;
    const size_t blockBytes = size_t(o.kvHeads) * o.blockSize * o.headDim * es;
    const size_t poolBytes = blockBytes * size_t(perSeq) * size_t(o.batch);
    std::vector<std::vector<uint16_t>> keys(size_t(o.layers)), values(size_t(o.layers));
    for (int l = 0; l < o.layers; l++) {
      // Values near 1 (bf16 bits 0x3c00-0x3dff, either sign for K): finite scores, both dtypes.
      keys[size_t(l)].resize(poolBytes / 2);
      values[size_t(l)].resize(poolBytes / 2);
      for (uint16_t& x : keys[size_t(l)]) x = uint16_t(0x3c00 + (rng() & 0x1ff) + ((rng() & 1) << 15));
      for (uint16_t& x : values[size_t(l)]) x = uint16_t(0x3c00 + (rng() & 0x1ff));
    }
    std::vector<std::vector<int32_t>> tables(size_t(o.batch));
    std::vector<int32_t> ids(size_t(perSeq) * size_t(o.batch));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);  // blocks anywhere in the pool, as after churn
    for (int b = 0; b < o.batch; b++) tables[size_t(b)].assign(ids.begin() + b * perSeq, ids.begin() + (b + 1) * perSeq);
    std::vector<float> q(size_t(o.batch * ld)), out(size_t(o.batch * ld));
    for (float& x : q) x = float(rng() % 1000) / 1000.0f - 0.5f;
    std::vector<cpu::PagedAttentionRow> rows(size_t(o.batch));
    std::vector<double> ms;
    for (int r = 0; r < o.rounds + 1; r++) {  // the first step warms up (page faults, thread start)
      const auto t0 = std::chrono::steady_clock::now();
      for (int l = 0; l < o.layers; l++) {
        for (int b = 0; b < o.batch; b++)
          rows[size_t(b)] = {keys[size_t(l)].data(), values[size_t(l)].data(), tables[size_t(b)].data(), o.blockSize, ctx, o.kvDtype, 0};
        cpu::pagedAttention(pool, q.data(), ld, rows.data(), out.data(), ld, o.batch, o.heads, o.kvHeads, o.headDim);
      }
      const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    const double kvBytes = double(ctx) * o.batch * o.kvHeads * o.headDim * double(es) * 2 * o.layers;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s{\"ctx\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"kv_GBps\": %.2f}", runs.empty() ? "" : ", ", ctx,
                  median, ms.front(), kvBytes / median / 1e6);
    runs += buf;
  }
  char head[512];
  std::snprintf(head, sizeof head,
                "{\"kernel\": \"%s\", \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"block_size\": %d, \"batch\": %d, "
                "\"kv_cache_dtype\": \"%s\", \"threads\": %d, \"rounds\": %d, \"runs\": [",
                cpu::attentionKernelName(o.headDim), o.layers, o.heads, o.kvHeads, o.headDim, o.blockSize, o.batch,
                o.kvDtype == DType::BF16 ? "bfloat16" : "float32", o.threads, o.rounds);
  return std::string(head) + runs + "]}";
}

}  // namespace openlora::cli
