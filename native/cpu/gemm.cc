// See gemm.h. Register-tiled "dot-product" micro-kernels: MT rows of x (1..3) against NR rows
// of w (4 or 8), MT*NR accumulators of 8 lanes, reduced horizontally at the end. Both operands
// are k-contiguous (nn.Linear layout), so no packing is needed. Dispatch is decided once.
//
// NOTE(why): the old kernel (4 rows of x against 1 row of w) issued 10 loads per 8 FMAs and was
// load-port bound; MT=3 x NR=4 issues 7 loads per 12 FMAs (16 ymm registers exactly).
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace openlora::cpu {

namespace {

// ---------------------------------------------------------------------------------------------
// Weight row access: float32 rows, or int8 rows (converted to float32 on load; scale applied
// once to the finished dot product).

struct F32Rows {
  const float* w;  // [n, k]
  int64_t ldw;
};
struct Q8Rows {
  const int8_t* w;  // [n, k]
  int64_t ldw;
};

// ---------------------------------------------------------------------------------------------
// Portable kernels

inline float dotF32(const float* x, const float* w, int64_t k) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += x[i + j] * w[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < k; i++) s += x[i] * w[i];
  return s;
}

inline float dotQ8(const float* x, const int8_t* w, int64_t k) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += x[i + j] * float(w[i + j]);
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < k; i++) s += x[i] * float(w[i]);
  return s;
}

/** out[t * nr + r] = xs[t] . w[r]: the portable tile. */
void tilePortable(const float* const* xs, int mt, F32Rows w, int nr, int64_t k, float* out) {
  for (int t = 0; t < mt; t++)
    for (int r = 0; r < nr; r++) out[t * nr + r] = dotF32(xs[t], w.w + r * w.ldw, k);
}
void tilePortable(const float* const* xs, int mt, Q8Rows w, int nr, int64_t k, float* out) {
  for (int t = 0; t < mt; t++)
    for (int r = 0; r < nr; r++) out[t * nr + r] = dotQ8(xs[t], w.w + r * w.ldw, k);
}

// ---------------------------------------------------------------------------------------------
// AVX2 / FMA kernels

__attribute__((target("avx2,fma"))) inline __m256 loadW(F32Rows w, int r, int64_t i) { return _mm256_loadu_ps(w.w + r * w.ldw + i); }
__attribute__((target("avx2,fma"))) inline __m256 loadW(Q8Rows w, int r, int64_t i) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.w + r * w.ldw + i));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}
inline float scalarW(F32Rows w, int r, int64_t i) { return w.w[r * w.ldw + i]; }
inline float scalarW(Q8Rows w, int r, int64_t i) { return float(w.w[r * w.ldw + i]); }

/** [s(a), s(b), s(c), s(d)]: horizontal sums of four vectors at once. */
__attribute__((target("avx2,fma"))) inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

__attribute__((target("avx2,fma"))) inline float hsum1(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

/** out[t * NR + r] = xs[t] . w[r] for MT x NR (compile-time) rows. NR is 1, 4 or 8. */
template <int MT, int NR, typename W>
__attribute__((target("avx2,fma"))) void tileAvx2(const float* const* xs, W w, int64_t k, float* out) {
  __m256 acc[MT][NR];
  for (int t = 0; t < MT; t++)
    for (int r = 0; r < NR; r++) acc[t][r] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv[MT];
    for (int t = 0; t < MT; t++) xv[t] = _mm256_loadu_ps(xs[t] + i);
    for (int r = 0; r < NR; r++) {
      const __m256 wv = loadW(w, r, i);
      for (int t = 0; t < MT; t++) acc[t][r] = _mm256_fmadd_ps(xv[t], wv, acc[t][r]);
    }
  }
  for (int t = 0; t < MT; t++) {
    if constexpr (NR % 4 == 0) {
      for (int r = 0; r < NR; r += 4) _mm_storeu_ps(out + t * NR + r, hsum4(acc[t][r], acc[t][r + 1], acc[t][r + 2], acc[t][r + 3]));
    } else {
      for (int r = 0; r < NR; r++) out[t * NR + r] = hsum1(acc[t][r]);
    }
    for (int64_t j = i; j < k; j++)
      for (int r = 0; r < NR; r++) out[t * NR + r] += xs[t][j] * scalarW(w, r, j);
  }
}

/** Rows of w handled per tile for MT rows of x (keeps MT * NR <= 12 accumulators, >= 8 chains). */
constexpr int nrFor(int mt) { return mt == 1 ? 8 : 4; }

template <typename W>
__attribute__((target("avx2,fma"))) void tileAvx2Dispatch(const float* const* xs, int mt, W w, int nr, int64_t k, float* out) {
  if (nr == nrFor(mt)) {
    switch (mt) {
      case 1: tileAvx2<1, 8>(xs, w, k, out); return;
      case 2: tileAvx2<2, 4>(xs, w, k, out); return;
      default: tileAvx2<3, 4>(xs, w, k, out); return;
    }
  }
  // Tail rows of w: one at a time.
  float tmp[3];
  for (int r = 0; r < nr; r++) {
    W wr = w;
    wr.w += r * w.ldw;
    switch (mt) {
      case 1: tileAvx2<1, 1>(xs, wr, k, tmp); break;
      case 2: tileAvx2<2, 1>(xs, wr, k, tmp); break;
      default: tileAvx2<3, 1>(xs, wr, k, tmp); break;
    }
    for (int t = 0; t < mt; t++) out[t * nr + r] = tmp[t];
  }
}

