// See gemm_quant.h: the AVX-512 VNNI and AVX2 kernels of gemmQuant, one tile of up to 4 rows of
// x by one 16-row weight panel. Both compute the portable kernel's integer sums exactly and its
// float steps in the same order (int32 -> float conversion, then one FMA per group).
//
// Q8 weights are stored offset by 128 (q + 128, unsigned): vpdpbusd takes them as its unsigned
// operand against signed x, and 128 * sum(xq) is taken off the group sum. AVX2 turns them back
// to signed q (vpmaddubsw's saturating int16 pairs would overflow on q + 128) and uses the sign
// trick of llama.cpp's mul_sum_i8_pairs: x * w = |x| * (sign(x) w). Q4 nibbles are unsigned
// already (0..15); their zero point 8 is taken off the group sum as 8 * sum(xq).
#include "gemm_quant.h"

#include "dispatch.h"  // kStreamPrefetchBytes

// NOTE(why): GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside their own intrinsics
// (GCC bug 105593), as in gemm_packed.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

namespace openlora::cpu {

namespace {

constexpr int kP = QuantMatrix::kPanel;
constexpr int kG = QuantMatrix::kGroup;

inline int32_t load4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/** Prefetch the line kStreamPrefetchBytes past p into L1 (one-row tiles' weight streams; dispatch.h). */
inline void prefetchAhead(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p) + kStreamPrefetchBytes, _MM_HINT_T0); }

/** acc[0] + ... + acc[C - 1] (int32 lanes; exact). */
template <int C>
__attribute__((target("avx512f"))) inline __m512i total512(const __m512i* acc) {
  __m512i t = acc[0];
  for (int c = 1; c < C; c++) t = _mm512_add_epi32(t, acc[c]);
  return t;
}

// NOTE(why): vpdpbusd has a 4-5 cycle latency; one accumulator per row made a single-row tile
// (decode) a chain of 8 dependent dot products per group, ~3x slower than the memory bound.
// C independent accumulators per row (summed exactly in int32 at the end of the group) fill the
// pipeline; more rows give the same independence, so C shrinks as MR grows.
template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vnni,f16c,fma"))) void tile512(const QuantMatrix& w, const QuantActs& a, int64_t t0,
                                                                               int64_t p, float* acc) {
  const int64_t G = w.groups();
  const uint8_t* base = w.panel(p);
  const int8_t* xq[MR];
  const float* dx[MR];
  const int32_t* sx[MR];
  __m512 f[MR];
  for (int r = 0; r < MR; r++) {
    xq[r] = a.q.data() + (t0 + r) * a.kp;
    dx[r] = a.d.data() + (t0 + r) * a.groups;
    sx[r] = a.s.data() + (t0 + r) * a.groups;
    f[r] = _mm512_setzero_ps();
  }
  const __m512i zero = _mm512_setzero_si512();
  constexpr int C = MR == 1 ? 4 : MR == 2 ? 2 : 1;  // accumulators per row
  if (w.format() == QuantFormat::Q8) {
    // The weights are stored offset by 128 (unsigned: q + 128), so vpdpbusd takes them as they
    // are against signed x: sum (q + 128) x = sum q x + 128 sum(x), and 128 sum(x) is taken off.
    for (int64_t g = 0; g < G; g++) {
      const uint8_t* gb = base + g * 512;
      __m512i s[MR][C];
      for (int r = 0; r < MR; r++)
        for (int c = 0; c < C; c++) s[r][c] = zero;
      for (int quad = 0; quad < 8; quad++) {
        if constexpr (MR == 1) prefetchAhead(gb + quad * 64);
        const __m512i wv = _mm512_loadu_si512(gb + quad * 64);
        for (int r = 0; r < MR; r++)
          s[r][quad % C] = _mm512_dpbusd_epi32(s[r][quad % C], wv, _mm512_set1_epi32(load4(xq[r] + g * kG + quad * 4)));
      }
      for (int r = 0; r < MR; r++) {
        const __m512i isum = _mm512_sub_epi32(total512<C>(s[r]), _mm512_set1_epi32(128 * sx[r][g]));
        f[r] = _mm512_fmadd_ps(_mm512_set1_ps(dx[r][g]), _mm512_cvtepi32_ps(isum), f[r]);
      }
    }
  } else {
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t g = 0; g < G; g++) {
      const uint8_t* gb = base + QuantMatrix::q4GroupOffset(g);
      __m512i s[MR][C];
      for (int r = 0; r < MR; r++)
        for (int c = 0; c < C; c++) s[r][c] = zero;
      for (int blk = 0; blk < 4; blk++) {
        if constexpr (MR == 1) prefetchAhead(gb + blk * 64);
        const __m512i wv = _mm512_loadu_si512(gb + blk * 64);
        const __m512i lo = _mm512_and_si512(wv, low);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low);
        for (int r = 0; r < MR; r++) {
          __m512i& a0 = s[r][(2 * blk) % C];
          __m512i& a1 = s[r][(2 * blk + 1) % C];
          a0 = _mm512_dpbusd_epi32(a0, lo, _mm512_set1_epi32(load4(xq[r] + g * kG + blk * 4)));
          a1 = _mm512_dpbusd_epi32(a1, hi, _mm512_set1_epi32(load4(xq[r] + g * kG + 16 + blk * 4)));
        }
      }
      if constexpr (MR == 1)
        if (g & 1) prefetchAhead(base + QuantMatrix::q4ScaleOffset(g));  // the pair's scale line
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + QuantMatrix::q4ScaleOffset(g))));
      for (int r = 0; r < MR; r++) {
        const __m512i isum = _mm512_sub_epi32(total512<C>(s[r]), _mm512_set1_epi32(8 * sx[r][g]));
        f[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dx[r][g]), dw), _mm512_cvtepi32_ps(isum), f[r]);
      }
    }
  }
  for (int r = 0; r < MR; r++) _mm512_storeu_ps(acc + r * kP, f[r]);
}

