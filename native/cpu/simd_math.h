// Vector math shared by the CPU kernels (attention's online softmax, the SwiGLU gate).
#pragma once

#include <immintrin.h>

namespace openlora::cpu {

/**
 * exp(x), 8 lanes: Cephes expf. x = n ln2 + r with n = round(x log2 e), r by a
 * two-constant (Cody-Waite) reduction, exp(r) by a degree-7 polynomial (1 + r + r^2 P(r)),
 * times 2^n built in the exponent bits. exp(0) = 1 exactly; lanes below ln(2^-126) give 0
 * (no denormals); NaN stays NaN. x is clamped to [-88, 88.376] first: meant for x <= 0 (the
 * attention's scores minus their max) and x < 87 (the SwiGLU gate blends larger ones away).
 */
__attribute__((target("avx2,fma"))) inline __m256 expAvx2(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654475f), _CMP_LT_OQ);
  // max/min(c, x) return x when x is NaN, so NaN reaches the polynomial and propagates.
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), _mm256_max_ps(_mm256_set1_ps(-88.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

}  // namespace openlora::cpu
