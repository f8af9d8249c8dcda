// Dense matrix products for the CPU backend (linear layers, LoRA shrink, lm_head): float32
// weights, or int8 weights with per-output-channel scales (weight-only quantization).
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
 * Parallel over blocks of output features n (each thread streams its own rows of w), only when
 * the op is large enough to pay for the hand-over. Register tiles of up to 3 rows of x by 4-8
 * rows of w. Uses an AVX2/FMA kernel when the CPU has it (checked once at run time), else
 * portable C++; OPENLORA_GEMM=portable in the environment forces the portable kernel (tests).
 */
void gemmNT(ThreadPool& pool, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
            int64_t n, int64_t k, float alpha = 1.0f, bool accumulate = false);

/**
 * Weight-only int8 variant: y = alpha * x (scale ⊙ wq)^T (+ y), i.e. w[j, :] ≈ scale[j] * wq[j, :].
 * Activations and accumulation stay float32 (int8 → fp32 conversion, then FMA).
 * @param wq [n, k] int8 row-major; @param scale [n] per-output-channel scales.
 */
void gemmNTQ8(ThreadPool& pool, const float* x, int64_t ldx, const int8_t* wq, const float* scale, float* y, int64_t ldy,
              int64_t m, int64_t n, int64_t k, float alpha = 1.0f, bool accumulate = false);

/**
 * Single-threaded y[t, j] = xs[t] . w[j] for gathered rows (the LoRA shrink of SGMV / BGMV).
 * @param xs [m] pointers to rows of k floats (need not be contiguous or ordered).
 * @param w [n, k] row-major, row stride ldw. @param y [m, n], row stride ldy (overwritten).
 */
void gemmNTRows(const float* const* xs, int64_t m, const float* w, int64_t ldw, int64_t n, int64_t k, float* y, int64_t ldy);

/**
 * Fewest multiply-adds a parallel GEMM task must carry (96 Ki; OPENLORA_GEMM_GRAIN overrides):
 * below it the hand-over (~1 us spinning) and the lost locality cost more than the split gains.
 */
int64_t gemmMinTaskMacs();

/** Name of the kernel family in use: "avx2+fma" or "portable". */
const char* gemmKernelName();

/** Whether the AVX2/FMA kernels are in use (CPU has them and OPENLORA_GEMM != portable). */
bool useAvx2();

}  // namespace openlora::cpu
