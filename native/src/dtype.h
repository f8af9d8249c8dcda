// Storage dtypes of safetensors tensors and their conversion to float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace openlora {

/** Tensor element types the engine reads. Everything is converted to F32 at load. */
enum class DType { F32, F16, BF16 };

/** Bytes per element. */
size_t dtypeSize(DType t);

/** The safetensors spelling: "F32", "F16", "BF16". */
const char* dtypeName(DType t);

/**
 * Parse a safetensors dtype string. Returns false for dtypes the engine does not support
 * (F64, I64, F8_E4M3, ...), leaving `out` untouched.
 */
bool parseDType(const std::string& s, DType* out);

/**
 * Convert `n` little-endian elements of type `t` at `src` (any alignment) to float32 `dst`.
 * F16 handles subnormals, infinities and NaN (IEEE 754 binary16); BF16 is the top 16 bits of F32.
 */
void convertToF32(DType t, const void* src, size_t n, float* dst);

}  // namespace openlora
