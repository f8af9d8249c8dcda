// The AVX2/FMA expand of cpu::sgmv (dst += coef B^T per row, every adapter dtype). See
// sgmv_kernels.h for the arithmetic order.
//
// NOTE(why): a decode step with many distinct adapters gives each adapter one row: a GEMV over
// B^T [rank, out] per row, ~1 FMA per weight element. The old expand loaded and stored the output
// row once per rank step (a store per FMA) and widened bf16 with vpmovzxwd (a lane-crossing
// shuffle per 8 values). Here one row keeps its sums for 4 rank steps in registers (the running
// sums live in an L1 buffer between blocks), and 16 bf16 values widen with one shift and one
// AND into their even and odd elements (the sums are kept in that order, put back in order once
// per row). The sums start at 0 and are added to dst at the end, whatever the dtype, so an adapter
// gives the same bits stored as F32, F16 or BF16 (the widening is exact).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../src/dtype.h"
#include "sgmv_kernels.h"

namespace openlora::cpu::sgmv_detail {

namespace {

#define OPENLORA_AVX2 __attribute__((target("avx2,fma,f16c")))

/**
 * Loaders of B^T by dtype: pair(p, i) widens elements [i, i + 16) into two vectors (kPermuted:
 * the even then the odd elements, else [i, i + 8) then [i + 8, i + 16)); v8 widens [i, i + 8) in
 * order; s1 one element. All exact.
 */
struct Bf16P {
  static constexpr bool kPermuted = true;
  OPENLORA_AVX2 static inline void pair(const void* p, int64_t i, __m256* e, __m256* o) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
    *e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *o = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int(0xFFFF0000u))));
  }
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static inline float s1(const void* p, int64_t i) { return bf16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};
struct F16P {
  static constexpr bool kPermuted = false;
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
  OPENLORA_AVX2 static inline void pair(const void* p, int64_t i, __m256* e, __m256* o) { *e = v8(p, i), *o = v8(p, i + 8); }
  static inline float s1(const void* p, int64_t i) { return f16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};
struct F32P {
  static constexpr bool kPermuted = false;
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(p) + i); }
  OPENLORA_AVX2 static inline void pair(const void* p, int64_t i, __m256* e, __m256* o) { *e = v8(p, i), *o = v8(p, i + 8); }
  static inline float s1(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};

/** Two vectors of 16 sums (L's order) -> the 16 in order. Even / odd: unpack, then swap 128-bit halves. */
template <class L>
OPENLORA_AVX2 inline void inOrder(__m256 e, __m256 o, __m256* lo, __m256* hi) {
  if constexpr (L::kPermuted) {
    const __m256 a = _mm256_unpacklo_ps(e, o), b = _mm256_unpackhi_ps(e, o);  // [0 1 2 3 | 8 9 10 11], [4 5 6 7 | 12 13 14 15]
    *lo = _mm256_permute2f128_ps(a, b, 0x20);
    *hi = _mm256_permute2f128_ps(a, b, 0x31);
  } else {
    *lo = e, *hi = o;
  }
}

/**
 * One row: t [out] holds the running FMA chains (16-blocks in L's order); rank rows of B^T are
 * consumed NR at a time, each block streamed contiguously. first: the chains start at 0.
 */
template <class L, int NR>
OPENLORA_AVX2 void expandRowBlock(const float* c, const void* b, int64_t out, float* t, bool first, Pf& pf, int64_t esz) {
  __m256 cv[NR];
  for (int r = 0; r < NR; r++) cv[r] = _mm256_broadcast_ss(c + r);
  int64_t q = 0;
  for (; q + 16 <= out; q += 16) {
    __m256 e = first ? _mm256_setzero_ps() : _mm256_loadu_ps(t + q);
    __m256 o = first ? _mm256_setzero_ps() : _mm256_loadu_ps(t + q + 8);
    for (int r = 0; r < NR; r++) {
      __m256 be, bo;
      L::pair(b, r * out + q, &be, &bo);
      e = _mm256_fmadd_ps(cv[r], be, e);
      o = _mm256_fmadd_ps(cv[r], bo, o);
    }
    _mm256_storeu_ps(t + q, e);
    _mm256_storeu_ps(t + q + 8, o);
    pf.advance(NR * 16 * esz);
  }
  if (q + 8 <= out) {
    __m256 acc = first ? _mm256_setzero_ps() : _mm256_loadu_ps(t + q);
    for (int r = 0; r < NR; r++) acc = _mm256_fmadd_ps(cv[r], L::v8(b, r * out + q), acc);
    _mm256_storeu_ps(t + q, acc);
    q += 8;
  }
  for (; q < out; q++) {
    float acc = first ? 0.0f : t[q];
    for (int r = 0; r < NR; r++) acc = std::fma(c[r], L::s1(b, r * out + q), acc);
    t[q] = acc;
  }
}

