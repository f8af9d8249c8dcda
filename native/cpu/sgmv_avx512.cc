// The AVX-512 shrink and one-row expand of cpu::sgmv (sgmv.h), used where the CPU has AVX-512
// F/BW (useAvx512()). See sgmv_kernels.h for their contracts.
//
// NOTE(why): a decode step with many distinct adapters gives each adapter one row, so both
// halves of the LoRA are GEMVs that stream A [rank, in] and B^T [rank, out] once. The AVX2
// kernels ran at ~44 GB/s with the adapters in cache and ~29 GB/s from DRAM on a 2-vCPU Zen 5
// (16 adapters of ranks 8-64 on a 960 x 2560 module): bound by instructions, not memory (one
// 8-lane FMA per 16 bytes of BF16 plus a lane-crossing widen; 4 dot chains at FMA latency).
// Here one 64-byte line of BF16 widens with one shift and one AND into its even and odd elements
// (no shuffle) and feeds two 16-lane FMAs; the one-row shrink keeps 8 rows of A (8 chains) in
// flight, the expand 8 rank steps per pass over its running sums.
//
// Arithmetic order. Shrink (a dot product x . A[r]): one 16-lane accumulator; per 32-element
// block k (ascending), lane i takes x[k + 2i] A[r][k + 2i], then x[k + 2i + 1] A[r][k + 2i + 1]
// (two FMAs); then hsum16 (_mm512_reduce_add_ps), then the in % 32 tail with scalar fma in
// order. The same for every tile shape (rows of x, rows of A) and for F32 / F16 / BF16 A of the
// same values (F32 and F16 are permuted into the BF16 lane order), so a row's bits never depend
// on the other rows of its group. It differs from the AVX2
// kernel's 8-lane order (and from the portable one) by float rounding only. Expand: each output
// is one FMA chain over the rank ascending, from 0, then added to dst: the bits of
// expandAvx2 (sgmv_kernels.h), whatever the vector width.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "../src/dtype.h"
#include "sgmv_kernels.h"

// NOTE(why): GCC 12's AVX-512 headers trip -Wmaybe-uninitialized / -Wuninitialized inside their
// own intrinsics (_mm256_undefined_pd in _mm512_reduce_add_ps; GCC bug 105593), as in gemm_packed.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace openlora::cpu::sgmv_detail {

namespace {

#define OPENLORA_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

/** Lane i of the result: element 2i (kEven) or 2i + 1 (kOdd) of the 32 elements lo:hi. */
OPENLORA_AVX512 inline __m512i evenIdx() {
  return _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
}
OPENLORA_AVX512 inline __m512i oddIdx() {
  return _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
}

/**
 * 32 consecutive elements [i, i + 32) of a weight matrix widened exactly to float32: *e gets
 * elements i + 2j, *o elements i + 2j + 1 (j < 16). BF16: one shift and one AND of the 64-byte
 * line; F16 / F32: widened in order, then permuted.
 */
struct Bf16E {
  static constexpr int64_t kSize = 2;
  OPENLORA_AVX512 static inline void evenOdd(const void* p, int64_t i, __m512* e, __m512* o) {
    const __m512i v = _mm512_loadu_si512(static_cast<const uint16_t*>(p) + i);
    *e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *o = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xFFFF0000u))));
  }
  static inline float s1(const void* p, int64_t i) { return bf16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};
struct F16E {
  static constexpr int64_t kSize = 2;
  OPENLORA_AVX512 static inline void evenOdd(const void* p, int64_t i, __m512* e, __m512* o) {
    const uint16_t* h = static_cast<const uint16_t*>(p) + i;
    const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
    const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + 16)));
    *e = _mm512_permutex2var_ps(lo, evenIdx(), hi);
    *o = _mm512_permutex2var_ps(lo, oddIdx(), hi);
  }
  static inline float s1(const void* p, int64_t i) { return f16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};