/**
 * One row of x (row t0) against four panels ps[0..3] anywhere in W (gemmQuant's one-row products
 * pass the j-th panel of four contiguous quarters: four long weight streams, as gemm_packed.cc's
 * one-row tiles), Q8 or Q4. Per panel the arithmetic is tile512<1>'s: int32 group sums are exact whatever
 * their accumulation order, and the float update per group is the same, so the bits are too.
 * Two int32 accumulators per panel (eight chains in all) cover vpdpbusd's latency.
 */
__attribute__((target("avx512f,avx512bw,avx512vnni,f16c,fma"))) void row4Avx512(const QuantMatrix& w, const QuantActs& a, int64_t t0,
                                                                                 const int64_t* ps, float* acc) {
  constexpr int NP = 4;
  const int64_t G = w.groups();
  const uint8_t* base[NP];
  for (int c = 0; c < NP; c++) base[c] = w.panel(ps[c]);
  const int8_t* xq = a.q.data() + t0 * a.kp;
  const float* dx = a.d.data() + t0 * a.groups;
  const int32_t* sx = a.s.data() + t0 * a.groups;
  __m512 f[NP];
  for (int c = 0; c < NP; c++) f[c] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512(), low = _mm512_set1_epi8(0x0f);
  if (w.format() == QuantFormat::Q8) {  // tile512<1>'s sums (offset-binary weights), four panels a quad
    for (int64_t g = 0; g < G; g++) {
      __m512i s[NP][2];
      for (int c = 0; c < NP; c++) s[c][0] = s[c][1] = zero;
      for (int quad = 0; quad < 8; quad++) {
        const __m512i xb = _mm512_set1_epi32(load4(xq + g * kG + quad * 4));
        for (int c = 0; c < NP; c++) {
          const uint8_t* line = base[c] + g * 512 + quad * 64;
          prefetchAhead(line);
          s[c][quad & 1] = _mm512_dpbusd_epi32(s[c][quad & 1], _mm512_loadu_si512(line), xb);
        }
      }
      const __m512 d = _mm512_set1_ps(dx[g]);
      const __m512i z = _mm512_set1_epi32(128 * sx[g]);
      for (int c = 0; c < NP; c++) f[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_add_epi32(s[c][0], s[c][1]), z)), f[c]);
    }
    for (int c = 0; c < NP; c++) _mm512_storeu_ps(acc + c * kP, f[c]);
    return;
  }
  for (int64_t g = 0; g < G; g++) {
    const int64_t go = QuantMatrix::q4GroupOffset(g), so = QuantMatrix::q4ScaleOffset(g);
    __m512i s[NP][2];
    for (int c = 0; c < NP; c++) s[c][0] = s[c][1] = zero;
    for (int blk = 0; blk < 4; blk++) {
      const __m512i xl = _mm512_set1_epi32(load4(xq + g * kG + blk * 4));
      const __m512i xh = _mm512_set1_epi32(load4(xq + g * kG + 16 + blk * 4));
      for (int c = 0; c < NP; c++) {
        prefetchAhead(base[c] + go + blk * 64);
        const __m512i wv = _mm512_loadu_si512(base[c] + go + blk * 64);
        s[c][0] = _mm512_dpbusd_epi32(s[c][0], _mm512_and_si512(wv, low), xl);
        s[c][1] = _mm512_dpbusd_epi32(s[c][1], _mm512_and_si512(_mm512_srli_epi16(wv, 4), low), xh);
      }
    }
    if (g & 1)  // the pair's scale line, in the same stream
      for (int c = 0; c < NP; c++) prefetchAhead(base[c] + so);
    const __m512 d = _mm512_set1_ps(dx[g]);
    const __m512i z = _mm512_set1_epi32(8 * sx[g]);
    for (int c = 0; c < NP; c++) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base[c] + so)));
      const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s[c][0], s[c][1]), z);
      f[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, dw), _mm512_cvtepi32_ps(isum), f[c]);
    }
  }
  for (int c = 0; c < NP; c++) _mm512_storeu_ps(acc + c * kP, f[c]);
}

