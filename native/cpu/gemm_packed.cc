// See gemm_packed.h. Outer-product micro-kernels on packed panels: per input feature i, one
// broadcast of x[r, i] per row and one 16-wide load per panel feed MR x NP vector accumulators
// (acc[r][p] += x[r, i] * W[panel p][i][0..16)). No horizontal sums, no packing of x.
//
// NOTE(why): the row-major "dot-product" kernel this replaced (until 2026-11-30) reached ~40% of
// FMA peak on Zen 4 at batch 16 (7 loads per 12 FMAs, horizontal reductions); here 12 rows x 2
// panels issue 2 vector loads + 12 broadcasts per 24 FMAs (AVX-512) and 6 rows x 1 panel 2 loads +
// 6 broadcasts per 12 FMAs (AVX2), the classic BLIS shapes. NOTE(why): 12 rows, not 8: each BF16
// panel load is widened by 2 vector uops beside the FMAs, and 12 rows spread them over more FMAs
// (batch-16 decode +5% on a Zen 5 EPYC, 512-token prefill unchanged; 16 rows x 2 panels need 32
// accumulators and spill). Each output stays one FMA chain over k
// in ascending order in every tile shape and both instruction sets, which keeps results
// batch-invariant.
#include "gemm_packed.h"

#include "cpu_features.h"
#include "dispatch.h"
#include "gemm_amx.h"

// NOTE(why): GCC 12's AVX-512 headers build _mm512_cvtepu16_epi32 / _mm512_slli_epi32 on
// _mm512_undefined_epi32(), which -Wmaybe-uninitialized reports inside every caller (a known
// false positive, GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace openlora::cpu {