struct F32E {
  static constexpr int64_t kSize = 4;
  OPENLORA_AVX512 static inline void evenOdd(const void* p, int64_t i, __m512* e, __m512* o) {
    const float* f = static_cast<const float*>(p) + i;
    const __m512 lo = _mm512_loadu_ps(f), hi = _mm512_loadu_ps(f + 16);
    *e = _mm512_permutex2var_ps(lo, evenIdx(), hi);
    *o = _mm512_permutex2var_ps(lo, oddIdx(), hi);
  }
  static inline float s1(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};

// --- shrink ---------------------------------------------------------------------------------

/**
 * h[i * ld + r0 + q] = x_i . A[r0 + q] for R rows of x and C rows of A (the order in the file
 * comment). xp[i]: row i of x permuted per 32-block (even elements, then odd); xs[i]: row i as
 * given (the tail).
 */
template <class L, int R, int C>
OPENLORA_AVX512 void shrinkTile(const float* const* xp, const float* const* xs, const void* a, int64_t in, int r0, float* h, int64_t ld,
                                Pf& pf) {
  __m512 acc[R][C];
  for (int i = 0; i < R; i++)
    for (int q = 0; q < C; q++) acc[i][q] = _mm512_setzero_ps();
  const int64_t blocks = in / 32;
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t k = b * 32;
    __m512 xe[R], xo[R];
    for (int i = 0; i < R; i++) xe[i] = _mm512_loadu_ps(xp[i] + k), xo[i] = _mm512_loadu_ps(xp[i] + k + 16);
    for (int q = 0; q < C; q++) {
      __m512 we, wo;
      L::evenOdd(a, (r0 + q) * in + k, &we, &wo);
      for (int i = 0; i < R; i++) acc[i][q] = _mm512_fmadd_ps(xo[i], wo, _mm512_fmadd_ps(xe[i], we, acc[i][q]));
    }
    pf.advance(C * 32 * L::kSize);
  }
  for (int i = 0; i < R; i++) {
    for (int q = 0; q < C; q++) {
      float s = _mm512_reduce_add_ps(acc[i][q]);
      for (int64_t k = blocks * 32; k < in; k++) s = std::fma(xs[i][k], L::s1(a, (r0 + q) * in + k), s);
      h[i * ld + r0 + q] = s;
    }
  }
}

/** All rank rows of A for R rows of x: C rows of A at a time (8 for one row, 4 for several), then the remainder. */
template <class L, int R>
OPENLORA_AVX512 void shrinkRows(const float* const* xp, const float* const* xs, const void* a, int64_t in, int rank, float* h, int64_t ld,
                                Pf& pf) {
  int r0 = 0;
  if constexpr (R == 1) {
    for (; r0 + 8 <= rank; r0 += 8) shrinkTile<L, R, 8>(xp, xs, a, in, r0, h, ld, pf);
  }
  for (; r0 + 4 <= rank; r0 += 4) shrinkTile<L, R, 4>(xp, xs, a, in, r0, h, ld, pf);
  if (r0 + 2 <= rank) shrinkTile<L, R, 2>(xp, xs, a, in, r0, h, ld, pf), r0 += 2;
  if (r0 < rank) shrinkTile<L, R, 1>(xp, xs, a, in, r0, h, ld, pf);
}

template <class L>
OPENLORA_AVX512 void shrinkL(const float* const* xs, int64_t n, const void* a, int64_t in, int rank, float* h, int64_t ld, Pf& pf) {
  // Each row of x once into the even / odd order of the 32-blocks (L1-resident while A streams).
  // NOTE(why): thread_local: each pool thread its own copies.
  thread_local std::vector<float> permStore;
  const int64_t blocks = in / 32, w = blocks * 32;
  permStore.resize(size_t(n * w));
  const float* xp[16];
  for (int64_t i = 0; i < n; i++) {
    float* d = permStore.data() + i * w;
    for (int64_t b = 0; b < blocks; b++) {
      const __m512 lo = _mm512_loadu_ps(xs[i] + b * 32), hi = _mm512_loadu_ps(xs[i] + b * 32 + 16);
      _mm512_storeu_ps(d + b * 32, _mm512_permutex2var_ps(lo, evenIdx(), hi));
      _mm512_storeu_ps(d + b * 32 + 16, _mm512_permutex2var_ps(lo, oddIdx(), hi));
    }
    xp[i] = d;
  }
  // NOTE(why): one row takes 8 rows of A a pass (8 chains of two FMAs a block cover the FMA
  // latency); several rows (prefill segments, decode rows sharing an adapter) take 4 x 4 tiles
  // (16 accumulators): each line of A feeds 8 FMAs, 12 loads per 32 FMAs. 4 x 2 tiles with
  // separate even / odd accumulators ran a prefill's LoRA 13-15% slower than the AVX2 kernel.
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) shrinkRows<L, 4>(xp + i, xs + i, a, in, rank, h + i * ld, ld, pf);
  switch (n - i) {
    case 3: shrinkRows<L, 3>(xp + i, xs + i, a, in, rank, h + i * ld, ld, pf); break;
    case 2: shrinkRows<L, 2>(xp + i, xs + i, a, in, rank, h + i * ld, ld, pf); break;
    case 1: shrinkRows<L, 1>(xp + i, xs + i, a, in, rank, h + i * ld, ld, pf); break;
    default: break;
  }
}

// --- one-row expand -------------------------------------------------------------------------

