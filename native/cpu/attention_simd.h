// The SIMD building blocks of paged_attention.cc's AVX2 kernel: K/V loads (float32, or bfloat16
// widened exactly), the fixed reduction trees, the P.V update and the q.k scores of 8 positions,
// on 256-bit registers and, where the CPU has AVX-512, on 512-bit ones with the same bits
// (element by element the same operations in the same order). Included by paged_attention.cc
// only; see paged_attention.h for the algorithm.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "paged_attention.h"  // kAttentionTile

// NOTE(why): GCC 12's AVX-512 headers trip -Wmaybe-uninitialized / -Wuninitialized inside their
// own intrinsics (GCC bug 105593: _mm512_cvtepu16_epi32, _mm512_undefined_ps), as in gemm_packed.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace openlora::cpu::attention_simd {

/** Positions per tile of the online softmax (paged_attention.h kAttentionTile). */
constexpr int kTile = kAttentionTile;


/** 8 KV elements from p (any alignment) as float32: a plain load, or bf16 widened exactly. */
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/** [sum(a0), sum(a1), ..., sum(a7)]: each lane's sum is a fixed tree of its own vector. */
__attribute__((target("avx2,fma"))) inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                                          __m256 a6, __m256 a7) {
  const __m256 t0 = _mm256_hadd_ps(a0, a1);  // [a0 01, a0 23, a1 01, a1 23 | a0 45, a0 67, a1 45, a1 67]
  const __m256 t1 = _mm256_hadd_ps(a2, a3);
  const __m256 t2 = _mm256_hadd_ps(a4, a5);
  const __m256 t3 = _mm256_hadd_ps(a6, a7);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);  // [a0 0-3, a1 0-3, a2 0-3, a3 0-3 | a0 4-7, ..., a3 4-7]
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) inline float hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

/** Columns [d, d + 8 DB) of o[g] = corr[g] o[g] + sum_i p[g][i] vp[i] (i in order), GC x DB chains. */
template <int GC, int DB, typename T>
__attribute__((target("avx2,fma"))) inline void pvBlockAvx2(const float (*p)[kTile], const float* corr, const T* const* vp,
                                                            int n, int hd, int d, float* o) {
  __m256 acc[GC][DB];
  for (int g = 0; g < GC; g++) {
    const __m256 c = _mm256_set1_ps(corr[g]);
    for (int k = 0; k < DB; k++) acc[g][k] = _mm256_mul_ps(_mm256_loadu_ps(o + int64_t(g) * hd + d + 8 * k), c);
  }
  for (int i = 0; i < n; i++) {
    __m256 v[DB];
    for (int k = 0; k < DB; k++) v[k] = load8(vp[i] + d + 8 * k);
    for (int g = 0; g < GC; g++) {
      const __m256 pg = _mm256_broadcast_ss(&p[g][i]);
      for (int k = 0; k < DB; k++) acc[g][k] = _mm256_fmadd_ps(pg, v[k], acc[g][k]);
    }
  }
  for (int g = 0; g < GC; g++)
    for (int k = 0; k < DB; k++) _mm256_storeu_ps(o + int64_t(g) * hd + d + 8 * k, acc[g][k]);
}

/**
 * Scores of 8 positions for one query head: out[i] = scale * q . k8[i] (hd % 8 == 0). Eight
 * chains (one per position) of 8-lane FMAs over d in order, then reduce8's fixed tree.
 */
template <typename T>
__attribute__((target("avx2,fma"))) inline void scores8Avx2(const float* qh, const T* const* k8, int hd, __m256 vscale, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int d = 0; d < hd; d += 8) {
    const __m256 qv = _mm256_loadu_ps(qh + d);
    a0 = _mm256_fmadd_ps(load8(k8[0] + d), qv, a0);
    a1 = _mm256_fmadd_ps(load8(k8[1] + d), qv, a1);
    a2 = _mm256_fmadd_ps(load8(k8[2] + d), qv, a2);
    a3 = _mm256_fmadd_ps(load8(k8[3] + d), qv, a3);
    a4 = _mm256_fmadd_ps(load8(k8[4] + d), qv, a4);
    a5 = _mm256_fmadd_ps(load8(k8[5] + d), qv, a5);
    a6 = _mm256_fmadd_ps(load8(k8[6] + d), qv, a6);
    a7 = _mm256_fmadd_ps(load8(k8[7] + d), qv, a7);
  }
  _mm256_store_ps(out, _mm256_mul_ps(reduce8(a0, a1, a2, a3, a4, a5, a6, a7), vscale));
}

/**
 * The P.V update of one tile over all hd columns. NOTE(why): about 8 independent FMA chains
 * (GC heads x DB column octets) hide the FMA latency; one chain per head stalls on it.
 * Each column's sum runs over positions in order, so the blocking changes no bit.
 */
template <int GC, typename T>
__attribute__((target("avx2,fma"))) inline void pvAvx2(const float (*p)[kTile], const float* corr, const T* const* vp, int n,
                                                       int hd, float* o) {
  constexpr int DB = GC == 1 ? 8 : GC == 2 ? 4 : GC <= 4 ? 2 : 1;
  int d = 0;
  for (; d + 8 * DB <= hd; d += 8 * DB) pvBlockAvx2<GC, DB, T>(p, corr, vp, n, hd, d, o);
  for (; d < hd; d += 8) pvBlockAvx2<GC, 1, T>(p, corr, vp, n, hd, d, o);
}

#define OPENLORA_ATTN_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma")))

/** 16 KV elements from p as float32 (bf16 widened exactly). */
OPENLORA_ATTN_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
OPENLORA_ATTN_AVX512 inline __m512 load16(const uint16_t* p) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