namespace {

constexpr int kP = PackedMatrix::kPanel;

// ---------------------------------------------------------------------------------------------
// Element loads per instruction set. T is float (F32), uint16_t (BF16) or int8_t (I8).

inline float scalarAt(const float* p) { return *p; }
inline float scalarAt(const uint16_t* p) { return bf16ToFloat(*p); }
inline float scalarAt(const int8_t* p) { return float(*p); }

__attribute__((target("avx512f"))) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline __m512 load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
__attribute__((target("avx512f"))) inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
__attribute__((target("avx2,fma"))) inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

/**
 * Lines a tile prefetches into L2 while it runs (the memory of the work its thread does next,
 * PackedJob::run): `lines` consecutive 64-byte lines from p, spread evenly over the tile's k
 * steps (at most one a step), so the misses stay in flight beside the FMAs instead of a burst
 * that fills the miss buffers and stalls the core.
 */
struct TilePrefetch {
  const char* p = nullptr;
  int64_t lines = 0;  // <= steps
  int64_t acc = 0;
  /** Once per k step of a loop of `steps`: issues the next line on `lines` of the steps (Bresenham). */
  inline void step(int64_t steps) {
    if (lines <= 0) return;
    acc += lines;
    if (acc >= steps) {
      acc -= steps;
      _mm_prefetch(p, _MM_HINT_T1);
      p += 64;
    }
  }
};

/**
 * The one-row tiles' software prefetch (kStreamPrefetchBytes ahead on each of the NP panel
 * streams, pstride elements apart) at k step i: one line per stream whenever step i starts a new
 * 64-byte line of the panel (k steps of 16 elements: every 4th (I8), 2nd (BF16) or every step (F32)).
 */
template <int NP, typename T>
inline void streamPrefetch(const T* w, int64_t pstride, int64_t i) {
  constexpr int64_t stepBytes = int64_t(kP) * int64_t(sizeof(T));
  constexpr int64_t every = stepBytes >= 64 ? 1 : 64 / stepBytes;
  if (i % every != 0) return;
  for (int p = 0; p < NP; p++)
    _mm_prefetch(reinterpret_cast<const char*>(w + p * pstride + i * kP) + kStreamPrefetchBytes, _MM_HINT_T0);
}

// ---------------------------------------------------------------------------------------------
// Micro-kernels: out[r * NP * 16 + p * 16 + j] = sum_i x[r, i] * panel_p[i][j], for MR rows of
// x and NP consecutive panels (pstride elements apart). pf: TilePrefetch (the arithmetic ignores it).

template <int MR, int NP, typename T>
__attribute__((target("avx512f"))) void tile512(const float* x, int64_t ldx, const T* w, int64_t pstride, int64_t k, float* out,
                                                TilePrefetch pf = {}) {
  __m512 acc[MR][NP];
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i++) {
    pf.step(k);
    if constexpr (MR == 1) streamPrefetch<NP>(w, pstride, i);
    __m512 wv[NP];
    for (int p = 0; p < NP; p++) wv[p] = load16(w + p * pstride + i * kP);
    for (int r = 0; r < MR; r++) {
      const __m512 xb = _mm512_set1_ps(x[r * ldx + i]);
      for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(xb, wv[p], acc[r][p]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < NP; p++) _mm512_storeu_ps(out + (r * NP + p) * kP, acc[r][p]);
}

template <int MR, int NP, typename T>
__attribute__((target("avx2,fma"))) void tile256(const float* x, int64_t ldx, const T* w, int64_t pstride, int64_t k, float* out,
                                                 TilePrefetch pf = {}) {
  __m256 acc[MR][2 * NP];
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < 2 * NP; p++) acc[r][p] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; i++) {
    pf.step(k);
    if constexpr (MR == 1) streamPrefetch<NP>(w, pstride, i);
    __m256 wv[2 * NP];
    for (int p = 0; p < NP; p++) {
      wv[2 * p] = load8(w + p * pstride + i * kP);
      wv[2 * p + 1] = load8(w + p * pstride + i * kP + 8);
    }
    for (int r = 0; r < MR; r++) {
      const __m256 xb = _mm256_set1_ps(x[r * ldx + i]);
      for (int p = 0; p < 2 * NP; p++) acc[r][p] = _mm256_fmadd_ps(xb, wv[p], acc[r][p]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < 2 * NP; p++) _mm256_storeu_ps(out + (r * NP) * kP + p * 8, acc[r][p]);
}

template <int MR, int NP, typename T>
void tilePortable(const float* x, int64_t ldx, const T* w, int64_t pstride, int64_t k, float* out) {
  for (int r = 0; r < MR; r++) {
    for (int p = 0; p < NP; p++) {
      float acc[kP] = {};
      for (int64_t i = 0; i < k; i++) {
        const float xv = x[r * ldx + i];
        const T* wi = w + p * pstride + i * kP;
        for (int j = 0; j < kP; j++) acc[j] += xv * scalarAt(wi + j);
      }
      std::memcpy(out + (r * NP + p) * kP, acc, sizeof acc);
    }
  }
}

enum class Isa { Portable, Avx2, Avx512 };

Isa detectIsa() {
  const char* force = std::getenv("OPENLORA_GEMM");
  if (force && std::strcmp(force, "portable") == 0) return Isa::Portable;
  const CpuFeatures& f = cpuFeatures();
  const bool avx2 = f.avx2 && f.fma;
  if (!avx2) return Isa::Portable;
  if (force && std::strcmp(force, "avx2") == 0) return Isa::Avx2;
  return f.avx512f ? Isa::Avx512 : Isa::Avx2;
}

Isa isa() {
  static const Isa v = detectIsa();
  return v;
}

/** vdpbf16ps for BF16 weights with bf16 activations: AVX-512 BF16 + BW present, not forced off. */
bool detectDp() {
  if (isa() != Isa::Avx512) return false;
  const char* force = std::getenv("OPENLORA_GEMM");
  if (force && std::strcmp(force, "avx512") == 0) return false;
  const CpuFeatures& f = cpuFeatures();
  return f.avx512bf16 && f.avx512bw;
}

bool useDp() {
  static const bool v = detectDp();
  return v;
}

/** AMX-BF16 tiles for BF16 weights with bf16 activations (gemm_amx.h's conditions). */
bool useAmx() {
  static const bool v = isa() == Isa::Avx512 && amx::usable();
  return v;
}

// ---------------------------------------------------------------------------------------------
// BF16 weights x bf16 activations (gemmPacked's bf16Activations), AVX-512 BF16: vdpbf16ps
// multiplies 16 pairs (2 input features) per lane, 32 multiply-adds per instruction, twice the
// fp32 FMA rate. x is converted once per call to pairs [m][ceil(k/2)] (uint32 = two bf16, RNE);
// the panel's rows i and i+1 (64 contiguous bytes) are interleaved by one vpermw into the
// pair layout. Each output is one vdpbf16ps chain over pairs in ascending order in every tile
// shape: batch-invariant (not bit-equal to the fp32 FMA kernels).

template <int MR, int NP>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void tileDp(const uint32_t* xp, int64_t ldxp, const uint16_t* w,
                                                                    int64_t pstride, int64_t k, float* out, TilePrefetch pf = {}) {
  __m512 acc[MR][NP];
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  // Lane 2j <- row i feature j (element j), lane 2j + 1 <- row i + 1 feature j (element 16 + j).
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                       18, 2, 17, 1, 16, 0);
  const int64_t k2 = k / 2;
  for (int64_t i2 = 0; i2 < k2; i2++) {
    pf.step(k2);  // over the k / 2 pair steps
    if constexpr (MR == 1) streamPrefetch<NP>(w, pstride, 2 * i2);
    __m512i wv[NP];
    for (int p = 0; p < NP; p++) wv[p] = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(w + p * pstride + i2 * 2 * kP));
    for (int r = 0; r < MR; r++) {
      const __m512i xb = _mm512_set1_epi32(int(xp[r * ldxp + i2]));
      for (int p = 0; p < NP; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], (__m512bh)xb, (__m512bh)wv[p]);
    }
  }
  if (k & 1) {  // last feature alone: its pair's second half is 0 in x and in w
    __m512i wv[NP];
    for (int p = 0; p < NP; p++) {
      const __m256i last = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * pstride + (k - 1) * kP));
      wv[p] = _mm512_permutexvar_epi16(idx, _mm512_zextsi256_si512(last));
    }
    for (int r = 0; r < MR; r++) {
      const __m512i xb = _mm512_set1_epi32(int(xp[r * ldxp + k2]));
      for (int p = 0; p < NP; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], (__m512bh)xb, (__m512bh)wv[p]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < NP; p++) _mm512_storeu_ps(out + (r * NP + p) * kP, acc[r][p]);
}