bool cpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

constexpr int kMaxMT = 3;            // rows of x per micro-tile
constexpr int64_t kRowBlock = 32;    // rows of w kept hot in L1/L2 while all of x streams past
}  // namespace

// NOTE(why): a parallel op must carry at least this many multiply-adds per task; below it the
// hand-over (even spinning, ~1 us) and the lost cache locality cost more than the split gains.
// OPENLORA_GEMM_GRAIN overrides it (for measurements).
int64_t gemmMinTaskMacs() {
  static const int64_t v = [] {
    const char* s = std::getenv("OPENLORA_GEMM_GRAIN");
    return s ? std::max<int64_t>(1, std::atoll(s)) : int64_t(96 * 1024);
  }();
  return v;
}

namespace {

/** y[t, j] = alpha * (x_t . w_j) * scale_j (+ y) over rows [n0, n1) of w, all m rows of x. */
template <typename W>
void gemmBlock(const float* const* xrows, int64_t m, W w, const float* scale, float* y, int64_t ldy, int64_t n0, int64_t n1,
               int64_t k, float alpha, bool accumulate, bool avx2) {
  float out[kMaxMT * 8];
  for (int64_t b0 = n0; b0 < n1; b0 += kRowBlock) {
    const int64_t b1 = std::min(n1, b0 + kRowBlock);
    for (int64_t t0 = 0; t0 < m; t0 += kMaxMT) {
      const int mt = int(std::min<int64_t>(kMaxMT, m - t0));
      const int nrMax = nrFor(mt);
      for (int64_t r0 = b0; r0 < b1; r0 += nrMax) {
        const int nr = int(std::min<int64_t>(nrMax, b1 - r0));
        W wr = w;
        wr.w += r0 * w.ldw;
        if (avx2) tileAvx2Dispatch(xrows + t0, mt, wr, nr, k, out);
        else tilePortable(xrows + t0, mt, wr, nr, k, out);
        for (int t = 0; t < mt; t++) {
          float* yr = y + (t0 + t) * ldy + r0;
          for (int r = 0; r < nr; r++) {
            const float v = alpha * (scale ? scale[r0 + r] : 1.0f) * out[t * nr + r];
            yr[r] = accumulate ? yr[r] + v : v;
          }
        }
      }
    }
  }
}

template <typename W>
void gemmAny(ThreadPool& pool, const float* x, int64_t ldx, W w, const float* scale, float* y, int64_t ldy, int64_t m, int64_t n,
             int64_t k, float alpha, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  const bool avx2 = useAvx2();
  // Row pointers of x: a small stack array covers decode batches; prefill uses the heap.
  constexpr int64_t kStack = 256;
  const float* stackRows[kStack];
  std::unique_ptr<const float*[]> heapRows;
  const float** xrows = stackRows;
  if (m > kStack) {
    heapRows.reset(new const float*[size_t(m)]);
    xrows = heapRows.get();
  }
  for (int64_t t = 0; t < m; t++) xrows[t] = x + t * ldx;
  const int64_t grain = ((std::max<int64_t>(8, gemmMinTaskMacs() / std::max<int64_t>(1, m * k)) + 7) / 8) * 8;
  pool.parallelFor((n + 7) / 8, grain / 8, [&](int64_t c0, int64_t c1) {
    gemmBlock(xrows, m, w, scale, y, ldy, c0 * 8, std::min(n, c1 * 8), k, alpha, accumulate, avx2);
  });
}

}  // namespace

bool useAvx2() {
  static const bool v = [] {
    const char* force = std::getenv("OPENLORA_GEMM");
    if (force && std::strcmp(force, "portable") == 0) return false;
    return cpuHasAvx2Fma();
  }();
  return v;
}

const char* gemmKernelName() { return useAvx2() ? "avx2+fma" : "portable"; }

void gemmNT(ThreadPool& pool, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m, int64_t n,
            int64_t k, float alpha, bool accumulate) {
  gemmAny(pool, x, ldx, F32Rows{w, k}, nullptr, y, ldy, m, n, k, alpha, accumulate);
}

void gemmNTQ8(ThreadPool& pool, const float* x, int64_t ldx, const int8_t* wq, const float* scale, float* y, int64_t ldy,
              int64_t m, int64_t n, int64_t k, float alpha, bool accumulate) {
  gemmAny(pool, x, ldx, Q8Rows{wq, k}, scale, y, ldy, m, n, k, alpha, accumulate);
}

void gemmNTRows(const float* const* xs, int64_t m, const float* w, int64_t ldw, int64_t n, int64_t k, float* y, int64_t ldy) {
  gemmBlock(xs, m, F32Rows{w, ldw}, nullptr, y, ldy, 0, n, k, 1.0f, false, useAvx2());
}

}  // namespace openlora::cpu
