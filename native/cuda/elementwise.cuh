// Launchers for small element-wise kernels of the forward (elementwise.cu): bias add, scaling
// (Gemma's embedding normalizer), soft-capping (Gemma 2's final logits).
// See common.cuh for the launcher contract.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * y[r, :n] += b for r < rows (fp32 add, one rounding to dtype), in place.
 * @param y [rows, n] dtype, row stride ld_y; @param b [n] dtype. Nothing happens for b == nullptr.
 * Dtypes: f32, f16, bf16.
 */
cudaError_t launch_add_bias(void* y, int64_t ld_y, const void* b, int rows, int n, DType dtype, cudaStream_t stream);

/**
 * x[i] = x[i] * s for i < n (fp32 multiply, one rounding to dtype), in place.
 * @param x [n] dtype (contiguous). Dtypes: f32, f16, bf16.
 */
cudaError_t launch_scale(void* x, int64_t n, float s, DType dtype, cudaStream_t stream);

/**
 * x[i] = cap * tanh(x[i] / cap) for i < n (fp32 math, one rounding to dtype), in place; cap > 0.
 * @param x [n] dtype (contiguous). Dtypes: f32, f16, bf16.
 */
cudaError_t launch_softcap(void* x, int64_t n, float cap, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