template <int MR>
void tileDpNp(int np, const uint32_t* xp, int64_t ldxp, const uint16_t* w, int64_t pstride, int64_t k, float* out, TilePrefetch pf) {
  if (np == 4) return tileDp<MR, 4>(xp, ldxp, w, pstride, k, out, pf);
  if (np == 2) return tileDp<MR, 2>(xp, ldxp, w, pstride, k, out, pf);
  return tileDp<MR, 1>(xp, ldxp, w, pstride, k, out, pf);
}

/** TilePrefetch lines: at most k / 2 (one per pair step). */
void tileDpAny(int mr, int np, const uint32_t* xp, int64_t ldxp, const uint16_t* w, int64_t pstride, int64_t k, float* out,
               TilePrefetch pf = {}) {
  switch (mr) {
    case 1: return tileDpNp<1>(np, xp, ldxp, w, pstride, k, out, pf);
    case 2: return tileDpNp<2>(np, xp, ldxp, w, pstride, k, out, pf);
    case 3: return tileDpNp<3>(np, xp, ldxp, w, pstride, k, out, pf);
    case 4: return tileDpNp<4>(np, xp, ldxp, w, pstride, k, out, pf);
    case 5: return tileDpNp<5>(np, xp, ldxp, w, pstride, k, out, pf);
    case 6: return tileDpNp<6>(np, xp, ldxp, w, pstride, k, out, pf);
    case 7: return tileDpNp<7>(np, xp, ldxp, w, pstride, k, out, pf);
    default: return tileDpNp<8>(np, xp, ldxp, w, pstride, k, out, pf);
  }
}