/**
 * One row, NR rank steps: the running sums t [out] (the 32-blocks in L's even / odd order, the
 * tail in order) += c[r] * B^T[r] for r < NR. first: the chains start at 0.
 */
template <class L, int NR>
OPENLORA_AVX512 void expandPass(const float* c, const void* b, int64_t out, float* t, bool first, Pf& pf) {
  __m512 cv[NR];
  for (int r = 0; r < NR; r++) cv[r] = _mm512_set1_ps(c[r]);
  int64_t q = 0;
  for (; q + 32 <= out; q += 32) {
    __m512 e = first ? _mm512_setzero_ps() : _mm512_loadu_ps(t + q);
    __m512 o = first ? _mm512_setzero_ps() : _mm512_loadu_ps(t + q + 16);
    for (int r = 0; r < NR; r++) {
      __m512 be, bo;
      L::evenOdd(b, r * out + q, &be, &bo);
      e = _mm512_fmadd_ps(cv[r], be, e);
      o = _mm512_fmadd_ps(cv[r], bo, o);
    }
    _mm512_storeu_ps(t + q, e);
    _mm512_storeu_ps(t + q + 16, o);
    pf.advance(NR * 32 * L::kSize);
  }
  for (; q < out; q++) {
    float acc = first ? 0.0f : t[q];
    for (int r = 0; r < NR; r++) acc = std::fma(c[r], L::s1(b, r * out + q), acc);
    t[q] = acc;
  }
}

/** dst[q] = (zero ? 0 : dst[q]) + t[q], t's 32-blocks put back in order. */
OPENLORA_AVX512 void finishRow(const float* t, int64_t out, float* d, bool zero) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  int64_t q = 0;
  for (; q + 32 <= out; q += 32) {
    const __m512 e = _mm512_loadu_ps(t + q), o = _mm512_loadu_ps(t + q + 16);
    __m512 v0 = _mm512_permutex2var_ps(e, lo, o), v1 = _mm512_permutex2var_ps(e, hi, o);
    if (!zero) v0 = _mm512_add_ps(_mm512_loadu_ps(d + q), v0), v1 = _mm512_add_ps(_mm512_loadu_ps(d + q + 16), v1);
    _mm512_storeu_ps(d + q, v0);
    _mm512_storeu_ps(d + q + 16, v1);
  }
  for (; q < out; q++) d[q] = zero ? t[q] : d[q] + t[q];
}

template <class L>
OPENLORA_AVX512 void expandRow(const float* coef, float* dst, bool zero, const void* bT, int rank, int64_t out, Pf& pf) {
  // NOTE(why): thread_local: each pool thread its own running sums.
  thread_local std::vector<float> tStore;
  tStore.resize(size_t(out));
  float* t = tStore.data();
  const char* b = static_cast<const char*>(bT);
  const int64_t step = out * L::kSize;  // bytes of one rank row of B^T
  int r = 0;
  for (; r + 8 <= rank; r += 8) expandPass<L, 8>(coef + r, b + r * step, out, t, r == 0, pf);
  if (r + 4 <= rank) expandPass<L, 4>(coef + r, b + r * step, out, t, r == 0, pf), r += 4;
  if (r + 2 <= rank) expandPass<L, 2>(coef + r, b + r * step, out, t, r == 0, pf), r += 2;
  if (r < rank) expandPass<L, 1>(coef + r, b + r * step, out, t, r == 0, pf);
  finishRow(t, out, dst, zero);
}

}  // namespace

void shrinkAvx512(const float* const* xs, int64_t n, const void* a, DType dtype, int64_t in, int rank, float* h, int64_t ld, Pf& pf) {
  switch (dtype) {
    case DType::BF16: return shrinkL<Bf16E>(xs, n, a, in, rank, h, ld, pf);
    case DType::F16: return shrinkL<F16E>(xs, n, a, in, rank, h, ld, pf);
    default: return shrinkL<F32E>(xs, n, a, in, rank, h, ld, pf);
  }
}

void expandAvx512(const float* coef, int64_t ld, int64_t n, float* const* dst, const bool* zero, const void* bT, DType dtype, int rank,
                  int64_t out, Pf& pf) {
  if (n != 1) return expandAvx2(coef, ld, n, dst, zero, bT, dtype, rank, out, pf);  // several rows: compute-bound, same bits
  switch (dtype) {
    case DType::BF16: return expandRow<Bf16E>(coef, dst[0], zero[0], bT, rank, out, pf);
    case DType::F16: return expandRow<F16E>(coef, dst[0], zero[0], bT, rank, out, pf);
    default: return expandRow<F32E>(coef, dst[0], zero[0], bT, rank, out, pf);
  }
}

}  // namespace openlora::cpu::sgmv_detail
