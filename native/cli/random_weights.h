// Seeded random weights that the host and the device generate bit-identically: value i of the
// tensor with stream id s is a bf16 number drawn from splitmix64(seed, s, i). The CPU reference
// (float32 Model) and the CUDA generator (random_device.cu) therefore hold the same model.
//
// Distribution: offset + scale * u, u uniform in [-1, 1) with 24-bit resolution, rounded to
// bf16 (round to nearest even). Linear weights: offset 0, scale 0.02 * sqrt(3) (std 0.02, as
// HF's initializer_range); norms: offset 1, scale 0.1; LoRA A: std 1/sqrt(in); LoRA B: std 0.02.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "../src/dtype.h"  // floatToBf16 (host and device)

#if defined(__CUDACC__)
#define OPENLORA_HD __host__ __device__ __forceinline__
#else
#define OPENLORA_HD inline
#endif

namespace openlora::cli {

OPENLORA_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/** bf16 bits of value i of stream `stream`. */
OPENLORA_HD uint16_t randomBf16(uint64_t seed, uint64_t stream, uint64_t i, float scale, float offset) {
  const uint64_t h = splitmix64(seed ^ splitmix64(stream ^ splitmix64(i)));
  const float u = float(int32_t(h >> 40) - (1 << 23)) * (1.0f / float(1 << 23));  // [-1, 1), exact
#if defined(__CUDA_ARCH__)
  const float v = __fadd_rn(__fmul_rn(scale, u), offset);  // NOTE(why): no FMA contraction, as on the host
#else
  const float v = scale * u + offset;  // ISO C++ mode: g++ does not contract this
#endif
  return floatToBf16(v);
}

/** Stream id of an HF tensor name (FNV-1a 64). */
inline uint64_t streamOf(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/** (scale, offset) for an HF tensor name: norms around 1, everything else std 0.02. */
inline void initOf(const std::string& name, float* scale, float* offset) {
  const bool norm = name.find("norm") != std::string::npos;
  *scale = norm ? 0.1f : 0.02f * 1.7320508f;
  *offset = norm ? 1.0f : 0.0f;
}

}  // namespace openlora::cli
