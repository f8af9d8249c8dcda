// Internal to cpu::sgmv (sgmv.cc, sgmv_expand.cc, sgmv_avx512.cc): the paced prefetcher, hsum,
// the AVX2 expand kernel and the AVX-512 shrink / one-row expand. Not a public interface.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "../src/dtype.h"

namespace openlora::cpu::sgmv_detail {

/**
 * Software prefetch of the next group's A and B^T into L2, paced by the current group's
 * consumption: advance(bytes) issues one prefetch per 64 bytes the kernel has just read, so the
 * next group is in L2 when its task starts (a decode step reads every adapter once, from
 * DRAM: without this, each group's first accesses wait on memory latency and the hardware
 * prefetcher tracks too few streams to keep the bus busy). Default-constructed: prefetches nothing.
 */
struct Pf {
  const char* p = nullptr;
  const char* end = nullptr;
  const char* p2 = nullptr;
  const char* end2 = nullptr;
  int64_t credit = 0;
  inline void advance(int64_t bytes) {
    credit += bytes;
    while (credit >= 64) {
      credit -= 64;
      if (p < end) {
        _mm_prefetch(p, _MM_HINT_T1);
        p += 64;
      } else if (p2 < end2) {
        _mm_prefetch(p2, _MM_HINT_T1);
        p2 += 64;
      } else {
        credit = 0;
        return;
      }
    }
  }
};

/** Fixed-order horizontal sum of 8 lanes (AVX). */
__attribute__((target("avx"))) inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/**
 * dst[j][q] (= 0 first when zero[j]) += sum_r coef[j * ld + r] * bT[r, q] for rows j < n (n <= 16),
 * q < out (AVX2/FMA, + F16C for F16; call only when useAvx2()). bT [rank, out] of `dtype` (F32,
 * F16 or BF16, widened exactly). Each output is one FMA chain over r ascending starting from 0,
 * then added to dst (or stored when zero[j]): the same bits for every n, tile and dtype of the
 * same values. pf.advance is called with the bytes of B^T read.
 */
void expandAvx2(const float* coef, int64_t ld, int64_t n, float* const* dst, const bool* zero, const void* bT, DType dtype, int rank,
                int64_t out, Pf& pf);

/**
 * h[j * ld + r] = x_j . A[r] for rows j < n (n <= 16) and r < rank (AVX-512 F/BW; call only when
 * useAvx512()). xs[j]: row j of x [in] float32; A [rank, in] of `dtype` (F32, F16 or BF16,
 * widened exactly). Each dot product: one 16-lane accumulator over 32-element blocks (even then
 * odd elements), reduced, then the in % 32 tail in order (sgmv_avx512.cc): the same bits for every n,
 * tile and dtype of the same values. pf.advance is called with the bytes of A read.
 */
void shrinkAvx512(const float* const* xs, int64_t n, const void* a, DType dtype, int64_t in, int rank, float* h, int64_t ld, Pf& pf);

/**
 * expandAvx2's contract and bits (AVX-512 F/BW; call only when useAvx512()): one row (n == 1)
 * runs 8 rank steps a pass over 32-output blocks; several rows go to expandAvx2.
 */
void expandAvx512(const float* coef, int64_t ld, int64_t n, float* const* dst, const bool* zero, const void* bT, DType dtype, int rank,
                  int64_t out, Pf& pf);

}  // namespace openlora::cpu::sgmv_detail
