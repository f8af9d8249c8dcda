// Seeded random draws for the C++ check drivers (test/native/cpp/*_check.cc): each driver owns
// one generator with its own seed, so its cases do not move when another driver changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

/** One driver's generator and its draws. */
struct CheckRandom {
  explicit CheckRandom(uint32_t seed) : rng(seed) {}
  /** n draws of N(0, sd^2), float32. */
  std::vector<float> randn(size_t n, float sd = 1.0f) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
  }
  /** A uniform integer in [lo, hi]. */
  int randint(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
  std::mt19937 rng;
};
