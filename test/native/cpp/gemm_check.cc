// Checks cpu::gemmPacked (packed F32 / BF16 / I8 weights) against a naive double-precision
// reference on random shapes (odd n and k, 1-70 rows, 1-3 threads, alpha, scales, accumulate),
// and that a row's result does not depend on the other rows of the batch (bit for bit).
// Prints one JSON line: {"cases", "failures", "maxRelErr", "kernel", "digest"}; the digest (a hash
// of every output bit) lets the caller compare instruction sets. With the argument --bf16-activations
// (gemmPacked's bf16Activations, EngineOptions.activationDtype "bfloat16") the BF16 cases are
// checked against the reference on bf16-rounded x. Built and run by gemm.test.ts.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "../../../native/cpu/gemm_packed.h"

using namespace openlora;
using namespace openlora::cpu;

namespace {

uint64_t digest = 1469598103934665603ull;  // FNV-1a over output bits
void hashFloats(const std::vector<float>& v) {
  for (float f : v) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int b = 0; b < 4; b++) digest = (digest ^ ((u >> (8 * b)) & 0xff)) * 1099511628211ull;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool bf16Act = argc > 1 && std::strcmp(argv[1], "--bf16-activations") == 0;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  int cases = 0, failures = 0;
  double maxRel = 0;
  const int shapes[][2] = {{704, 256}, {256, 704}, {128, 256}, {1024, 256}, {1, 1}, {17, 3}, {33, 65}, {15, 129}, {100, 31}, {48, 7}};
  for (int threads = 1; threads <= 3; threads++) {
    ThreadPool pool(threads);
    for (const auto& s : shapes) {
      const int n = s[0], k = s[1];
      for (int m : {1, 2, 3, 5, 8, 9, 16, 23, 64, 70}) {
        for (int type = 0; type < 3; type++) {
          std::vector<float> w(size_t(n) * k), x(size_t(m) * (k + 3)), scale(static_cast<size_t>(n));
          std::vector<int8_t> q(size_t(n) * k);
          for (auto& v : x) v = uni(rng);
          for (auto& v : scale) v = 0.01f + std::fabs(uni(rng));
          PackedMatrix pm;
          if (type == 2) {
            for (size_t i = 0; i < q.size(); i++) {
              q[i] = int8_t(int(std::lround(uni(rng) * 127)));
              w[i] = float(q[i]);
            }
            pm = PackedMatrix::fromI8(q.data(), n, k);
          } else {
            for (auto& v : w) v = uni(rng);
            pm = PackedMatrix::fromF32(w.data(), n, k, type == 0 ? DType::F32 : DType::BF16);
            if (type == 1) w = pm.unpack();  // reference on the bf16-rounded weights
          }
          // bf16-activation mode: BF16-weight products see x rounded to bf16, so the reference does too.
          std::vector<float> xref = x;
          if (type == 1 && bf16Act) {
            for (auto& v : xref) v = bf16ToFloat(floatToBf16(v));
          }
          const float* sc = type == 2 ? scale.data() : nullptr;
          const bool accumulate = (m + n) % 2 == 1;
          const float alpha = m % 3 == 0 ? 0.5f : 1.0f;
          const int ldx = k + 3, ldy = n + 5;
          std::vector<float> y(size_t(m) * ldy), y0(size_t(m) * ldy);
          for (auto& v : y0) v = uni(rng);
          y = y0;
          gemmPacked(pool, x.data(), ldx, pm, sc, y.data(), ldy, m, alpha, accumulate, bf16Act);
          hashFloats(y);
          bool ok = true;
          for (int t = 0; t < m && ok; t++) {
            for (int j = 0; j < n; j++) {
              double ref = 0, mag = 0;
              for (int i = 0; i < k; i++) {
                ref += double(xref[size_t(t) * ldx + i]) * w[size_t(j) * k + i];
                mag += std::fabs(double(xref[size_t(t) * ldx + i]) * w[size_t(j) * k + i]);
              }
              const double f = alpha * (sc ? sc[j] : 1.0);
              ref = ref * f + (accumulate ? y0[size_t(t) * ldy + j] : 0.0);
              mag = mag * std::fabs(f) + (accumulate ? std::fabs(y0[size_t(t) * ldy + j]) : 0.0) + 1e-30;
              const double rel = std::fabs(y[size_t(t) * ldy + j] - ref) / mag;
              maxRel = std::max(maxRel, rel);
              if (rel > 1e-5) ok = false;
            }
          }
          // Batch invariance: each row alone gives the same bits as inside the batch.
          for (int t = 0; t < m && ok; t += 7) {
            std::vector<float> one(static_cast<size_t>(ldy));
            std::copy(y0.begin() + size_t(t) * ldy, y0.begin() + size_t(t + 1) * ldy, one.begin());
            gemmPacked(pool, x.data() + size_t(t) * ldx, ldx, pm, sc, one.data(), ldy, 1, alpha, accumulate, bf16Act);
            if (std::memcmp(one.data(), y.data() + size_t(t) * ldy, size_t(n) * 4) != 0) ok = false;
          }
          // Unpacking returns the stored weights.
          if (ok && pm.at(n - 1, k - 1) != (type == 2 ? float(q.back()) : w.back())) ok = false;
          cases++;
          if (!ok) {
            failures++;
            std::fprintf(stderr, "FAIL threads=%d n=%d k=%d m=%d type=%d\n", threads, n, k, m, type);
          }
        }
      }
    }
  }
  // gemmPackedMulti: several weights of x's width (mixed types, 3-704 rows) in one job give each
  // product's gemmPacked bits; a weight of another width is refused.
  for (int threads = 1; threads <= 3; threads++) {
    ThreadPool pool(threads);
    for (int k : {7, 256}) {
      for (int m : {1, 5, 16, 70}) {
        const int ns[4] = {704, 3, 128, 33};
        std::vector<PackedMatrix> pms;
        std::vector<std::vector<float>> scales, ys(4), solo(4);
        for (int j = 0; j < 4; j++) {
          std::vector<float> w(size_t(ns[j]) * k);
          for (auto& v : w) v = uni(rng);
          if (j == 3) {
            std::vector<int8_t> q(w.size());
            for (size_t i = 0; i < q.size(); i++) q[i] = int8_t(int(std::lround(w[i] * 127)));
            pms.push_back(PackedMatrix::fromI8(q.data(), ns[j], k));
          } else {
            pms.push_back(PackedMatrix::fromF32(w.data(), ns[j], k, j == 1 ? DType::F32 : DType::BF16));
          }
          scales.emplace_back(size_t(ns[j]));
          for (auto& v : scales.back()) v = 0.01f + std::fabs(uni(rng));
        }
        std::vector<float> x(size_t(m) * (k + 1));
        for (auto& v : x) v = uni(rng);
        PackedProduct ps[4];
        for (int j = 0; j < 4; j++) {
          const float* sc = j == 3 ? scales[size_t(j)].data() : nullptr;
          ys[size_t(j)].assign(size_t(m) * (ns[j] + 2), 0.0f);
          solo[size_t(j)] = ys[size_t(j)];
          ps[j] = PackedProduct{&pms[size_t(j)], sc, ys[size_t(j)].data(), ns[j] + 2};
          gemmPacked(pool, x.data(), k + 1, pms[size_t(j)], sc, solo[size_t(j)].data(), ns[j] + 2, m, 1.0f, false, bf16Act);
        }
        gemmPackedMulti(pool, x.data(), k + 1, ps, 4, m, bf16Act);
        bool ok = true;
        for (int j = 0; j < 4; j++) ok = ok && std::memcmp(ys[size_t(j)].data(), solo[size_t(j)].data(), ys[size_t(j)].size() * 4) == 0;
        cases++;
        if (!ok) {
          failures++;
          std::fprintf(stderr, "FAIL multi threads=%d k=%d m=%d\n", threads, k, m);
        }
      }
    }
  }
  {
    ThreadPool pool(2);
    std::vector<float> w(64 * 8, 0.5f), x(8, 1.0f), y(64 * 2);
    const PackedMatrix a = PackedMatrix::fromF32(w.data(), 64, 8, DType::F32), b = PackedMatrix::fromF32(w.data(), 8, 64, DType::F32);
    const PackedProduct ps[2] = {{&a, nullptr, y.data(), 64}, {&b, nullptr, y.data() + 64, 64}};
    bool threw = false;
    try {
      gemmPackedMulti(pool, x.data(), 8, ps, 2, 1);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    cases++;
    if (!threw) {
      failures++;
      std::fprintf(stderr, "FAIL multi: widths 8 and 64 were not refused\n");
    }
  }
  std::printf("{\"cases\": %d, \"failures\": %d, \"maxRelErr\": %g, \"kernel\": \"%s\", \"bf16Kernel\": \"%s\", \"bf16Act\": %s, \"digest\": \"%016llx\"}\n",
              cases, failures, maxRel, gemmPackedKernelName(), gemmPackedBf16KernelName(), bf16Act ? "true" : "false",
              (unsigned long long)digest);
  return failures == 0 ? 0 : 1;
}