/** 8 floats -> floatToBf16 of each, in the low halves of 8 u32 lanes. */
__attribute__((target("avx2"))) inline __m256i bf16Of8(const float* p) {
  const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i rne =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), _mm256_and_si256(hi, _mm256_set1_epi32(1))), 16);
  return _mm256_blendv_epi8(rne, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
}

/**
 * o[i] = floatToBf16(x[i]) for i < n rounded down to 16, 16 at a time with AVX2 integer ops (the
 * same bits: round to nearest even, NaN kept quiet); returns how many were done.
 */
__attribute__((target("avx2"))) int64_t floatsToBf16Avx2(const float* x, uint16_t* o, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // packus works per 128-bit lane: [a0-3 b0-3 | a4-7 b4-7]; 0xD8 restores a0-7 b0-7.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16Of8(x + i), bf16Of8(x + i + 8)), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i), packed);
  }
  return i;
}

/**
 * x [m, k] (stride ldx) -> bf16 pairs (RNE, as floatToBf16; an odd k's last pair ends in 0), row
 * stride ldxp >= ceil(k/2) pairs, mPad >= m rows; the padding is zeros. Returns ldxp.
 */
int64_t toBf16Pairs(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t rowAlign, int64_t pairAlign, std::vector<uint32_t>& xp) {
  const int64_t k2 = (k + 1) / 2;
  const int64_t ldxp = (k2 + pairAlign - 1) / pairAlign * pairAlign, mPad = (m + rowAlign - 1) / rowAlign * rowAlign;
  xp.resize(size_t(mPad * ldxp));
  const bool avx2 = useAvx2();
  for (int64_t r = 0; r < m; r++) {
    // Pair i = elements 2i (low half) and 2i + 1 (high half): on little-endian x86 the row is the
    // plain bf16 array of x's row, then zeros to the row's end.
    uint16_t* o = reinterpret_cast<uint16_t*>(xp.data() + r * ldxp);
    const float* xr = x + r * ldx;
    for (int64_t i = avx2 ? floatsToBf16Avx2(xr, o, k) : 0; i < k; i++) o[i] = floatToBf16(xr[i]);
    std::fill(o + k, o + 2 * ldxp, uint16_t(0));
  }
  std::fill(xp.begin() + m * ldxp, xp.end(), 0u);  // padding rows
  return ldxp;
}

/** x rounded to bf16 and widened back (the fp32 kernels' input in bf16-activation mode). */
void roundBf16(const float* x, int64_t ldx, int64_t m, int64_t k, std::vector<float>& xr) {
  xr.resize(size_t(m * k));
  for (int64_t r = 0; r < m; r++)
    for (int64_t i = 0; i < k; i++) xr[size_t(r * k + i)] = bf16ToFloat(floatToBf16(x[r * ldx + i]));
}

/** Rows of x in the main tile, and panels per tile for `mr` rows, per instruction set. */
int mainRows(Isa s) { return s == Isa::Avx512 ? 12 : s == Isa::Avx2 ? 6 : 4; }
int panelsFor(Isa s, int mr) {
  if (s == Isa::Avx512) return mr <= 4 ? 4 : 2;  // <= 24 zmm accumulators of 32 registers (no spill)
  if (s == Isa::Avx2) return mr == 1 ? 4 : mr == 2 ? 2 : 1;  // <= 12 ymm accumulators of 16
  return 1;
}

