// Launcher for our tensor-core GEMM (gemm.cu): the dense fallback when cuBLAS is absent (see
// cublas_loader.cuh for the cuBLAS path and launch_gemm_best).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * y = alpha * x w^T + beta * y (torch.nn.Linear layout; beta = 0 never reads y).
 * @param x [m, k] in_dtype, row stride ld_x; @param w [n, k] in_dtype, row stride ld_w
 * @param y [m, n] out_dtype, row stride ld_y
 * in_dtype f16 or bf16 (WMMA 16x16x16, fp32 accumulate); out_dtype = in_dtype or f32 (e.g.
 * fp32 logits from lm_head). Any m, n, k >= 1 (edges are zero-padded in shared memory).
 */
cudaError_t launch_gemm(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w, int64_t ld_w,
                        int m, int n, int k, float alpha, float beta, DType in_dtype, cudaStream_t stream);

}  // namespace openlora::cuda
