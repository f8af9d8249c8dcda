// See ops.h.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd_math.h"  // expAvx2 (header only: ops.cc needs nothing beyond the standard library)

namespace openlora::cpu {

namespace {

/** siluMul's AVX2 body: 8 at a time with expAvx2 (within 2 ulp of std::exp), the tail scalar. */
__attribute__((target("avx2,fma"))) int64_t siluMulAvx2(float* gate, const float* up, int64_t count) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), low = _mm256_set1_ps(-87.0f);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = expAvx2(_mm256_sub_ps(zero, g));
    // NOTE(why): expAvx2 clamps its argument, so below -87 (where std::exp(-v) is past 6e37 and
    // silu(v) under 1.5e-36) the gate is taken as v * 0: -0, and NaN for -inf, as std::exp gives.
    const __m256 silu = _mm256_blendv_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_mul_ps(g, zero), _mm256_cmp_ps(g, low, _CMP_LT_OQ));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  return i;
}

}  // namespace

void rmsNorm(const float* x, const float* w, float eps, float* y, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; r++) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;  // NOTE(why): double accumulation; HF's fp32 mean differs by ~1e-7 relative
    for (int64_t i = 0; i < n; i++) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (int64_t i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
  }
}

void applyRope(float* x, int64_t ldx, const int32_t* pos, const float* invFreq, int64_t m, int heads, int headDim, int rotDim,
               float mscale) {
  const int half = (rotDim > 0 ? rotDim : headDim) / 2;
  std::vector<float> cs(half), sn(half);
  for (int64_t t = 0; t < m; t++) {
    for (int j = 0; j < half; j++) {
      const float angle = float(pos[t]) * invFreq[j];  // float32 product, as HF
      // HF: cos = emb.cos() * attention_scaling, in float32.
      cs[j] = float(std::cos(double(angle))) * mscale;
      sn[j] = float(std::sin(double(angle))) * mscale;
    }
    for (int h = 0; h < heads; h++) {
      float* v = x + t * ldx + int64_t(h) * headDim;
      for (int j = 0; j < half; j++) {
        const float a = v[j], b = v[j + half];
        v[j] = a * cs[j] - b * sn[j];
        v[j + half] = b * cs[j] + a * sn[j];
      }
    }
  }
}

void siluMul(float* gate, const float* up, int64_t count, bool avx2) {
  for (int64_t i = avx2 ? siluMulAvx2(gate, up, count) : 0; i < count; i++) {
    const float g = gate[i];
    gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void geluTanhMul(float* gate, const float* up, int64_t count) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < count; i++) {
    const float v = gate[i];
    gate[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v))) * up[i];
  }
}

void softcap(float* x, int64_t count, float cap) {
  for (int64_t i = 0; i < count; i++) x[i] = cap * std::tanh(x[i] / cap);
}

void addBias(float* y, int64_t ld, const float* b, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; r++) {
    for (int64_t i = 0; i < n; i++) y[r * ld + i] += b[i];
  }
}

}  // namespace openlora::cpu