template <typename T, int MR>
void tileNp(Isa s, int np, const float* x, int64_t ldx, const T* w, int64_t pstride, int64_t k, float* out, TilePrefetch pf) {
  // np is 1, 2 or 4 (callers split 3 into 2 + 1).
  switch (s) {
    case Isa::Avx512:
      if (np == 4) return tile512<MR, 4>(x, ldx, w, pstride, k, out, pf);
      if (np == 2) return tile512<MR, 2>(x, ldx, w, pstride, k, out, pf);
      return tile512<MR, 1>(x, ldx, w, pstride, k, out, pf);
    case Isa::Avx2:
      if (np == 4) return tile256<MR, 4>(x, ldx, w, pstride, k, out, pf);
      if (np == 2) return tile256<MR, 2>(x, ldx, w, pstride, k, out, pf);
      return tile256<MR, 1>(x, ldx, w, pstride, k, out, pf);
    default:
      return tilePortable<MR, 1>(x, ldx, w, pstride, k, out);
  }
}

template <typename T>
void tile(Isa s, int mr, int np, const float* x, int64_t ldx, const T* w, int64_t pstride, int64_t k, float* out, TilePrefetch pf = {}) {
  switch (mr) {
    case 1: return tileNp<T, 1>(s, np, x, ldx, w, pstride, k, out, pf);
    case 2: return tileNp<T, 2>(s, np, x, ldx, w, pstride, k, out, pf);
    case 3: return tileNp<T, 3>(s, np, x, ldx, w, pstride, k, out, pf);
    case 4: return tileNp<T, 4>(s, np, x, ldx, w, pstride, k, out, pf);
    case 5: return tileNp<T, 5>(s, np, x, ldx, w, pstride, k, out, pf);
    case 6: return tileNp<T, 6>(s, np, x, ldx, w, pstride, k, out, pf);
    case 7: return tileNp<T, 7>(s, np, x, ldx, w, pstride, k, out, pf);
    case 8: return tileNp<T, 8>(s, np, x, ldx, w, pstride, k, out, pf);
    case 9: return tileNp<T, 9>(s, np, x, ldx, w, pstride, k, out, pf);
    case 10: return tileNp<T, 10>(s, np, x, ldx, w, pstride, k, out, pf);
    case 11: return tileNp<T, 11>(s, np, x, ldx, w, pstride, k, out, pf);
    default: return tileNp<T, 12>(s, np, x, ldx, w, pstride, k, out, pf);
  }
}

constexpr int kChunkPanels = 4;  // panels kept hot in L1/L2 while every row tile of x streams past

/**
 * Prefetches the bytes [b0, b1) of the concatenation of pf's ranges into L2, one instruction per
 * 64-byte line; `at` caches the range index where the last call stopped (calls ascend).
 */
void prefetchSpan(const PrefetchRanges& pf, int64_t b0, int64_t b1, size_t& at, int64_t& atStart) {
  while (at < pf.ranges.size() && atStart + pf.ranges[at].second <= b0) atStart += pf.ranges[at++].second;
  int64_t rs = atStart;
  for (size_t r = at; r < pf.ranges.size() && rs < b1; rs += pf.ranges[r].second, r++) {
    const int64_t lo = std::max(b0, rs) - rs, hi = std::min(b1, rs + pf.ranges[r].second) - rs;
    for (int64_t o = lo & ~int64_t(63); o < hi; o += 64) _mm_prefetch(pf.ranges[r].first + o, _MM_HINT_T1);
  }
}

/**
 * Pacing of a PrefetchRanges over one run of tiles (PackedJob::run): each tile gets, of the
 * ranges' bytes, the share of the run's work (rows x panels) it does, as a TilePrefetch within
 * one range (at most k lines; what a tile cannot take is owed to the next); flush() issues what
 * is left at the end of the run.
 */
