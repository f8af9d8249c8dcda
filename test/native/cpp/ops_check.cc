// Checks the vectorised SwiGLU gate (cpu::siluMul with avx2 = true, native/cpu/ops.cc) against the
// portable one (std::exp) on the same inputs: normal values, the far tails where exp(-v)
// overflows or vanishes, zeros, NaN, and counts that leave a scalar tail. Built and run by
// test/native/ops.test.ts on a CPU with AVX2 and FMA. Prints one JSON line; exits 1 on a failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../../../native/cpu/ops.h"

int main() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> gate;
  for (int i = 0; i < 100000; i++) gate.push_back(normal(rng));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 87.0f, -87.0f, 88.5f, -88.5f, 100.0f, -100.0f, 1e30f, -1e30f,
                  INFINITY, -INFINITY, NAN})
    gate.push_back(v);
  gate.push_back(0.5f);  // 100018 values: a 2-value scalar tail
  std::vector<float> up(gate.size());
  for (float& u : up) u = normal(rng);
  up[up.size() - 3] = 1.0f;  // NaN gate: NaN either way
  std::vector<float> want = gate, got = gate;
  openlora::cpu::siluMul(want.data(), up.data(), int64_t(want.size()), false);
  openlora::cpu::siluMul(got.data(), up.data(), int64_t(got.size()), true);
  int failures = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) {
    if (std::isnan(want[i]) || std::isnan(got[i])) {
      if (std::isnan(want[i]) != std::isnan(got[i])) failures++, std::fprintf(stderr, "FAIL NaN at gate %g\n", gate[i]);
      continue;
    }
    if (got[i] == want[i]) continue;  // also the infinities
    // Relative error in float epsilons; outputs under 1e-30 (the far negative tail) count absolutely.
    const double diff = std::fabs(double(got[i]) - double(want[i]));
    const double err = std::fabs(double(want[i])) > 1e-30 ? diff / std::fabs(double(want[i])) / 1.1920929e-7 : 0.0;
    worst = std::max(worst, err);
    const bool tiny = std::fabs(double(want[i])) <= 1e-30;
    if (tiny ? diff > 1e-35 : !(err <= 4.0)) {
      failures++;
      std::fprintf(stderr, "FAIL gate %g up %g: got %g want %g\n", gate[i], up[i], got[i], want[i]);
    }
  }
  std::printf("{\"cases\": %zu, \"failures\": %d, \"maxEps\": %g}\n", got.size(), failures, worst);
  return failures == 0 ? 0 : 1;
}
