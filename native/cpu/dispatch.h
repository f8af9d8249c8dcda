// Kernel dispatch shared by the CPU backend's kernels (packed GEMM, attention, LoRA): whether the
// AVX2/FMA paths are in use, and the smallest parallel task of a product.
#pragma once

#include <cstdint>

namespace openlora::cpu {

/**
 * Whether the AVX2/FMA kernels are in use: the CPU has AVX2 and FMA (checked once at run time)
 * and OPENLORA_GEMM=portable is not set in the environment (tests force the portable kernels).
 */
bool useAvx2();

/** Name of that kernel family: "avx2+fma" or "portable". */
const char* gemmKernelName();

/**
 * Fewest multiply-adds a parallel GEMM task must carry (96 Ki; OPENLORA_GEMM_GRAIN overrides):
 * below it the hand-over (~1 us spinning) and the lost locality cost more than the split gains.
 */
int64_t gemmMinTaskMacs();

}  // namespace openlora::cpu