struct PrefetchPacer {
  const PrefetchRanges* pf = nullptr;
  int64_t work = 1, done = 0, issued = 0, atStart = 0;
  size_t at = 0;
  TilePrefetch next(int64_t units, int64_t k) {
    done += units;
    const int64_t to = pf->total * std::min(done, work) / work;
    while (at < pf->ranges.size() && atStart + pf->ranges[at].second <= issued) atStart += pf->ranges[at++].second;
    if (at >= pf->ranges.size() || to <= issued) return {};
    const int64_t size = pf->ranges[at].second, off = issued - atStart;
    const int64_t lines = std::min(k, (std::min(to - atStart, size) - off + 63) / 64);
    issued = std::min(atStart + size, issued + lines * 64);
    return TilePrefetch{pf->ranges[at].first + off, lines};
  }
  void flush() {
    prefetchSpan(*pf, issued, pf->total, at, atStart);
    issued = pf->total;
  }
};

/**
 * Panels [p0, p1) for all m rows of x. xp: x as bf16 pairs (row stride ldxp) when the vdpbf16ps
 * kernel runs (T = uint16_t), else nullptr. pacer (optional) is advanced after every tile.
 */
template <typename T>
void gemmPanels(Isa s, const float* x, int64_t ldx, const uint32_t* xp, int64_t ldxp, const PackedMatrix& w, const float* scale,
                float* y, int64_t ldy, int64_t m, float alpha, bool accumulate, int64_t p0, int64_t p1, PrefetchPacer* pacer) {
  const int64_t k = w.cols(), n = w.rows(), pstride = k * kP;
  // out [mr][np][16] of rows [t0, t0 + mr) and panels [q, q + np) -> y (alpha, scale, accumulate).
  // alpha 1 without scales (every float linear layer): v = 1 * 1 * o = o exactly, so whole
  // panels are copied (or added) without the per-element multiplies and selects.
  const bool plain = alpha == 1.0f && !scale;
  auto emit = [&](const float* out, int mr, int np, int64_t t0, int64_t q) {
    for (int r = 0; r < mr; r++) {
      float* yr = y + (t0 + r) * ldy;
      for (int p = 0; p < np; p++) {
        const int64_t col0 = (q + p) * kP;
        const int cols = int(std::min<int64_t>(kP, n - col0));
        const float* o = out + (r * np + p) * kP;
        if (plain && !accumulate && cols == kP) {
          // NOTE(why): a constant size is inlined as two vector moves; the variable-size memcpy
          // below is a library call per panel (~3% of a 512-token prefill).
          std::memcpy(yr + col0, o, kP * sizeof(float));
        } else if (plain && !accumulate) {
          std::memcpy(yr + col0, o, size_t(cols) * sizeof(float));
        } else if (plain) {
          float* __restrict dst = yr + col0;
          for (int j = 0; j < cols; j++) dst[j] += o[j];
        } else {
          for (int j = 0; j < cols; j++) {
            const float v = alpha * (scale ? scale[col0 + j] : 1.0f) * o[j];
            yr[col0 + j] = accumulate ? yr[col0 + j] + v : v;
          }
        }
      }
    }
  };
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (xp && useAmx()) return amx::gemmPanels(xp, ldxp, m, w, p0, p1, emit);
  }
  // The vdpbf16ps tiles keep 8 rows (12 measured no faster: no widening to spread).
  const int mrMain = xp ? 8 : mainRows(s);
  float out[12 * 4 * kP];  // [MR][NP][16]
  if (m == 1 && panelsFor(s, 1) == 4) {
    // NOTE(why): one row is bound by reading W. Four consecutive panels as one tile make four
    // streams that each end after one panel (k x 32 bytes: 30 KiB at k = 960), and the hardware
    // prefetcher starts over for every tile; here the task's panels are cut into four contiguous
    // quarters and each tile takes the j-th panel of every quarter, so each of the four streams
    // runs through a whole quarter (one-row products 49 -> 60+ GB/s on a Zen 5 EPYC). Each
    // output is the same chain: no bit changes.
    const int64_t quarter = (p1 - p0) / 4;
    for (int64_t j = 0; j < quarter; j++) {
      const T* wp = reinterpret_cast<const T*>(w.panel(p0 + j));
      if constexpr (std::is_same_v<T, uint16_t>) {
        if (xp) tileDpAny(1, 4, xp, ldxp, wp, quarter * pstride, k, out, pacer ? pacer->next(4, k / 2) : TilePrefetch{});
        else tile<T>(s, 1, 4, x, ldx, wp, quarter * pstride, k, out, pacer ? pacer->next(4, k) : TilePrefetch{});
      } else {
        tile<T>(s, 1, 4, x, ldx, wp, quarter * pstride, k, out, pacer ? pacer->next(4, k) : TilePrefetch{});
      }
      for (int p = 0; p < 4; p++) emit(out + p * kP, 1, 1, 0, p0 + j + p * quarter);
    }
    p0 += 4 * quarter;  // the last 0-3 panels: below
  }
  for (int64_t c0 = p0; c0 < p1; c0 += kChunkPanels) {
    const int64_t c1 = std::min(p1, c0 + kChunkPanels);
    for (int64_t t0 = 0; t0 < m; t0 += mrMain) {
      const int mr = int(std::min<int64_t>(mrMain, m - t0));
      const int npMax = panelsFor(s, mr);
      for (int64_t q = c0; q < c1;) {
        int np = int(std::min<int64_t>(npMax, c1 - q));
        if (np == 3) np = 2;
        const T* wp = reinterpret_cast<const T*>(w.panel(q));
        if constexpr (std::is_same_v<T, uint16_t>) {
          const int64_t units = int64_t(mr) * np;
          if (xp) tileDpAny(mr, np, xp + t0 * ldxp, ldxp, wp, pstride, k, out, pacer ? pacer->next(units, k / 2) : TilePrefetch{});
          else tile<T>(s, mr, np, x + t0 * ldx, ldx, wp, pstride, k, out, pacer ? pacer->next(units, k) : TilePrefetch{});
        } else {
          tile<T>(s, mr, np, x + t0 * ldx, ldx, wp, pstride, k, out, pacer ? pacer->next(int64_t(mr) * np, k) : TilePrefetch{});
        }
        emit(out, mr, np, t0, q);
        q += np;
      }
    }
  }
}

}  // namespace

