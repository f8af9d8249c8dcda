#include "dtype.h"

#include <cstring>

namespace openlora {

size_t dtypeSize(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
  }
  return 0;
}

const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

bool parseDType(const std::string& s, DType* out) {
  if (s == "F32") { *out = DType::F32; return true; }
  if (s == "F16") { *out = DType::F16; return true; }
  if (s == "BF16") { *out = DType::BF16; return true; }
  return false;
}

namespace {

float bitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/** IEEE binary16 -> binary32, exact for every input. */
float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return bitsToFloat(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bitsToFloat(sign);  // +-0
    // Subnormal: value = mant * 2^-24.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace

void convertToF32(DType t, const void* src, size_t n, float* dst) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);  // NOTE(why): little-endian host assumed (x86-64, arm64).
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; i++) {
        uint32_t bits = uint32_t(p[2 * i]) | (uint32_t(p[2 * i + 1]) << 8);
        dst[i] = bitsToFloat(bits << 16);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; i++) {
        dst[i] = halfToFloat(uint16_t(p[2 * i] | (p[2 * i + 1] << 8)));
      }
      return;
  }
}

}  // namespace openlora
