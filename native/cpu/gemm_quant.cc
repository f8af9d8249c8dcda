// See gemm_quant.h. Packing, the activation quantizer, the portable kernel and the dispatch; the
// AVX-512 VNNI and AVX2 kernels are in gemm_quant_simd.cc.
//
// NOTE(why): at batch 1 a decode step reads every weight once, so its time is bytes / bandwidth
// plus the instructions that turn the bytes into sums. Widening int8 to float32 for FMAs (the
// path before 2026-12-06) costs 3 instructions per 16 products; vpdpbusd does 64 in one, which
// keeps 1-byte and half-byte weights at the memory bound on 2 cores.
#include "gemm_quant.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>


#include "../src/dtype.h"
#include "cpu_features.h"
#include "dispatch.h"

namespace openlora::cpu {

namespace {

constexpr int kP = QuantMatrix::kPanel;
constexpr int kG = QuantMatrix::kGroup;

enum class Isa { Portable, Avx2, Avx512 };

Isa detectIsa() {
  const char* force = std::getenv("OPENLORA_GEMM");
  if (force && std::strcmp(force, "portable") == 0) return Isa::Portable;
  const CpuFeatures& f = cpuFeatures();
  if (!(f.avx2 && f.fma && f.f16c)) return Isa::Portable;
  if (force && std::strcmp(force, "avx2") == 0) return Isa::Avx2;
  return f.avx512f && f.avx512bw && f.avx512vnni ? Isa::Avx512 : Isa::Avx2;
}

Isa isa() {
  static const Isa v = detectIsa();
  return v;
}

/**
 * Round to nearest, ties to even, for |v| <= 2^22 in the default rounding mode: adding and
 * subtracting 1.5 * 2^23 leaves the integer part (the trick of llama.cpp's nearest_int). Inline and
 * vectorisable, where std::nearbyint is a libm call in a generic x86-64 build (3 ms per decode
 * step of a 360M model, 225 calls of 960-2560 values).
 */
inline float roundEven(float v) {
  volatile float magic = 12582912.0f;  // NOTE(why): volatile keeps -ffast-math from folding (v + m) - m to v
  const float m = magic;
  return (v + m) - m;
}

/** Quantize rows of x to int8 in groups of 32 (zero-padded to kp). */
void quantizeActs(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t kp, QuantActs* a) {
  a->kp = kp;
  a->groups = kp / kG;
  a->q.assign(size_t(m * kp), 0);
  a->d.assign(size_t(m * a->groups), 0.0f);
  a->s.assign(size_t(m * a->groups), 0);
  // NOTE(why): the scalar loop cost ~3 ns a value (~0.5 ms of a 360M model's int4 decode step,
  // 4% of it); the AVX2 one gives the same bits for the full groups.
  const int64_t simdGroups = isa() == Isa::Portable ? 0 : k / kG;
  for (int64_t t = 0; t < m; t++) {
    const float* xr = x + t * ldx;
    if (simdGroups > 0)
      quantizeGroupsAvx2(xr, simdGroups, a->q.data() + t * kp, a->d.data() + t * a->groups, a->s.data() + t * a->groups);
    for (int64_t g = simdGroups; g < a->groups; g++) {
      const int64_t j0 = g * kG, j1 = std::min(k, j0 + kG);
      float amax = 0;
      for (int64_t j = j0; j < j1; j++) amax = std::max(amax, std::fabs(xr[j]));
      if (amax == 0) continue;
      const float d = amax / 127.0f, id = 127.0f / amax;
      int32_t sum = 0;
      int8_t* q = a->q.data() + t * kp;
      for (int64_t j = j0; j < j1; j++) {
        const int v = int(roundEven(xr[j] * id));
        q[j] = int8_t(std::max(-127, std::min(127, v)));
        sum += q[j];
      }
      a->d[size_t(t * a->groups + g)] = d;
      a->s[size_t(t * a->groups + g)] = sum;
    }
  }
}

/** The portable kernel: the same sums and the same float steps as the SIMD ones. */
void quantTilePortable(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, float* acc) {
  const uint8_t* base = w.panel(p);
  const bool q4 = w.format() == QuantFormat::Q4;
  for (int r = 0; r < mr; r++) {
    const int8_t* xq = a.q.data() + (t0 + r) * a.kp;
    const float* dx = a.d.data() + (t0 + r) * a.groups;
    const int32_t* sx = a.s.data() + (t0 + r) * a.groups;
    for (int j = 0; j < kP; j++) {
      float f = 0;
      for (int64_t g = 0; g < a.groups; g++) {
        const uint8_t* gb = base + w.groupOffset(g);
        const int8_t* xg = xq + g * kG;
        int32_t isum = 0;
        if (!q4) {
          for (int quad = 0; quad < 8; quad++)
            for (int b = 0; b < 4; b++) isum += int32_t(int8_t(gb[(quad * kP + j) * 4 + b] ^ 0x80)) * xg[quad * 4 + b];
          f = std::fma(dx[g], float(isum), f);
        } else {
          for (int blk = 0; blk < 4; blk++)
            for (int b = 0; b < 4; b++) {
              const uint8_t v = gb[(blk * kP + j) * 4 + b];
              isum += int32_t(v & 15) * xg[blk * 4 + b] + int32_t(v >> 4) * xg[16 + blk * 4 + b];
            }
          isum -= 8 * sx[g];
          f = std::fma(dx[g] * f16ToFloat(w.q4Scales(p, g)[j]), float(isum), f);
        }
      }
      acc[r * kP + j] = f;
    }
  }
}

constexpr int kChunkPanels = 4;
constexpr int kMaxTileRows = 4;

}  // namespace

uint16_t floatToF16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (au >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past 65504: infinity
  if (au < 0x38800000u) {  // below the smallest normal (2^-14): a subnormal, rounded to nearest even
    float a;
    std::memcpy(&a, &au, 4);
    const float scaled = a * 16777216.0f;  // units of 2^-24
    return uint16_t(sign | uint32_t(std::nearbyint(scaled)));
  }
  const uint32_t r = au + 0x0fffu + ((au >> 13) & 1u);  // round to nearest even at bit 13
  return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

QuantMatrix QuantMatrix::quantize(QuantFormat format, int64_t n, int64_t k, const RowReader& read) {
  QuantMatrix qm;
  qm.format_ = format;
  qm.n_ = n;
  qm.k_ = k;
  qm.kp_ = (k + kG - 1) / kG * kG;
  const int64_t G = qm.groups(), P = qm.panels();
  qm.data_.assign(size_t(P * qm.panelBytes()), format == QuantFormat::Q4 ? 0x88 : 0x80);  // both: the code of 0
  if (format == QuantFormat::Q8) qm.scales_.assign(size_t(P * kP * 4), 0);
  std::vector<float> rows(size_t(kP * k));
  for (int64_t p = 0; p < P; p++) {
    const int64_t count = std::min<int64_t>(kP, n - p * kP);
    read(p * kP, count, rows.data());
    uint8_t* pb = qm.data_.data() + p * qm.panelBytes();
    if (format == QuantFormat::Q4)  // every scale slot 0 (padding rows and the unused slots of an odd last pair too)
      for (int64_t g = 0; g < (G + 1) / 2 * 2; g++) std::memset(pb + q4ScaleOffset(g), 0, kP * 2);
    for (int64_t j = 0; j < count; j++) {
      const float* wr = rows.data() + j * k;
      if (format == QuantFormat::Q8) {
        float amax = 0;
        for (int64_t i = 0; i < k; i++) amax = std::max(amax, std::fabs(wr[i]));
        const float scale = amax > 0 ? amax / 127.0f : 1.0f;
        std::memcpy(qm.scales_.data() + (p * kP + j) * 4, &scale, 4);
        for (int64_t i = 0; i < k; i++) {
          const float v = std::nearbyint(wr[i] / scale);
          const int8_t q = int8_t(std::max(-127.0f, std::min(127.0f, v)));
          const int64_t g = i / kG, quad = (i % kG) / 4, b = i % 4;
          pb[g * 512 + (quad * kP + j) * 4 + b] = uint8_t(q) ^ 0x80;  // offset binary: q + 128
        }
        continue;
      }
      for (int64_t g = 0; g < G; g++) {
        const int64_t i0 = g * kG, i1 = std::min(k, i0 + kG);
        float mx = 0;
        for (int64_t i = i0; i < i1; i++)
          if (std::fabs(wr[i]) > std::fabs(mx)) mx = wr[i];
        const uint16_t dh = floatToF16(mx / -8.0f);
        std::memcpy(pb + q4ScaleOffset(g) + j * 2, &dh, 2);
        const float d = f16ToFloat(dh);
        for (int64_t i = i0; i < i1; i++) {
          const int q = d != 0 ? std::max(0, std::min(15, int(std::nearbyint(wr[i] / d)) + 8)) : 8;
          const int64_t c = i - i0;  // 0..31
          const int64_t blk = (c % 16) / 4, b = c % 4;
          uint8_t& byte = pb[q4GroupOffset(g) + (blk * kP + j) * 4 + b];
          byte = c < 16 ? uint8_t((byte & 0xf0) | q) : uint8_t((byte & 0x0f) | (q << 4));
        }
      }
    }
  }
  return qm;
}

void QuantMatrix::row(int64_t r, float* dst) const {
  const int64_t p = r / kP, j = r % kP;
  const uint8_t* pb = panel(p);
  for (int64_t i = 0; i < k_; i++) {
    const int64_t g = i / kG, c = i % kG;
    if (format_ == QuantFormat::Q8) {
      float scale;
      std::memcpy(&scale, scales_.data() + r * 4, 4);
      dst[i] = scale * float(int8_t(pb[g * 512 + ((c / 4) * kP + j) * 4 + c % 4] ^ 0x80));
    } else {
      uint16_t dh;
      std::memcpy(&dh, pb + q4ScaleOffset(g) + j * 2, 2);
      const uint8_t v = pb[q4GroupOffset(g) + (((c % 16) / 4) * kP + j) * 4 + c % 4];
      dst[i] = f16ToFloat(dh) * float(int((c < 16 ? v & 15 : v >> 4)) - 8);
    }
  }
}

namespace {

/**
 * The products `ps` (each of x's width and group count) as one parallel job over the
 * concatenation of their panel chunks, x quantized once: gemmQuant for count 1, gemmQuantMulti
 * otherwise.
 */
void gemmQuantMany(ThreadPool& pool, const float* x, int64_t ldx, const QuantProduct* ps, int count, int64_t m, float alpha, bool accumulate) {
  const Isa s = isa();
  const QuantMatrix& w0 = *ps[0].w;
  // Reused across calls (no allocation per product). NOTE(why): the workers must see the caller's
  // buffers, so they get a plain reference: naming a thread_local inside the lambda would give
  // each worker its own (empty) one.
  thread_local QuantActs callerActs;
  QuantActs& a = callerActs;
  quantizeActs(x, ldx, m, w0.cols(), w0.groups() * kG, &a);
  thread_local ProductChunks job;  // as callerActs: the lambda sees the caller's
  job.assign(count, kChunkPanels, [&](int j) { return ps[j].w->panels(); });
  const ProductChunks& chunks = job;
  const int64_t macsPerChunk = std::max<int64_t>(1, m * a.kp * kP * kChunkPanels);
  const int64_t grain = std::max<int64_t>(1, (gemmMinTaskMacs() + macsPerChunk - 1) / macsPerChunk);
  // NOTE(why): one row streams W once, as four quarter streams per claim (below); guided claims
  // cut a thread's share into ever shorter streams, each starting cold, and Q4's matrices are a
  // quarter of BF16's bytes. One even share per thread: int4 decode of a 360M model with a 128k
  // vocabulary 172-188 -> 206-234 tok/s (3 of 3 interleaved pairs, 2 threads, Zen 5; 86-89 ->
  // 101-103 beside a busy process), Llama-3.2-1B's shape unchanged (76-83 both). Q8 measured
  // 111-116 against 114-121 that way and stays guided, as BF16 (gemm_packed.cc).
  const bool even = m == 1 && w0.format() == QuantFormat::Q4;
  pool.parallelFor(chunks.chunks(), grain, [&](int64_t b, int64_t e) {
    float acc[4 * kMaxTileRows * kP];
    chunks.forEach(b, e, [&](int j, int64_t p0, int64_t p1) {
      const QuantMatrix& w = *ps[j].w;
      float* y = ps[j].y;
      const int64_t ldy = ps[j].ldy, n = w.rows();
      const float* rowScale = w.format() == QuantFormat::Q8 ? reinterpret_cast<const float*>(w.scales()) : nullptr;
      // acc [np][mr][16] of rows [t0, t0 + mr) and panel p + q for q < np -> y (row scale, alpha).
      auto emit = [&](int64_t t0, int mr, int q, int64_t p) {
        const int cols = int(std::min<int64_t>(kP, n - p * kP));
        for (int r = 0; r < mr; r++) {
          float* yr = y + (t0 + r) * ldy + p * kP;
          const float* ar = acc + (q * mr + r) * kP;
          for (int jj = 0; jj < cols; jj++) {
            const float v = alpha * (rowScale ? rowScale[p * kP + jj] : 1.0f) * ar[jj];
            yr[jj] = accumulate ? yr[jj] + v : v;
          }
        }
      };
      if (m == 1 && s == Isa::Avx512) {
        // NOTE(why): one row streams W once; four panels a tile, taken from four contiguous
        // quarters of the task's panels (as gemm_packed.cc's one-row products), keep four long
        // weight streams in flight (int4 decode +7-8% on a Zen 5 EPYC; int8 +6-35% in 8 of 8
        // interleaved pairs once its weights were stored offset by 128, where the sign trick's
        // per-quad work had made it slower this way). Same bits as the one-panel tile.
        const int64_t quarter = (p1 - p0) / 4;
        for (int64_t j = 0; j < quarter; j++) {
          const int64_t ps4[4] = {p0 + j, p0 + j + quarter, p0 + j + 2 * quarter, p0 + j + 3 * quarter};
          quantRow4Avx512(w, a, 0, ps4, acc);
          for (int q = 0; q < 4; q++) emit(0, 1, q, ps4[q]);
        }
        p0 += 4 * quarter;  // the last 0-3 panels: below
      }
      for (int64_t c0 = p0; c0 < p1; c0 += kChunkPanels) {
        const int64_t c1 = std::min(p1, c0 + kChunkPanels);
        for (int64_t t0 = 0; t0 < m; t0 += kMaxTileRows) {
          const int mr = int(std::min<int64_t>(kMaxTileRows, m - t0));
          for (int64_t p = c0; p < c1;) {
            // One row of x on AVX2: 4 (else 2) panels per tile when the chunk has them (gemm_quant_simd.cc).
            const int np = s != Isa::Avx2 || mr > 1 ? 1 : p + 3 < c1 ? 4 : p + 1 < c1 ? 2 : 1;
            if (s == Isa::Avx512) quantTileAvx512(w, a, t0, mr, p, acc);
            else if (s == Isa::Avx2) quantTileAvx2(w, a, t0, mr, p, np, acc);
            else quantTilePortable(w, a, t0, mr, p, acc);
            for (int q = 0; q < np; q++, p++) emit(t0, mr, q, p);
          }
        }
      }
    });
  }, even ? ThreadPool::Schedule::Even : ThreadPool::Schedule::Guided);
}

}  // namespace

void gemmQuant(ThreadPool& pool, const float* x, int64_t ldx, const QuantMatrix& w, float* y, int64_t ldy, int64_t m, float alpha,
               bool accumulate) {
  if (m <= 0 || w.empty()) return;
  const QuantProduct one{&w, y, ldy};
  gemmQuantMany(pool, x, ldx, &one, 1, m, alpha, accumulate);
}

void gemmQuantMulti(ThreadPool& pool, const float* x, int64_t ldx, const QuantProduct* products, int count, int64_t m) {
  requireSameWidth("gemmQuantMulti", count, [&](int j) { return products[j].w->cols(); });
  if (m <= 0 || count <= 0) return;
  gemmQuantMany(pool, x, ldx, products, count, m, 1.0f, false);
}

const char* gemmQuantKernelName() {
  switch (isa()) {
    case Isa::Avx512: return "avx512vnni";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace openlora::cpu
