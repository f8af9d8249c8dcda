// Launcher for the CUDA RMSNorm kernel (rms_norm.cu). Plain C ABI, no CUDA headers needed.
#pragma once

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
