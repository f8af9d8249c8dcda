// Launcher for FP8 (e4m3, OCP / __nv_fp8_e4m3) weight GEMV/GEMM (quant_fp8.cu): sm_89 and newer.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * y = alpha * x (scale (.) wq)^T (+ y when accumulate), w[j, :] ~= scale[j or 0] * e4m3(wq[j, :]).
 * @param wq [n, k] e4m3 bytes row-major (row stride k); @param scale float32 [num_scales]:
 *   num_scales == n (per output channel) or 1 (per tensor)
 * @param x [m, k] dtype, row stride ld_x; @param y [m, n] dtype, row stride ld_y
 * Dtypes: f32, f16, bf16 activations. Returns "No suitable kernel: fp8 e4m3 needs sm_89+" on
 * an sm_80 device (the sm_80 build compiles an empty kernel body).
 */
cudaError_t launch_gemm_fp8(void* y, int64_t ld_y, const void* x, int64_t ld_x, const uint8_t* wq, const float* scale,
                            int num_scales, int m, int n, int k, float alpha, bool accumulate, DType dtype,
                            cudaStream_t stream);

}  // namespace openlora::cuda