// NOTE(why): at batch 1 the product streams the weights once, so the kernel must use each cache
// line as it arrives and keep loads in flight. The earlier kernel made two passes over a panel
// (rows 0-7, then 8-15), each using half of every 64-byte line: the second pass ran from cache
// with no loads in flight, and decode reached ~57% of the read bandwidth. Here a tile covers NP
// panels x 16 rows in one pass, as C = NP * 16 / 8 ymm columns: rows [8 c, 8 c + 8) of the
// NP panels. One row of x (decode) takes 4 panels (C = 8: four weight streams in flight; in a
// microbenchmark of a 360M model's matrices on one Zen 3 core, 1 panel per pass reached ~80% of
// a plain read loop's bandwidth, 2 panels ~88%, 4 panels ~95-100%); 2 rows take 1 panel in one
// pass (C = 2); 3-4 rows (batched tiles are compute-bound) keep two passes of C = 1 so that f
// and s stay in the 16 ymm registers.
// Q4: a vpmaddubsw pair of nibbles (<= 15) and int8 (|x| <= 127) is at most 3810 in magnitude,
// so the 8 products of a group (4 blocks, low and high) add exactly in int16 (|sum| <= 30480)
// before one vpmaddwd; Q8 pairs reach 32258 and go to int32 at once.
template <int MR, int C>
__attribute__((target("avx2,fma,f16c"))) void tile256(const QuantMatrix& w, const QuantActs& a, int64_t t0, int64_t p, int np,
                                                       float* acc) {
  const int64_t G = w.groups();
  const int64_t pstride = w.panelBytes();  // bytes from one panel to the next
  const uint8_t* base = w.panel(p);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i sign = _mm256_set1_epi8(static_cast<char>(0x80));
  const int8_t* xq[MR];
  const float* dx[MR];
  const int32_t* sx[MR];
  for (int r = 0; r < MR; r++) {
    xq[r] = a.q.data() + (t0 + r) * a.kp;
    dx[r] = a.d.data() + (t0 + r) * a.groups;
    sx[r] = a.s.data() + (t0 + r) * a.groups;
  }
  const int cols = np * 2;  // 8-row columns to compute: C per pass
  for (int c0 = 0; c0 < cols; c0 += C) {
    // Column c0 + c: panel (c0 + c) / 2, rows 8 ((c0 + c) % 2) .. + 8.
    int64_t off[C];   // byte offset of the column from the tile's group (Q8 quad / Q4 block 0)
    int64_t soff[C];  // Q4: byte offset of the column's 8 scales from the tile's group scales
    for (int c = 0; c < C; c++) {
      const int col = c0 + c;
      off[c] = (col / 2) * pstride + (col % 2) * 32;
      soff[c] = (col / 2) * pstride + (col % 2) * 16;
    }
    __m256 f[MR][C];
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < C; c++) f[r][c] = _mm256_setzero_ps();
    if (w.format() == QuantFormat::Q8) {
      for (int64_t g = 0; g < G; g++) {
        const uint8_t* gb = base + g * 512;
        __m256i s[MR][C];
        for (int r = 0; r < MR; r++)
          for (int c = 0; c < C; c++) s[r][c] = _mm256_setzero_si256();
        for (int quad = 0; quad < 8; quad++) {
          if constexpr (MR == 1)
            for (int c = 0; c < C; c += 2) prefetchAhead(gb + off[c] + quad * 64);  // columns 2j, 2j + 1 share a line
          __m256i wv[C];  // back from offset binary (q + 128) to signed q: vpmaddubsw's int16 pairs would saturate on q + 128
          for (int c = 0; c < C; c++) wv[c] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb + off[c] + quad * 64)), sign);
          for (int r = 0; r < MR; r++) {
            const __m256i xb = _mm256_set1_epi32(load4(xq[r] + g * kG + quad * 4));
            const __m256i ax = _mm256_abs_epi8(xb);
            for (int c = 0; c < C; c++) {
              const __m256i prod = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[c], xb));
              s[r][c] = _mm256_add_epi32(s[r][c], _mm256_madd_epi16(prod, ones));
            }
          }
        }
        for (int r = 0; r < MR; r++) {
          const __m256 d = _mm256_set1_ps(dx[r][g]);
          for (int c = 0; c < C; c++) f[r][c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s[r][c]), f[r][c]);
        }
      }
    } else {
      for (int64_t g = 0; g < G; g++) {
        const uint8_t* gb = base + QuantMatrix::q4GroupOffset(g);
        const uint8_t* gs = base + QuantMatrix::q4ScaleOffset(g);
        __m256i s[MR][C];
        for (int blk = 0; blk < 4; blk++) {
          if constexpr (MR == 1)
            for (int c = 0; c < C; c += 2) prefetchAhead(gb + off[c] + blk * 64);
          __m256i lo[C], hi[C];
          for (int c = 0; c < C; c++) {
            const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb + off[c] + blk * 64));
            lo[c] = _mm256_and_si256(wv, low);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), low);
          }
          for (int r = 0; r < MR; r++) {
            const int8_t* xg = xq[r] + g * kG;
            const __m256i xl = _mm256_set1_epi32(load4(xg + blk * 4));
            const __m256i xh = _mm256_set1_epi32(load4(xg + 16 + blk * 4));
            for (int c = 0; c < C; c++) {
              const __m256i ph = _mm256_add_epi16(_mm256_maddubs_epi16(lo[c], xl), _mm256_maddubs_epi16(hi[c], xh));
              s[r][c] = blk == 0 ? ph : _mm256_add_epi16(s[r][c], ph);
            }
          }
        }
        if constexpr (MR == 1)
          if (g & 1)  // the pair's scale line, in the same stream
            for (int c = 0; c < C; c += 2) prefetchAhead(gs + soff[c]);
        __m256 dw[C];
        for (int c = 0; c < C; c++) dw[c] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gs + soff[c])));
        for (int r = 0; r < MR; r++) {
          const __m256 d = _mm256_set1_ps(dx[r][g]);
          const __m256i z = _mm256_set1_epi32(8 * sx[r][g]);
          for (int c = 0; c < C; c++) {
            const __m256i isum = _mm256_sub_epi32(_mm256_madd_epi16(s[r][c], ones), z);
            f[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(d, dw[c]), _mm256_cvtepi32_ps(isum), f[r][c]);
          }
        }
      }
    }
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < C; c++) {
        const int col = c0 + c;
        _mm256_storeu_ps(acc + ((col / 2) * MR + r) * kP + (col % 2) * 8, f[r][c]);
      }
  }
}

}  // namespace

