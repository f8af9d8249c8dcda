// Launcher for weight-only INT8 GEMV/GEMM (quant_int8.cu), the CUDA twin of
// native/src/quant.h (int8 Linear): w[j, :] ~= scale[j] * wq[j, :] (per-output-channel symmetric).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * y = alpha * x (scale (.) wq)^T (+ y when accumulate); int8 -> fp32 dequantised in registers,
 * fp32 accumulation, one rounding to dtype.
 * @param x [m, k] dtype, row stride ld_x; @param wq [n, k] int8 row-major (row stride k)
 * @param scale [n] float32; @param y [m, n] dtype, row stride ld_y
 * Dtypes: f32, f16, bf16 activations. Any m; one pass over wq per 8 rows of x (GEMV-shaped:
 * built for decode; prefill-sized m is correct but not tuned).
 */
cudaError_t launch_gemm_w8(void* y, int64_t ld_y, const void* x, int64_t ld_x, const int8_t* wq, const float* scale, int m,
                           int n, int k, float alpha, bool accumulate, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
