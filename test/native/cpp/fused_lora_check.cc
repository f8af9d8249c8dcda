// Checks cpu::fusedProjections (base products and LoRA terms as one job, cpu/fused_lora.h) against
// the unfused path it replaces: gemmPackedMulti, then addBias, then one sgmv per projection. Every
// output must have the same bits: random shapes (odd widths, 1-3 projections), 4-40 rows, rows
// with 0-3 weighted adapters (shared rows), several rows on one adapter, adapters stored F32 /
// BF16 / F16, with and without biases, float32 and bf16 activations, 1-3 threads.
// Built and run by test/native/sgmv.test.ts (also with OPENLORA_GEMM=avx2 and =portable). Prints
// one JSON line {"cases": n, "failures": f} and exits 1 on a mismatch.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../../native/cpu/fused_lora.h"
#include "../../../native/cpu/gemm_packed.h"
#include "../../../native/cpu/ops.h"
#include "../../../native/cpu/sgmv.h"
#include "check_random.h"

using namespace openlora;
using namespace openlora::cpu;

namespace {

CheckRandom rnd(4321);

/** One adapter's A [rank, in] and B^T [rank, out] as 16-bit bits (BF16 / F16 top halves) or F32. */
struct Adapter {
  int rank;
  DType dtype;
  std::vector<float> a, bT;
  std::vector<uint16_t> a16, bT16;
  LoraWeights viewA() const { return dtype == DType::F32 ? LoraWeights(a.data()) : LoraWeights(a16.data(), dtype); }
  LoraWeights viewB() const { return dtype == DType::F32 ? LoraWeights(bT.data()) : LoraWeights(bT16.data(), dtype); }
};

/** Any 16-bit pattern with a finite value: the low bits of a bf16 / the exponent-limited f16. */
std::vector<uint16_t> bits16(size_t n, DType t) {
  std::vector<uint16_t> v(n);
  for (auto& h : v) {
    const uint16_t sign = uint16_t(rnd.randint(0, 1) << 15);
    h = t == DType::BF16 ? uint16_t(sign | (uint16_t(rnd.randint(0x3a00, 0x3f7f)))) : uint16_t(sign | uint16_t(rnd.randint(0x1c00, 0x3bff)));
  }
  return v;
}

Adapter makeAdapter(int in, int out) {
  Adapter ad;
  const int ranks[] = {1, 3, 8, 16, 33, 64};
  ad.rank = ranks[rnd.randint(0, 5)];
  ad.dtype = DType(rnd.randint(0, 2));  // F32, F16, BF16
  if (ad.dtype == DType::F32) {
    ad.a = rnd.randn(size_t(ad.rank) * in, 0.1f);
    ad.bT = rnd.randn(size_t(ad.rank) * out, 0.1f);
  } else {
    ad.a16 = bits16(size_t(ad.rank) * in, ad.dtype);
    ad.bT16 = bits16(size_t(ad.rank) * out, ad.dtype);
  }
  return ad;
}

int cases = 0, failures = 0;

void checkOnce(ThreadPool& pool, int count, int m, bool bf16Act) {
  const int in = rnd.randint(1, 5) == 1 ? rnd.randint(17, 100) : 32 * rnd.randint(2, 12);
  std::vector<PackedMatrix> ws;
  std::vector<std::vector<float>> biases;
  std::vector<int> outs;
  for (int j = 0; j < count; j++) {
    const int out = rnd.randint(1, 4) == 1 ? rnd.randint(5, 90) : 16 * rnd.randint(2, 24);
    outs.push_back(out);
    const std::vector<float> w = rnd.randn(size_t(out) * in, 0.2f);
    ws.push_back(PackedMatrix::fromF32(w.data(), out, in, rnd.randint(0, 1) ? DType::BF16 : DType::F32));
    biases.push_back(rnd.randint(0, 1) ? rnd.randn(size_t(out)) : std::vector<float>());
  }
  const std::vector<float> x = rnd.randn(size_t(m) * in);
  // Adapters per projection, and each row's set (0-3 terms; some rows share an adapter).
  std::vector<LoraBatch> batches{size_t(count)};
  std::vector<std::vector<Adapter>> ads{size_t(count)};
  for (int j = 0; j < count; j++) {
    const int na = rnd.randint(1, 6);
    for (int a = 0; a < na; a++) ads[size_t(j)].push_back(makeAdapter(in, outs[size_t(j)]));
    for (int r = 0; r < m;) {
      const int len = rnd.randint(1, 3), terms = rnd.randint(0, 3);
      const int end = std::min(m, r + len);
      for (int t = 0; t < terms; t++) {
        const Adapter& ad = ads[size_t(j)][size_t(rnd.randint(0, na - 1))];
        batches[size_t(j)].add(ad.viewA(), ad.viewB(), ad.rank, r, end, std::uniform_real_distribution<float>(-2.0f, 2.0f)(rnd.rng));
      }
      r = end;
    }
    if (!batches[size_t(j)].empty()) batches[size_t(j)].finalize();
  }
  // Unfused: the products as one job, then per projection the bias and one sgmv.
  std::vector<std::vector<float>> want{size_t(count)}, got{size_t(count)};
  std::vector<PackedProduct> prods;
  for (int j = 0; j < count; j++) {
    want[size_t(j)].assign(size_t(m) * outs[size_t(j)], 0.0f);
    got[size_t(j)].assign(size_t(m) * outs[size_t(j)], -1.0f);
    prods.push_back(PackedProduct{&ws[size_t(j)], nullptr, want[size_t(j)].data(), outs[size_t(j)]});
  }
  gemmPackedMulti(pool, x.data(), in, prods.data(), count, m, bf16Act);
  std::vector<float> tmp;
  for (int j = 0; j < count; j++) {
    const int out = outs[size_t(j)];
    if (!biases[size_t(j)].empty()) addBias(want[size_t(j)].data(), out, biases[size_t(j)].data(), m, out);
    if (!batches[size_t(j)].empty()) sgmv(pool, x.data(), in, in, want[size_t(j)].data(), out, out, batches[size_t(j)], tmp);
  }
  FusedProjection fp[kMaxFusedProjections];
  for (int j = 0; j < count; j++) {
    fp[j] = FusedProjection{&ws[size_t(j)], biases[size_t(j)].empty() ? nullptr : biases[size_t(j)].data(), &batches[size_t(j)],
                            got[size_t(j)].data(), outs[size_t(j)]};
  }
  FusedScratch scratch;
  fusedProjections(pool, x.data(), in, m, fp, count, bf16Act, scratch);
  for (int j = 0; j < count; j++) {
    cases++;
    if (std::memcmp(got[size_t(j)].data(), want[size_t(j)].data(), want[size_t(j)].size() * sizeof(float)) != 0) {
      failures++;
      size_t at = 0;
      while (at < want[size_t(j)].size() && std::memcmp(&got[size_t(j)][at], &want[size_t(j)][at], 4) == 0) at++;
      std::fprintf(stderr, "FAIL count=%d m=%d in=%d out=%d bf16=%d projection %d: element %zu is %.9g, unfused %.9g\n", count, m, in,
                   outs[size_t(j)], int(bf16Act), j, at, got[size_t(j)][at], want[size_t(j)][at]);
    }
  }
}

}  // namespace

int main() {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 12; rep++) {
      for (int m : {4, 7, 16, 40}) checkOnce(pool, rnd.randint(1, 3), m, rep % 3 == 2);
    }
  }
  std::printf("{\"cases\": %d, \"failures\": %d, \"kernel\": \"%s\"}\n", cases, failures, sgmvKernelName());
  return failures ? 1 : 0;
}