void PackedJob::prepare(const float* x, int64_t ldx, const PackedProduct* ps, int count, int64_t m, bool bf16Activations, float alpha,
                        bool accumulate) {
  x_ = x, ldx_ = ldx, m_ = m, alpha_ = alpha, accumulate_ = accumulate;
  ps_.assign(ps, ps + count);
  const int64_t k = ps[0].w->cols();
  bool anyBf16 = false;
  for (int j = 0; j < count; j++) anyBf16 = anyBf16 || ps[j].w->type() == DType::BF16;
  // bf16 activations for BF16 weights: vdpbf16ps on pairs, or x rounded then the fp32 kernels.
  xp_ = nullptr, xr_ = x, ldxp_ = 0, ldxr_ = ldx;
  if (anyBf16 && bf16Activations) {
    if (useAmx()) {
      ldxp_ = toBf16Pairs(x, ldx, m, k, amx::kRows, amx::kPairs, xpStore_);
      xp_ = xpStore_.data();
    } else if (useDp()) {
      ldxp_ = toBf16Pairs(x, ldx, m, k, 1, 1, xpStore_);
      xp_ = xpStore_.data();
    } else {
      roundBf16(x, ldx, m, k, xrStore_);
      xr_ = xrStore_.data();
      ldxr_ = k;
    }
  }
  chunks_.assign(count, kChunkPanels, [&](int j) { return ps[j].w->panels(); });
}

int64_t PackedJob::chunkMacs() const { return std::max<int64_t>(1, m_ * (ps_.empty() ? 0 : ps_[0].w->cols()) * kP * kChunkPanels); }