__attribute__((target("avx2,fma"))) void quantizeGroupsAvx2(const float* x, int64_t groups, int8_t* q, float* d, int32_t* sum) {
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t g = 0; g < groups; g++) {
    const float* xg = x + g * kG;
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
      v[i] = _mm256_loadu_ps(xg + 8 * i);
      mx = _mm256_max_ps(_mm256_and_ps(v[i], absMask), mx);  // a NaN |x| keeps mx (the second operand)
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0) {
      std::memset(q + g * kG, 0, kG);
      d[g] = 0;
      sum[g] = 0;
      continue;
    }
    d[g] = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(127.0f / amax);
    __m256i r[4];
    __m256i total = _mm256_setzero_si256();
    for (int i = 0; i < 4; i++) {
      // cvtps rounds to nearest even (the default MXCSR mode), as roundEven in gemm_quant.cc.
      r[i] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[i], id)), lim), nlim);
      total = _mm256_add_epi32(total, r[i]);
    }
    const __m256i packed = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3])), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + g * kG), packed);
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    sum[g] = _mm_cvtsi128_si32(t);
  }
}

void quantTileAvx512(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, float* acc) {
  switch (mr) {
    case 1: return tile512<1>(w, a, t0, p, acc);
    case 2: return tile512<2>(w, a, t0, p, acc);
    case 3: return tile512<3>(w, a, t0, p, acc);
    default: return tile512<4>(w, a, t0, p, acc);
  }
}

void quantRow4Avx512(const QuantMatrix& w, const QuantActs& a, int64_t t0, const int64_t* ps, float* acc) { row4Avx512(w, a, t0, ps, acc); }

void quantTileAvx2(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, int np, float* acc) {
  switch (mr) {
    case 1: return np == 4 ? tile256<1, 8>(w, a, t0, p, 4, acc) : np == 2 ? tile256<1, 4>(w, a, t0, p, 2, acc) : tile256<1, 2>(w, a, t0, p, 1, acc);
    case 2: return tile256<2, 2>(w, a, t0, p, 1, acc);
    case 3: return tile256<3, 1>(w, a, t0, p, 1, acc);
    default: return tile256<4, 1>(w, a, t0, p, 1, acc);
  }
}

}  // namespace openlora::cpu
