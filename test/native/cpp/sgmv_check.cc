// Checks cpu::sgmv (SGMV segments + BGMV gathered rows, cat of several weighted adapters, rows
// without adapters, adapters stored F32 / BF16 / F16) against naive per-row loops on random
// inputs; and that a sequence's rows come out bit-identical when it is
// run alone instead of inside the batch (results must not depend on batch composition).
// Built and run by test/native/sgmv.test.ts (with OPENLORA_GEMM=portable too). Prints one JSON
// line {"cases": n, "maxRelErr": e} and exits 1 when a case exceeds its tolerance.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../../native/cpu/dispatch.h"
#include "../../../native/cpu/sgmv.h"
#include "check_random.h"

using namespace openlora;
using namespace openlora::cpu;

namespace {

CheckRandom rnd(1234);

struct Adapter {
  int rank;
  DType dtype = DType::F32;
  std::vector<float> a;   // [rank, in]   (values representable in dtype)
  std::vector<float> b;   // [out, rank]  (PEFT layout, for the naive reference)
  std::vector<float> bT;  // [rank, out]
  std::vector<uint16_t> a16, bT16;  // the same values as 16-bit bits when dtype != F32
  LoraWeights viewA() const { return dtype == DType::F32 ? LoraWeights(a.data()) : LoraWeights(a16.data(), dtype); }
  LoraWeights viewB() const { return dtype == DType::F32 ? LoraWeights(bT.data()) : LoraWeights(bT16.data(), dtype); }
};

uint32_t bitsOf(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
float fromBits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
/** Round to BF16 (nearest even); returns the bits, `v` becomes the rounded value. */
uint16_t toBf16(float& v) {
  const uint32_t u = bitsOf(v);
  const uint16_t h = uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
  v = fromBits(uint32_t(h) << 16);
  return h;
}
/** Round to IEEE binary16 (nearest even, subnormals included; |v| < 65504); returns the bits, `v` becomes the rounded value. */
uint16_t toF16(float& v) {
  const float a = std::fabs(v);
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  e = std::max(e - 1, -14);
  const double q = std::nearbyint(double(a) * std::ldexp(1.0, 10 - e));  // 11-bit significand (ties to even)
  double r = q * std::ldexp(1.0, e - 10);
  uint16_t h;
  if (q >= 2048) {
    e++;
    h = uint16_t(((e + 15) << 10) | 0);
  } else if (q < 1024) {
    h = uint16_t(q);  // subnormal (e == -14)
  } else {
    h = uint16_t(((e + 15) << 10) | (uint32_t(q) - 1024));
  }
  if (v < 0) h |= 0x8000;
  v = float(v < 0 ? -r : r);
  return h;
}

void storeAs(Adapter& ad, DType t) {
  ad.dtype = t;
  if (t == DType::F32) return;
  ad.a16.resize(ad.a.size());
  ad.bT16.resize(ad.bT.size());
  for (size_t i = 0; i < ad.a.size(); i++) ad.a16[i] = t == DType::BF16 ? toBf16(ad.a[i]) : toF16(ad.a[i]);
  for (size_t i = 0; i < ad.bT.size(); i++) ad.bT16[i] = t == DType::BF16 ? toBf16(ad.bT[i]) : toF16(ad.bT[i]);
}

double maxRel = 0;
int cases = 0, failures = 0;

void compare(const std::vector<float>& got, const std::vector<float>& want, double tol, const char* what) {
  double scale = 1e-6, err = 0;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < got.size(); i++) err = std::max(err, double(std::fabs(got[i] - want[i])));
  const double rel = err / scale;
  maxRel = std::max(maxRel, rel);
  cases++;
  if (!(rel <= tol)) {
    failures++;
    std::fprintf(stderr, "FAIL %s: max abs err %g (scale %g, rel %g)\n", what, err, scale, rel);
  }
}

/**
 * Demo shapes: (in, out) of q/k/v/o/gate/up/down of the tiny model, plus odd sizes for the tails
 * of the 16-wide BF16 blocks (an 8-wide block, then scalars) and of the 8-wide F32 / F16 ones,
 * and of the AVX-512 kernels' 32-element blocks (in % 32 and out % 32 left to scalars).
 */
const int kShapes[][2] = {{256, 256}, {256, 128}, {256, 704}, {704, 256}, {37, 29}, {100, 9}, {45, 23}, {64, 57}, {96, 48}};

void checkSgmv(ThreadPool& pool, int numSeqs, int numAdapters, bool decode) {
  for (const auto& shape : kShapes) {
    const int in = shape[0], out = shape[1];
    std::vector<Adapter> ads(static_cast<size_t>(numAdapters));
    const int ranks[] = {1, 2, 4, 8, 16, 32, 64, 3, 7};
    for (int i = 0; i < numAdapters; i++) {
      Adapter& ad = ads[size_t(i)];
      ad.rank = ranks[i % 9];
      ad.a = rnd.randn(size_t(ad.rank) * in);
      ad.b = rnd.randn(size_t(out) * ad.rank);
      ad.bT.resize(ad.b.size());
      for (int o = 0; o < out; o++)
        for (int r = 0; r < ad.rank; r++) ad.bT[size_t(r) * out + o] = ad.b[size_t(o) * ad.rank + r];
      storeAs(ad, DType((i + i / 9) % 3));  // F32, F16, BF16 (values rounded to the dtype), each with every rank
      for (int o = 0; o < out; o++)
        for (int r = 0; r < ad.rank; r++) ad.b[size_t(o) * ad.rank + r] = ad.bT[size_t(r) * out + o];
    }
    // Sequences: decode (1 row) or prefill (1..40 rows); 0..3 adapters each (0 = base).
    struct Seq { int rows; std::vector<std::pair<int, float>> set; };
    std::vector<Seq> seqs;
    int T = 0;
    for (int s = 0; s < numSeqs; s++) {
      Seq q;
      q.rows = decode ? 1 : rnd.randint(1, 40);
      const int n = rnd.randint(0, 3);
      for (int j = 0; j < n; j++) q.set.push_back({rnd.randint(0, numAdapters - 1), std::uniform_real_distribution<float>(-1.5f, 1.5f)(rnd.rng)});
      T += q.rows;
      seqs.push_back(q);
    }
    const std::vector<float> x = rnd.randn(size_t(T) * in);
    std::vector<float> y = rnd.randn(size_t(T) * out);
    const std::vector<float> y0 = y;
    std::vector<float> want = y;
    LoraBatch lb;
    int row = 0;
    for (const Seq& q : seqs) {
      for (const auto& [ai, w] : q.set) {
        const Adapter& ad = ads[size_t(ai)];
        const float scale = w * 0.5f;
        lb.add(ad.viewA(), ad.viewB(), ad.rank, row, row + q.rows, scale);
        // Naive reference: one matrix-vector pair per row and adapter, in double.
        for (int t = row; t < row + q.rows; t++) {
          std::vector<double> h(size_t(ad.rank), 0.0);
          for (int r = 0; r < ad.rank; r++)
            for (int i = 0; i < in; i++) h[size_t(r)] += double(x[size_t(t) * in + i]) * ad.a[size_t(r) * in + i];
          for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int r = 0; r < ad.rank; r++) acc += double(ad.b[size_t(o) * ad.rank + r]) * h[size_t(r)];
            want[size_t(t) * out + o] += float(scale * acc);
          }
        }
      }
      row += q.rows;
    }
    if (!lb.empty()) {
      lb.finalize();
      std::vector<float> tmp;
      sgmv(pool, x.data(), in, in, y.data(), out, out, lb, tmp);
    }
    char what[128];
    std::snprintf(what, sizeof what, "sgmv %s seqs=%d adapters=%d in=%d out=%d", decode ? "decode" : "prefill", numSeqs, numAdapters, in, out);
    compare(y, want, 1e-4, what);