void PackedJob::run(int64_t b, int64_t e, const PrefetchRanges* prefetch) const {
  const Isa s = isa();
  PrefetchPacer pacer;
  if (prefetch && prefetch->total > 0) {
    int64_t panels = 0;
    chunks_.forEach(b, e, [&](int, int64_t p0, int64_t p1) { panels += p1 - p0; });
    pacer.pf = prefetch;
    pacer.work = std::max<int64_t>(1, panels * m_);
  }
  PrefetchPacer* pp = pacer.pf ? &pacer : nullptr;
  chunks_.forEach(b, e, [&](int j, int64_t p0, int64_t p1) {
    const PackedProduct& pr = ps_[size_t(j)];
    const PackedMatrix& w = *pr.w;
    const bool bf16w = w.type() == DType::BF16;
    // Rounded x only feeds BF16 weights (F32 / I8 weights ignore bf16Activations).
    const float* xj = bf16w ? xr_ : x_;
    const int64_t ldxj = bf16w ? ldxr_ : ldx_;
    switch (w.type()) {
      case DType::F32: return gemmPanels<float>(s, xj, ldxj, nullptr, 0, w, pr.scale, pr.y, pr.ldy, m_, alpha_, accumulate_, p0, p1, pp);
      case DType::BF16:
        return gemmPanels<uint16_t>(s, xj, ldxj, xp_, ldxp_, w, pr.scale, pr.y, pr.ldy, m_, alpha_, accumulate_, p0, p1, pp);
      default: return gemmPanels<int8_t>(s, xj, ldxj, nullptr, 0, w, pr.scale, pr.y, pr.ldy, m_, alpha_, accumulate_, p0, p1, pp);
    }
  });
  if (pp) pp->flush();  // the share the tiles could not take (and the AMX tiles, which take none)
}

namespace {

/**
 * The products `ps` (each W of x's width, one type per product) as one parallel job over the
 * concatenation of their panel chunks: gemmPacked for count 1, gemmPackedMulti otherwise.
 */
void gemmMany(ThreadPool& pool, const float* x, int64_t ldx, const PackedProduct* ps, int count, int64_t m, float alpha, bool accumulate,
              bool bf16Activations) {
  // NOTE(why): thread_local (no allocation per call once warm); the lambda sees the caller's.
  thread_local PackedJob jobStore;
  PackedJob& job = jobStore;
  job.prepare(x, ldx, ps, count, m, bf16Activations, alpha, accumulate);
  const int64_t grain = std::max<int64_t>(1, (gemmMinTaskMacs() + job.chunkMacs() - 1) / job.chunkMacs());
  pool.parallelFor(job.chunks(), grain, [&](int64_t b, int64_t e) { job.run(b, e, nullptr); });
}

}  // namespace

void gemmPacked(ThreadPool& pool, const float* x, int64_t ldx, const PackedMatrix& w, const float* scale, float* y, int64_t ldy,
                int64_t m, float alpha, bool accumulate, bool bf16Activations) {
  if (m <= 0 || w.empty()) return;
  const PackedProduct one{&w, scale, y, ldy};
  gemmMany(pool, x, ldx, &one, 1, m, alpha, accumulate, bf16Activations);
}

void gemmPackedMulti(ThreadPool& pool, const float* x, int64_t ldx, const PackedProduct* products, int count, int64_t m,
                     bool bf16Activations) {
  requireSameWidth("gemmPackedMulti", count, [&](int j) { return products[j].w->cols(); });
  if (m <= 0 || count <= 0) return;
  gemmMany(pool, x, ldx, products, count, m, 1.0f, false, bf16Activations);
}

const char* gemmPackedBf16KernelName() {
  if (useAmx()) return "amx-bf16";
  if (useDp()) return "avx512-bf16-dot";
  return gemmPackedKernelName();
}

const char* gemmPackedKernelName() {
  switch (isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2+fma";
    default: return "portable";
  }
}

}  // namespace openlora::cpu
