// RMSNorm, float32 (HF LlamaRMSNorm: weight * x * rsqrt(mean(x^2) + eps)).
//
// Grid:  (rows)           one block per row (token)
// Block: (256)            threads stride over `hidden`; warp shuffles + shared memory reduce
// Dtypes: x, w, y float32; accumulation float32.
// Shapes: x [rows, hidden], w [hidden], y [rows, hidden], row-major, contiguous.
// In place (y == x) is safe: a block finishes reading its row (the reduction barrier) before
// any thread writes it.
// NOTE(why): not wired into the forward pass yet (CUDA backend lands in a later issue); it is
// compiled for sm_80/sm_89/sm_90a so CI catches CUDA build breaks now.
#include <cuda_runtime.h>

#include "rms_norm.cuh"

namespace {

constexpr int kBlock = 256;
static_assert(kBlock % 32 == 0 && kBlock <= 1024, "block must be whole warps");

__device__ float warpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void __launch_bounds__(kBlock) rmsNormF32Kernel(const float* __restrict__ x, const float* __restrict__ w,
                                                           float* y, int hidden, float eps) {
  const float* xr = x + static_cast<size_t>(blockIdx.x) * hidden;  // [hidden]
  float* yr = y + static_cast<size_t>(blockIdx.x) * hidden;        // [hidden]
  float ss = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += kBlock) ss += xr[i] * xr[i];
  ss = warpSum(ss);
  __shared__ float partial[kBlock / 32];
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < kBlock / 32 ? partial[threadIdx.x] : 0.0f;
    v = warpSum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(hidden) + eps);
  for (int i = threadIdx.x; i < hidden; i += kBlock) yr[i] = w[i] * (xr[i] * inv);
}

}  // namespace

extern "C" int openlora_cuda_rms_norm_f32(const float* x, const float* w, float* y, int rows, int hidden, float eps,
                                          void* stream) {
  if (rows <= 0 || hidden <= 0) return static_cast<int>(cudaErrorInvalidValue);
  rmsNormF32Kernel<<<rows, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(x, w, y, hidden, eps);
  return static_cast<int>(cudaGetLastError());
}