/** pvBlockAvx2 on 16-column blocks: each element's arithmetic (o c, then fma over i in order) is the same. */
template <int GC, int DB, typename T>
OPENLORA_ATTN_AVX512 inline void pvBlockAvx512(const float (*p)[kTile], const float* corr, const T* const* vp, int n, int hd, int d,
                                               float* o) {
  __m512 acc[GC][DB];
  for (int g = 0; g < GC; g++) {
    const __m512 c = _mm512_set1_ps(corr[g]);
    for (int k = 0; k < DB; k++) acc[g][k] = _mm512_mul_ps(_mm512_loadu_ps(o + int64_t(g) * hd + d + 16 * k), c);
  }
  for (int i = 0; i < n; i++) {
    __m512 v[DB];
    for (int k = 0; k < DB; k++) v[k] = load16(vp[i] + d + 16 * k);
    for (int g = 0; g < GC; g++) {
      const __m512 pg = _mm512_set1_ps(p[g][i]);
      for (int k = 0; k < DB; k++) acc[g][k] = _mm512_fmadd_ps(pg, v[k], acc[g][k]);
    }
  }
  for (int g = 0; g < GC; g++)
    for (int k = 0; k < DB; k++) _mm512_storeu_ps(o + int64_t(g) * hd + d + 16 * k, acc[g][k]);
}

/**
 * pvAvx2 with 512-bit registers (32 of them: up to 16 accumulators, so every column of a 64-wide
 * head stays in registers over the tile for GC <= 4); columns past the last 16-block go through
 * pvBlockAvx2. Same bits as pvAvx2 (element-wise the same operations in the same order).
 */
template <int GC, typename T>
OPENLORA_ATTN_AVX512 __attribute__((noinline)) void pvAvx512(const float (*p)[kTile], const float* corr, const T* const* vp, int n, int hd, float* o) {
  constexpr int DB = GC <= 2 ? 8 : GC <= 4 ? 4 : 2;
  int d = 0;
  for (; d + 16 * DB <= hd; d += 16 * DB) pvBlockAvx512<GC, DB, T>(p, corr, vp, n, hd, d, o);
  for (; d + 16 <= hd; d += 16) pvBlockAvx512<GC, 1, T>(p, corr, vp, n, hd, d, o);
  for (; d < hd; d += 8) pvBlockAvx2<GC, 1, T>(p, corr, vp, n, hd, d, o);
}

/** v in both 256-bit halves (as doubles: _mm512_broadcast_f64x4 needs only AVX-512F). */
OPENLORA_ATTN_AVX512 inline __m512d both256(__m256 v) { return _mm512_broadcast_f64x4(_mm256_castps_pd(v)); }

/** _mm256_hadd_ps in each 256-bit half: [a0 + a1, a2 + a3, b0 + b1, b2 + b3] per 128-bit lane. */
OPENLORA_ATTN_AVX512 inline __m512 hadd512(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/**
 * scores8Avx2 for two query heads at once, head q0 in the low 256-bit half of every register and
 * q1 in the high half (each K line is loaded once for both): per head the same lanes, the same
 * FMAs in the same order and reduce8's tree (hadd512, then the two 128-bit lanes of each half
 * added as reduce8's permute2f128 pair does), so the same bits as scores8Avx2 per head.
 */
template <typename T>
OPENLORA_ATTN_AVX512 inline void scores8PairAvx512(const float* q0, const float* q1, const T* const* k8, int hd, __m512 vscale,
                                                   float* out0, float* out1) {
  __m512 a[8];
  for (int j = 0; j < 8; j++) a[j] = _mm512_setzero_ps();
  for (int d = 0; d < hd; d += 8) {
    const __m512 qv = _mm512_castpd_ps(_mm512_insertf64x4(both256(_mm256_loadu_ps(q0 + d)), _mm256_castps_pd(_mm256_loadu_ps(q1 + d)), 1));
    for (int j = 0; j < 8; j++) a[j] = _mm512_fmadd_ps(_mm512_castpd_ps(both256(load8(k8[j] + d))), qv, a[j]);
  }
  const __m512 u0 = hadd512(hadd512(a[0], a[1]), hadd512(a[2], a[3]));  // per half: reduce8's u0
  const __m512 u1 = hadd512(hadd512(a[4], a[5]), hadd512(a[6], a[7]));  // and u1
  // Per half h: [u0 lane 2h, u1 lane 2h] + [u0 lane 2h + 1, u1 lane 2h + 1] (lanes of 128 bits).
  const __m512 sum = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 r = _mm512_mul_ps(_mm512_shuffle_f32x4(sum, sum, _MM_SHUFFLE(3, 1, 2, 0)), vscale);  // [head 0 | head 1]
  _mm256_store_ps(out0, _mm512_castps512_ps256(r));
  _mm256_store_ps(out1, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r), 1)));
}

/**
 * The scores of 8 positions for GC query heads (qh: head g at qh + g hd; out: head g at
 * out + g kTile): heads in pairs on 512-bit registers (scores8PairAvx512), an odd last one on
 * 256-bit ones (scores8Avx2). The same bits as scores8Avx2 for every head.
 */
template <int GC, typename T>
OPENLORA_ATTN_AVX512 __attribute__((noinline)) void scoresAvx512(const float* qh, const T* const* k8, int hd, float scale, float* out) {
  const __m512 vscale = _mm512_set1_ps(scale);
  int g = 0;
  for (; g + 1 < GC; g += 2) scores8PairAvx512(qh + int64_t(g) * hd, qh + int64_t(g + 1) * hd, k8, hd, vscale, out + g * kTile, out + (g + 1) * kTile);
  if (g < GC) scores8Avx2(qh + int64_t(g) * hd, k8, hd, _mm256_set1_ps(scale), out + g * kTile);
}

}  // namespace openlora::cpu::attention_simd
