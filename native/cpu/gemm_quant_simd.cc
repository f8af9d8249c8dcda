// See gemm_quant.h: the AVX-512 VNNI and AVX2 kernels of gemmQuant, one tile of up to 4 rows of
// x by one 16-row weight panel. Both compute the portable kernel's integer sums exactly and its
// float steps in the same order (int32 -> float conversion, then one FMA per group).
//
// Signed int8 x signed int8 (Q8) uses the sign trick of llama.cpp's mul_sum_i8_pairs:
// x * w = |x| * (sign(x) w), so the unsigned operand of vpdpbusd / vpmaddubsw is |x|. Q4 nibbles
// are unsigned already (0..15); their zero point 8 is taken off the group sum as 8 * sum(xq).
#include "gemm_quant.h"

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
    for (int64_t g = 0; g < G; g++) {
      const uint8_t* gb = base + g * 512;
      __m512i s[MR][C];
      for (int r = 0; r < MR; r++)
        for (int c = 0; c < C; c++) s[r][c] = zero;
      for (int quad = 0; quad < 8; quad++) {
        const __m512i wv = _mm512_loadu_si512(gb + quad * 64);
        for (int r = 0; r < MR; r++) {
          const __m512i xb = _mm512_set1_epi32(load4(xq[r] + g * kG + quad * 4));
          const __m512i ws = _mm512_mask_sub_epi8(wv, _mm512_movepi8_mask(xb), zero, wv);
          s[r][quad % C] = _mm512_dpbusd_epi32(s[r][quad % C], _mm512_abs_epi8(xb), ws);
        }
      }
      for (int r = 0; r < MR; r++) f[r] = _mm512_fmadd_ps(_mm512_set1_ps(dx[r][g]), _mm512_cvtepi32_ps(total512<C>(s[r])), f[r]);
    }
  } else {
    const __m512i low = _mm512_set1_epi8(0x0f);
    const uint16_t* ws = reinterpret_cast<const uint16_t*>(w.scales()) + p * G * kP;
    for (int64_t g = 0; g < G; g++) {
      const uint8_t* gb = base + g * 256;
      __m512i s[MR][C];
      for (int r = 0; r < MR; r++)
        for (int c = 0; c < C; c++) s[r][c] = zero;
      for (int blk = 0; blk < 4; blk++) {
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
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + g * kP)));
      for (int r = 0; r < MR; r++) {
        const __m512i isum = _mm512_sub_epi32(total512<C>(s[r]), _mm512_set1_epi32(8 * sx[r][g]));
        f[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dx[r][g]), dw), _mm512_cvtepi32_ps(isum), f[r]);
      }
    }
  }
  for (int r = 0; r < MR; r++) _mm512_storeu_ps(acc + r * kP, f[r]);
}

template <int MR>
__attribute__((target("avx2,fma,f16c"))) void tile256(const QuantMatrix& w, const QuantActs& a, int64_t t0, int64_t p, float* acc) {
  const int64_t G = w.groups();
  const uint8_t* base = w.panel(p);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const uint16_t* ws = reinterpret_cast<const uint16_t*>(w.scales()) + p * G * kP;
  for (int h = 0; h < 2; h++) {  // rows [8h, 8h + 8) of the panel
    __m256 f[MR];
    for (int r = 0; r < MR; r++) f[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
      __m256i s[MR];
      for (int r = 0; r < MR; r++) s[r] = _mm256_setzero_si256();
      if (w.format() == QuantFormat::Q8) {
        const uint8_t* gb = base + g * 512 + h * 32;
        for (int quad = 0; quad < 8; quad++) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb + quad * 64));
          for (int r = 0; r < MR; r++) {
            const __m256i xb = _mm256_set1_epi32(load4(a.q.data() + (t0 + r) * a.kp + g * kG + quad * 4));
            const __m256i prod = _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(wv, xb));
            s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(prod, ones));
          }
        }
        for (int r = 0; r < MR; r++) {
          const float d = a.d[size_t((t0 + r) * a.groups + g)];
          f[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s[r]), f[r]);
        }
      } else {
        const uint8_t* gb = base + g * 256 + h * 32;
        for (int blk = 0; blk < 4; blk++) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb + blk * 64));
          const __m256i lo = _mm256_and_si256(wv, low);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), low);
          for (int r = 0; r < MR; r++) {
            const int8_t* xg = a.q.data() + (t0 + r) * a.kp + g * kG;
            const __m256i pl = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(load4(xg + blk * 4)));
            const __m256i ph = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(load4(xg + 16 + blk * 4)));
            s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones));
          }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws + g * kP + h * 8)));
        for (int r = 0; r < MR; r++) {
          const size_t gi = size_t((t0 + r) * a.groups + g);
          const __m256i isum = _mm256_sub_epi32(s[r], _mm256_set1_epi32(8 * a.s[gi]));
          f[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(a.d[gi]), dw), _mm256_cvtepi32_ps(isum), f[r]);
        }
      }
    }
    for (int r = 0; r < MR; r++) _mm256_storeu_ps(acc + r * kP + h * 8, f[r]);
  }
}

}  // namespace

void quantTileAvx512(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, float* acc) {
  switch (mr) {
    case 1: return tile512<1>(w, a, t0, p, acc);
    case 2: return tile512<2>(w, a, t0, p, acc);
    case 3: return tile512<3>(w, a, t0, p, acc);
    default: return tile512<4>(w, a, t0, p, acc);
  }
}

void quantTileAvx2(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, float* acc) {
  switch (mr) {
    case 1: return tile256<1>(w, a, t0, p, acc);
    case 2: return tile256<2>(w, a, t0, p, acc);
    case 3: return tile256<3>(w, a, t0, p, acc);
    default: return tile256<4>(w, a, t0, p, acc);
  }
}

}  // namespace openlora::cpu