    // Batch independence: two sequences run alone give bit-identical rows.
    row = 0;
    for (size_t s = 0; s < seqs.size(); s++) {
      const Seq& q = seqs[s];
      if (s == 0 || s == seqs.size() / 2) {
        LoraBatch alone;
        for (const auto& [ai, w] : q.set) alone.add(ads[size_t(ai)].viewA(), ads[size_t(ai)].viewB(), ads[size_t(ai)].rank, 0, q.rows, w * 0.5f);
        std::vector<float> ya(y0.begin() + int64_t(row) * out, y0.begin() + int64_t(row + q.rows) * out);
        if (!alone.empty()) {
          alone.finalize();
          std::vector<float> tmp;
          sgmv(pool, x.data() + int64_t(row) * in, in, in, ya.data(), out, out, alone, tmp);
        }
        cases++;
        if (std::memcmp(ya.data(), y.data() + int64_t(row) * out, ya.size() * sizeof(float)) != 0) {
          failures++;
          std::fprintf(stderr, "FAIL %s: sequence %zu alone differs from its rows in the batch\n", what, s);
        }
      }
      row += q.rows;
    }
  }
}

}  // namespace

int main() {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int seqs : {1, 4, 16, 64}) {
      for (int adapters : {1, 4, 16, 64}) {
        checkSgmv(pool, seqs, adapters, true);
        checkSgmv(pool, seqs, adapters, false);
      }
    }
  }
  std::printf("{\"cases\": %d, \"failures\": %d, \"maxRelErr\": %g, \"kernel\": \"%s\"}\n", cases, failures, maxRel, sgmvKernelName());
  return failures ? 1 : 0;
}