/** d[q] = (zero ? 0 : d[q]) + chain[q], chain in t (16-blocks in L's order). */
template <class L>
OPENLORA_AVX2 void finishRow(const float* t, int64_t out, float* d, bool zero) {
  int64_t q = 0;
  for (; q + 16 <= out; q += 16) {
    __m256 lo, hi;
    inOrder<L>(_mm256_loadu_ps(t + q), _mm256_loadu_ps(t + q + 8), &lo, &hi);
    if (!zero) lo = _mm256_add_ps(_mm256_loadu_ps(d + q), lo), hi = _mm256_add_ps(_mm256_loadu_ps(d + q + 8), hi);
    _mm256_storeu_ps(d + q, lo);
    _mm256_storeu_ps(d + q + 8, hi);
  }
  for (; q < out; q++) d[q] = zero ? t[q] : d[q] + t[q];
}

/**
 * Several rows: per 16-column block of B^T (rank x 16 elements, L1-resident), JR rows at a time
 * keep their chains over all rank steps in registers.
 */
template <class L, int JR>
OPENLORA_AVX2 void expandBlockRows(const float* const* coef, float* const* dst, const bool* zero, const void* b, int rank, int64_t out,
                                   int64_t q) {
  __m256 e[JR], o[JR];
  for (int j = 0; j < JR; j++) e[j] = o[j] = _mm256_setzero_ps();
  for (int r = 0; r < rank; r++) {
    __m256 be, bo;
    L::pair(b, r * out + q, &be, &bo);
    for (int j = 0; j < JR; j++) {
      const __m256 cv = _mm256_broadcast_ss(coef[j] + r);
      e[j] = _mm256_fmadd_ps(cv, be, e[j]);
      o[j] = _mm256_fmadd_ps(cv, bo, o[j]);
    }
  }
  for (int j = 0; j < JR; j++) {
    __m256 lo, hi;
    inOrder<L>(e[j], o[j], &lo, &hi);
    float* d = dst[j] + q;
    if (!zero[j]) lo = _mm256_add_ps(_mm256_loadu_ps(d), lo), hi = _mm256_add_ps(_mm256_loadu_ps(d + 8), hi);
    _mm256_storeu_ps(d, lo);
    _mm256_storeu_ps(d + 8, hi);
  }
}

template <class L>
OPENLORA_AVX2 void expandL(const float* coef, int64_t ld, int64_t n, float* const* dst, const bool* zero, const void* bT, int rank,
                           int64_t out, Pf& pf, int64_t esz) {
  if (n == 1) {
    // NOTE(why): thread_local: each pool thread its own running sums.
    thread_local std::vector<float> tStore;
    tStore.resize(size_t(out));
    float* t = tStore.data();
    const char* b = static_cast<const char*>(bT);
    int r = 0;
    for (; r + 4 <= rank; r += 4) expandRowBlock<L, 4>(coef + r, b + r * out * esz, out, t, r == 0, pf, esz);
    switch (rank - r) {
      case 3: expandRowBlock<L, 3>(coef + r, b + r * out * esz, out, t, r == 0, pf, esz); break;
      case 2: expandRowBlock<L, 2>(coef + r, b + r * out * esz, out, t, r == 0, pf, esz); break;
      case 1: expandRowBlock<L, 1>(coef + r, b + r * out * esz, out, t, r == 0, pf, esz); break;
      default: break;
    }
    return finishRow<L>(t, out, dst[0], zero[0]);
  }
  const float* cj[16];
  for (int64_t j = 0; j < n; j++) cj[j] = coef + j * ld;
  int64_t q = 0;
  for (; q + 16 <= out; q += 16) {
    pf.advance(16 * esz * rank);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) expandBlockRows<L, 4>(cj + j, dst + j, zero + j, bT, rank, out, q);
    switch (n - j) {
      case 3: expandBlockRows<L, 3>(cj + j, dst + j, zero + j, bT, rank, out, q); break;
      case 2: expandBlockRows<L, 2>(cj + j, dst + j, zero + j, bT, rank, out, q); break;
      case 1: expandBlockRows<L, 1>(cj + j, dst + j, zero + j, bT, rank, out, q); break;
      default: break;
    }
  }
  // Column tail (< 16): in order, the same chains as one row's tail.
  for (int64_t j = 0; j < n; j++) {
    int64_t qq = q;
    float* d = dst[j];
    if (qq + 8 <= out) {
      __m256 acc = _mm256_setzero_ps();
      for (int r = 0; r < rank; r++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(cj[j] + r), L::v8(bT, r * out + qq), acc);
      _mm256_storeu_ps(d + qq, zero[j] ? acc : _mm256_add_ps(_mm256_loadu_ps(d + qq), acc));
      qq += 8;
    }
    for (; qq < out; qq++) {
      float acc = 0.0f;
      for (int r = 0; r < rank; r++) acc = std::fma(cj[j][r], L::s1(bT, r * out + qq), acc);
      d[qq] = zero[j] ? acc : d[qq] + acc;
    }
  }
}

}  // namespace

void expandAvx2(const float* coef, int64_t ld, int64_t n, float* const* dst, const bool* zero, const void* bT, DType dtype, int rank,
                int64_t out, Pf& pf) {
  switch (dtype) {
    case DType::BF16: return expandL<Bf16P>(coef, ld, n, dst, zero, bT, rank, out, pf, 2);
    case DType::F16: return expandL<F16P>(coef, ld, n, dst, zero, bT, rank, out, pf, 2);
    default: return expandL<F32P>(coef, ld, n, dst, zero, bT, rank, out, pf, 4);
  }
}

}  // namespace openlora::cpu::sgmv_detail
