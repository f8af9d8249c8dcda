// Element types, the one enum every backend shares (safetensors tensors, packed CPU weights,
// LoRA matrices, the KV cache, CUDA activations), and the float conversions between them.
// Backend-neutral and header-only: the CPU kernels, the engine and nvcc all include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__CUDACC__)
#define OPENLORA_HOST_DEVICE __host__ __device__
#else
#define OPENLORA_HOST_DEVICE
#endif

namespace openlora {

/**
 * Element type. F16 = IEEE binary16, BF16 = the top half of an F32, I8 = signed int8 (quantized
 * weights, with scales kept beside them). The values are fixed (the CUDA launchers pass them).
 */
enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, I8 = 3 };

/** Bytes per element (4, 2, 2, 1). */
inline size_t dtypeSize(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I8: return 1;
  }
  return 0;
}

/** The safetensors spelling: "F32", "F16", "BF16", "I8". */
inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
  }
  return "?";
}

/**
 * Parse a safetensors dtype string the engine reads from files (F32, F16, BF16). Returns false
 * for any other (F64, I64, I8, F8_E4M3, ...), leaving `out` untouched.
 */
inline bool parseDType(const std::string& s, DType* out) {
  if (s == "F32") return *out = DType::F32, true;
  if (s == "F16") return *out = DType::F16, true;
  if (s == "BF16") return *out = DType::BF16, true;
  return false;
}

/**
 * float32 -> bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16) and CUDA's
 * __float2bfloat16_rn); infinities stay infinite, NaN stays a (quiet) NaN, values past the bf16
 * range round to infinity.
 */
OPENLORA_HOST_DEVICE inline uint16_t floatToBf16(float x) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(x);
#else
  std::memcpy(&u, &x, 4);
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN: keep it quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

/** bfloat16 bits -> float32 (exact: the top 16 bits). */
OPENLORA_HOST_DEVICE inline float bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

/** IEEE binary16 bits -> float32, exact for every input (subnormals, infinities, NaN). */
inline float f16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;  // +-0
    } else {
      const float v = float(mant) * (1.0f / 16777216.0f);  // subnormal: mant * 2^-24
      return sign ? -v : v;
    }
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/**
 * Convert `n` little-endian elements of F32 / F16 / BF16 at `src` (any alignment) to float32
 * `dst` (I8 is not convertible without its scales: dst is left untouched).
 */
inline void convertToF32(DType t, const void* src, size_t n, float* dst) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);  // NOTE(why): little-endian host assumed (x86-64, arm64).
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; i++) dst[i] = bf16ToFloat(uint16_t(p[2 * i] | (p[2 * i + 1] << 8)));
      return;
    case DType::F16:
      for (size_t i = 0; i < n; i++) dst[i] = f16ToFloat(uint16_t(p[2 * i] | (p[2 * i + 1] << 8)));
      return;
    case DType::I8:
      return;
  }
}

}  // namespace openlora
