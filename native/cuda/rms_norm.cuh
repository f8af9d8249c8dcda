// Launchers for RMSNorm and fused residual-add + RMSNorm (rms_norm.cu).
#pragma once

#include "common.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * y[r, :] = w * x[r, :] / sqrt(mean(x[r, :]^2) + eps) for r < rows (HF LlamaRMSNorm, fp32).
 * @param x [rows, hidden] float32 device pointer; @param w [hidden]; @param y [rows, hidden]
 *   (may equal x: in place is safe, each block reads its row before writing it).
 * @param stream a cudaStream_t (nullptr = default stream).
 * @return the cudaError_t of the launch (0 = success); never aborts.
 */
int openlora_cuda_rms_norm_f32(const float* x, const float* w, float* y, int rows, int hidden, float eps, void* stream);

#ifdef __cplusplus
}
#endif

namespace openlora::cuda {

/**
 * HF LlamaRMSNorm in the activation dtype: v = x * rsqrt(mean(x^2) + eps) in fp32, rounded to
 * dtype, then y = w * v rounded to dtype (exactly HF's `weight * hidden.to(input_dtype)`).
 * @param x [rows, hidden] dtype, row stride ld_x; @param w [hidden] dtype;
 * @param y [rows, hidden] dtype, row stride ld_y (may equal x: in place is safe).
 * Dtypes: f32, f16, bf16 (all three tensors share it).
 */
cudaError_t launch_rms_norm(const void* x, int64_t ld_x, const void* w, void* y, int64_t ld_y, int rows, int hidden,
                            float eps, DType dtype, cudaStream_t stream);

/**
 * Per-head RMSNorm (Qwen3 / Gemma 3 q_norm and k_norm, before RoPE): for every token t and head
 * h, the head_dim elements x[t, h, :] are normalised as launch_rms_norm does with the shared
 * weight w [head_dim].
 * @param x [tokens, heads, head_dim] dtype, token row stride ld_x; @param y likewise (ld_y; may
 *   equal x). Dtypes: f32, f16, bf16.
 */
cudaError_t launch_head_rms_norm(const void* x, int64_t ld_x, const void* w, void* y, int64_t ld_y, int tokens, int heads,
                                 int head_dim, float eps, DType dtype, cudaStream_t stream);

/**
 * Fused residual add + RMSNorm (vLLM fused_add_rms_norm): per row
 *   residual = residual + delta   (fp32 sum, rounded to dtype; written back in place)
 *   y        = rms_norm(residual) * w   (as launch_rms_norm)
 * @param delta    [rows, hidden] dtype, row stride ld_delta (the attention / MLP output)
 * @param residual [rows, hidden] dtype, contiguous; in/out (the residual stream)
 * @param w [hidden]; @param y [rows, hidden] dtype, row stride ld_y (may equal delta, not residual)
 * Dtypes: f32, f16, bf16.
 */
cudaError_t launch_fused_add_rms_norm(const void* delta, int64_t ld_delta, void* residual, const void* w, void* y,
                                      int64_t ld_y, int rows, int hidden, float eps, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
