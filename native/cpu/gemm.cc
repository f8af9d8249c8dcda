// See gemm.h. Two micro-kernels with the same contract: MT rows of x (1..4) against one row
// of w, producing MT dot products of length k. Dispatch is decided once, at first use.
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace openlora::cpu {

namespace {

using DotKernel = void (*)(const float* const* xs, int mt, const float* w, int64_t k, float* out);

/** Portable kernel: 8 independent partial sums per row so -O3 can vectorize with SSE2. */
void dotPortable(const float* const* xs, int mt, const float* w, int64_t k, float* out) {
  for (int t = 0; t < mt; t++) {
    const float* x = xs[t];
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      for (int j = 0; j < 8; j++) acc[j] += x[i + j] * w[i + j];
    }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < k; i++) s += x[i] * w[i];
    out[t] = s;
  }
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 sums = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, sums);
  return _mm_cvtss_f32(_mm_add_ss(sums, sh));
}

/** AVX2/FMA kernel for MT (compile-time) rows: two 8-wide accumulators per row, k unrolled by 16. */
template <int MT>
__attribute__((target("avx2,fma"))) void dotAvx2Fixed(const float* const* xs, const float* w, int64_t k, float* out) {
  __m256 a0[MT], a1[MT];
  for (int t = 0; t < MT; t++) a0[t] = a1[t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m256 w0 = _mm256_loadu_ps(w + i);
    __m256 w1 = _mm256_loadu_ps(w + i + 8);
    for (int t = 0; t < MT; t++) {
      a0[t] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[t] + i), w0, a0[t]);
      a1[t] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[t] + i + 8), w1, a1[t]);
    }
  }
  for (; i + 8 <= k; i += 8) {
    __m256 w0 = _mm256_loadu_ps(w + i);
    for (int t = 0; t < MT; t++) a0[t] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[t] + i), w0, a0[t]);
  }
  for (int t = 0; t < MT; t++) {
    float s = hsum256(_mm256_add_ps(a0[t], a1[t]));
    for (int64_t j = i; j < k; j++) s += xs[t][j] * w[j];
    out[t] = s;
  }
}

__attribute__((target("avx2,fma"))) void dotAvx2(const float* const* xs, int mt, const float* w, int64_t k, float* out) {
  switch (mt) {
    case 1: dotAvx2Fixed<1>(xs, w, k, out); return;
    case 2: dotAvx2Fixed<2>(xs, w, k, out); return;
    case 3: dotAvx2Fixed<3>(xs, w, k, out); return;
    default: dotAvx2Fixed<4>(xs, w, k, out); return;
  }
}

bool cpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/** AVX2/FMA when the CPU has it, unless OPENLORA_GEMM=portable (tests the fallback anywhere). */
DotKernel selectKernel() {
  static const DotKernel k = [] {
    const char* force = std::getenv("OPENLORA_GEMM");
    if (force && std::strcmp(force, "portable") == 0) return dotPortable;
    return cpuHasAvx2Fma() ? dotAvx2 : dotPortable;
  }();
  return k;
}

constexpr int64_t kRowsPerTile = 16;  // rows of w kept hot in L1 while all of x streams past
constexpr int kTokensPerTile = 4;     // rows of x per micro-kernel call

}  // namespace

const char* gemmKernelName() { return selectKernel() == dotAvx2 ? "avx2+fma" : "portable"; }

void gemmNT(ThreadPool& pool, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
            int64_t n, int64_t k, float alpha, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  const DotKernel dot = selectKernel();
  // NOTE(why): grain keeps each task at >= ~64k multiply-adds so tiny GEMMs (LoRA shrink,
  // decode of a small model) do not pay the thread wake-up cost.
  const int64_t grain = std::max<int64_t>(kRowsPerTile, (64 * 1024) / std::max<int64_t>(1, m * k));
  pool.parallelFor(n, grain, [&](int64_t n0, int64_t n1) {
    const float* xs[kTokensPerTile];
    float out[kTokensPerTile];
    for (int64_t r0 = n0; r0 < n1; r0 += kRowsPerTile) {
      const int64_t r1 = std::min(n1, r0 + kRowsPerTile);
      for (int64_t t0 = 0; t0 < m; t0 += kTokensPerTile) {
        const int mt = int(std::min<int64_t>(kTokensPerTile, m - t0));
        for (int t = 0; t < mt; t++) xs[t] = x + (t0 + t) * ldx;
        for (int64_t r = r0; r < r1; r++) {
          dot(xs, mt, w + r * k, k, out);
          for (int t = 0; t < mt; t++) {
            float& dst = y[(t0 + t) * ldy + r];
            dst = accumulate ? dst + alpha * out[t] : alpha * out[t];
          }
        }
      }
    }
  });
}

}  // namespace openlora::cpu
