// bfloat16 <-> float32 on the host: the one conversion the CPU kernels share (packed weights,
// LoRA A/B, KV cache).
#pragma once

#include <cstdint>
#include <cstring>

namespace openlora::cpu {

/**
 * float32 -> bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16)); infinities
 * stay infinite, NaN stays a (quiet) NaN, values past the bf16 range round to infinity.
 */
inline uint16_t floatToBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN: keep it quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

/** bfloat16 bits -> float32 (exact: the top 16 bits). */
inline float bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace openlora::cpu
