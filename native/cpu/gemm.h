// Dense float32 matrix products for the CPU backend (linear layers, LoRA shrink/expand, lm_head).
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace openlora::cpu {

/**
 * y = alpha * x w^T (+ y when accumulate), the layout of every torch.nn.Linear.
 *
 * @param x [m, k] row-major, row stride ldx (>= k) floats.
 * @param w [n, k] row-major (each output feature is one contiguous row of w).
 * @param y [m, n] row-major, row stride ldy (>= n) floats.
 * Parallel over blocks of output features n (each thread streams its own rows of w).
 * Uses an AVX2/FMA kernel when the CPU has it (checked once at run time), else portable C++;
 * OPENLORA_GEMM=portable in the environment forces the portable kernel (for tests).
 */
void gemmNT(ThreadPool& pool, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
            int64_t n, int64_t k, float alpha = 1.0f, bool accumulate = false);

/** Name of the kernel gemmNT dispatches to: "avx2+fma" or "portable". */
const char* gemmKernelName();

}  // namespace openlora::cpu
