// Checks cpu::gemmQuant (Q8 and Q4 weights, int8 activations in groups of 32) against the float32
// path: the product of the dequantized weights (QuantMatrix::row) with x, in double precision.
// The only difference allowed is activation rounding, bounded per output by
// sum_g (dx_g / 2) * sum_{i in g} |w_i| (half a quantization step per activation), plus float
// rounding. Also: the format round trip (each dequantized weight within half a step of the
// original), batch invariance bit for bit, and a digest of every output bit so that the caller
// can check that every kernel (VNNI, AVX2, portable) gives the same bits.
// Prints one JSON line: {"cases", "failures", "maxRelErr", "roundTripFailures", "kernel", "digest"}.
// Built and run by gemm_quant.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "../../../native/cpu/gemm_quant.h"
#include "../../../native/src/dtype.h"

using namespace openlora;
using namespace openlora::cpu;

namespace {

uint64_t digest = 1469598103934665603ull;
void hashFloats(const float* v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    for (int b = 0; b < 4; b++) digest = (digest ^ ((u >> (8 * b)) & 0xff)) * 1099511628211ull;
  }
}

}  // namespace

int main() {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  int cases = 0, failures = 0, roundTripFailures = 0;
  double maxRel = 0;
  // {2056, 1030}: over 2 MiB of Q8 values, the large-page allocation (gemm_quant.h).
  const int shapes[][2] = {{64, 256}, {96, 64}, {17, 33}, {1, 1}, {33, 65}, {100, 31}, {48, 7}, {2056, 1030}};
  for (int threads = 1; threads <= 2; threads++) {
    ThreadPool pool(threads);
    for (const auto& s : shapes) {
      const int n = s[0], k = s[1];
      for (int fmt = 0; fmt < 2; fmt++) {
        std::vector<float> w(size_t(n) * k);
        for (auto& v : w) v = uni(rng) * (fmt ? 0.05f : 2.0f);
        if (n > 3) w[size_t(3) * k] = 0;  // an odd value out
        const QuantFormat format = fmt ? QuantFormat::Q4 : QuantFormat::Q8;
        const QuantMatrix qm = QuantMatrix::quantize(format, n, k, [&](int64_t r0, int64_t count, float* dst) {
          std::memcpy(dst, w.data() + r0 * k, size_t(count * k) * 4);
        });
        // Round trip: every weight within half a step of its row (Q8) or group (Q4) scale.
        std::vector<float> wd(size_t(n) * k);
        for (int r = 0; r < n; r++) {
          qm.row(r, wd.data() + size_t(r) * k);
          for (int g = 0; g * 32 < k; g++) {
            const int i0 = fmt ? g * 32 : 0, i1 = fmt ? std::min(k, i0 + 32) : k;
            float amax = 0;
            for (int i = i0; i < i1; i++) amax = std::max(amax, std::fabs(w[size_t(r) * k + i]));
            // Q8: half a step of amax / 127. Q4 (d = m / -8 with m the extreme value): half a step,
            // except values of the other sign past 7.5 steps, clamped to 7 steps (Q4_0's range).
            const float step = fmt ? amax / 8 : amax / 127;
            const float bound = fmt ? step * 1.01f : 0.5f * step * 1.01f;
            for (int i = i0; i < i1; i++) {
              const float e = std::fabs(wd[size_t(r) * k + i] - w[size_t(r) * k + i]);
              if (e > bound + 1e-7f) roundTripFailures++;
            }
            if (!fmt) break;
          }
        }
        for (int m : {1, 2, 3, 4, 5, 9}) {
          const int ldx = k + 3, ldy = n + 5;
          std::vector<float> x(size_t(m) * ldx), y0(size_t(m) * ldy);
          for (auto& v : x) v = uni(rng);
          if (m == 5 && k >= 64) {
            // Row 0: a group whose values scale to exact halves (ties to even: 127 / amax = 1) and
            // an all-zero group (scale 0), the activation quantizer's edge cases.
            for (int i = 0; i < 32; i++) x[size_t(i)] = i == 7 ? 127.0f : i % 2 ? 2.5f : -3.5f;
            for (int i = 32; i < 64; i++) x[size_t(i)] = 0.0f;
          }
          for (auto& v : y0) v = uni(rng);
          const bool accumulate = (m + n) % 2 == 1;
          const float alpha = m % 3 == 0 ? 0.5f : 1.0f;
          std::vector<float> y = y0;
          gemmQuant(pool, x.data(), ldx, qm, y.data(), ldy, m, alpha, accumulate);
          hashFloats(y.data(), y.size());
          bool ok = true;
          for (int t = 0; t < m; t++) {
            // Batch invariance: row t alone gives the same bits.
            std::vector<float> y1(static_cast<size_t>(ldy));
            std::copy_n(y0.data() + size_t(t) * ldy, ldy, y1.data());
            gemmQuant(pool, x.data() + size_t(t) * ldx, ldx, qm, y1.data(), ldy, 1, alpha, accumulate);
            if (std::memcmp(y1.data(), y.data() + size_t(t) * ldy, size_t(n) * 4) != 0) ok = false;
            for (int j = 0; j < n; j++) {
              double ref = 0, mag = 0, bound = 0;
              for (int g = 0; g * 32 < k; g++) {
                double amax = 0, wabs = 0;
                for (int i = g * 32; i < std::min(k, g * 32 + 32); i++) {
                  const double xv = x[size_t(t) * ldx + i], wv = wd[size_t(j) * k + i];
                  ref += xv * wv;
                  mag += std::fabs(xv * wv);
                  amax = std::max(amax, std::fabs(xv));
                  wabs += std::fabs(wv);
                }
                bound += amax / 127 / 2 * wabs;
              }
              ref = alpha * ref + (accumulate ? y0[size_t(t) * ldy + j] : 0.0);
              const double got = y[size_t(t) * ldy + j];
              const double err = std::fabs(got - ref);
              const double tol = std::fabs(alpha) * (bound * 1.001 + 1e-5 * mag) + 1e-6 * std::fabs(ref) + 1e-30;
              maxRel = std::max(maxRel, err / (std::fabs(alpha) * mag + 1e-30));
              if (!(err <= tol)) {
                if (ok) std::fprintf(stderr, "fmt %d n %d k %d m %d t %d j %d: got %g ref %g tol %g\n", fmt, n, k, m, t, j, got, ref, tol);
                ok = false;
              }
            }
          }
          cases++;
          if (!ok) failures++;
        }
      }
    }
  }
  // gemmQuantMulti: Q8 and Q4 weights of x's width (3-300 rows) in one job give each product's
  // gemmQuant bits, x quantized once; a weight of another width is refused.
  for (int threads = 1; threads <= 3; threads++) {
    ThreadPool pool(threads);
    for (int k : {33, 256}) {
      for (int m : {1, 3, 9}) {
        const int ns[3] = {300, 3, 64};
        std::vector<QuantMatrix> qms;
        for (int j = 0; j < 3; j++) {
          std::vector<float> w(size_t(ns[j]) * k);
          for (auto& v : w) v = uni(rng);
          qms.push_back(QuantMatrix::quantize(j == 1 ? QuantFormat::Q8 : QuantFormat::Q4, ns[j], k, [&](int64_t r0, int64_t count, float* dst) {
            std::memcpy(dst, w.data() + r0 * k, size_t(count * k) * 4);
          }));
        }
        std::vector<float> x(size_t(m) * k);
        for (auto& v : x) v = uni(rng);
        std::vector<std::vector<float>> ys(3), solo(3);
        QuantProduct ps[3];
        for (int j = 0; j < 3; j++) {
          ys[size_t(j)].assign(size_t(m) * ns[j], 0.0f);
          solo[size_t(j)] = ys[size_t(j)];
          ps[j] = QuantProduct{&qms[size_t(j)], ys[size_t(j)].data(), ns[j]};
          gemmQuant(pool, x.data(), k, qms[size_t(j)], solo[size_t(j)].data(), ns[j], m);
        }
        gemmQuantMulti(pool, x.data(), k, ps, 3, m);
        bool ok = true;
        for (int j = 0; j < 3; j++) ok = ok && std::memcmp(ys[size_t(j)].data(), solo[size_t(j)].data(), ys[size_t(j)].size() * 4) == 0;
        cases++;
        if (!ok) {
          failures++;
          std::fprintf(stderr, "multi threads %d k %d m %d: not the bits of one product at a time\n", threads, k, m);
        }
      }
    }
  }
  {
    ThreadPool pool(2);
    std::vector<float> x(64, 1.0f), y(128);
    const QuantMatrix a = QuantMatrix::quantize(QuantFormat::Q8, 4, 32, [](int64_t, int64_t count, float* dst) { std::fill_n(dst, count * 32, 0.5f); });
    const QuantMatrix b = QuantMatrix::quantize(QuantFormat::Q8, 2, 64, [](int64_t, int64_t count, float* dst) { std::fill_n(dst, count * 64, 0.5f); });
    const QuantProduct ps[2] = {{&a, y.data(), 4}, {&b, y.data() + 64, 2}};
    bool threw = false;
    try {
      gemmQuantMulti(pool, x.data(), 64, ps, 2, 1);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    cases++;
    if (!threw) {
      failures++;
      std::fprintf(stderr, "multi: widths 32 and 64 were not refused\n");
    }
  }
  // floatToF16 against exact cases: 1, 65504, 2^-24 (smallest subnormal), 2^-14 (smallest normal), rounding to even.
  const std::pair<float, uint16_t> f16Cases[] = {{1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {1e6f, 0x7c00},
                                                 {5.9604645e-8f, 0x0001}, {6.1035156e-5f, 0x0400}, {1.00048828125f, 0x3c00},
                                                 {1.00146484375f, 0x3c02}, {0.0f, 0x0000}};
  for (const auto& [v, bits] : f16Cases) {
    if (floatToF16(v) != bits || (std::isfinite(v) && bits != 0x7c00 && f16ToFloat(bits) != v && v != 1.00048828125f &&
                                  v != 1.00146484375f)) {
      std::fprintf(stderr, "floatToF16(%g) = %#x, expected %#x\n", double(v), floatToF16(v), bits);
      roundTripFailures++;
    }
  }
  std::printf("{\"cases\": %d, \"failures\": %d, \"maxRelErr\": %.3e, \"roundTripFailures\": %d, \"kernel\": \"%s\", \"digest\": \"%016llx\"}\n",
              cases, failures, maxRel, roundTripFailures, gemmQuantKernelName(), (unsigned long long)digest);
  return 0;
}
