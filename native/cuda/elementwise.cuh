// Launchers for small element-wise kernels of the forward (elementwise.cu): bias add.
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

}  // namespace openlora::cuda
