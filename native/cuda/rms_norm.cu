// RMSNorm (HF LlamaRMSNorm: weight * x * rsqrt(mean(x^2) + eps)) and fused residual add + RMSNorm.
//
// Grid:  (rows)           one block per row (token); head_rms_norm: one per (token, head)
// Block: (256)            threads stride over `hidden`; warp shuffles + shared memory reduce
// Dtypes: f32 | f16 | bf16 for x, residual, w, y (one dtype per call); fp32 accumulation.
//   The legacy openlora_cuda_rms_norm_f32 is the f32 case with a C ABI.
// Shapes: x / delta / y [rows, hidden] with row strides; residual [rows, hidden] contiguous;
//   w [hidden].
// In place: y == x is safe (each thread reads its elements before the reduction barrier and
// writes them after). In the fused kernel residual is updated in place and y may equal delta.
// NOTE(why): the normalised value is rounded to the activation dtype before the weight multiply,
// as HF does (`self.weight * hidden_states.to(input_dtype)`), so bf16 results match HF bit for bit
// more often than a single rounding would.
#include <cuda_runtime.h>

#include "rms_norm.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;
static_assert(kBlock % 32 == 0 && kBlock <= 1024, "block must be whole warps");

// Block b normalises row b / heads, segment b % heads (heads = 1: whole rows; else per-head
// segments of `hidden` elements, the q_norm / k_norm of Qwen3 and Gemma 3).
template <typename T>
__global__ void __launch_bounds__(kBlock) rmsNormKernel(const T* x, int64_t ld_x, const T* __restrict__ w, T* y,
                                                        int64_t ld_y, int hidden, int heads, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x / heads, seg = blockIdx.x % heads;
  const T* xr = x + row * ld_x + seg * hidden;  // [hidden]
  T* yr = y + row * ld_y + seg * hidden;        // [hidden]
  float ss = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += kBlock) {
    const float v = to_float(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / float(hidden) + eps);
  for (int i = threadIdx.x; i < hidden; i += kBlock) {
    const float n = to_float(from_float<T>(to_float(xr[i]) * inv));
    yr[i] = from_float<T>(to_float(w[i]) * n);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fusedAddRmsNormKernel(const T* delta, int64_t ld_delta, T* residual,
                                                                const T* __restrict__ w, T* y, int64_t ld_y, int hidden,
                                                                float eps) {
  __shared__ float scratch[32];
  const T* dr = delta + int64_t(blockIdx.x) * ld_delta;  // [hidden]
  T* rr = residual + int64_t(blockIdx.x) * hidden;       // [hidden]
  T* yr = y + int64_t(blockIdx.x) * ld_y;                // [hidden]
  float ss = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += kBlock) {
    const T s = from_float<T>(to_float(rr[i]) + to_float(dr[i]));
    rr[i] = s;  // the same thread re-reads it below: no barrier needed
    const float v = to_float(s);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / float(hidden) + eps);
  for (int i = threadIdx.x; i < hidden; i += kBlock) {
    const float n = to_float(from_float<T>(to_float(rr[i]) * inv));
    yr[i] = from_float<T>(to_float(w[i]) * n);
  }
}

}  // namespace

cudaError_t launch_rms_norm(const void* x, int64_t ld_x, const void* w, void* y, int64_t ld_y, int rows, int hidden,
                            float eps, DType dtype, cudaStream_t stream) {
  if (rows < 0 || hidden <= 0 || ld_x < hidden || ld_y < hidden)
    return invalid_argument("launch_rms_norm: rows=%d hidden=%d ld_x=%lld ld_y=%lld", rows, hidden, (long long)ld_x,
                            (long long)ld_y);
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rmsNormKernel<T><<<rows, kBlock, 0, stream>>>(static_cast<const T*>(x), ld_x, static_cast<const T*>(w),
                                                  static_cast<T*>(y), ld_y, hidden, 1, eps);
    return launch_status("launch_rms_norm");
  });
}

cudaError_t launch_head_rms_norm(const void* x, int64_t ld_x, const void* w, void* y, int64_t ld_y, int tokens, int heads,
                                 int head_dim, float eps, DType dtype, cudaStream_t stream) {
  if (tokens < 0 || heads <= 0 || head_dim <= 0 || ld_x < int64_t(heads) * head_dim || ld_y < int64_t(heads) * head_dim ||
      int64_t(tokens) * heads > 0x7fffffffLL)
    return invalid_argument("launch_head_rms_norm: tokens=%d heads=%d head_dim=%d ld_x=%lld ld_y=%lld", tokens, heads, head_dim,
                            (long long)ld_x, (long long)ld_y);
  if (tokens == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "head_rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    rmsNormKernel<T><<<unsigned(int64_t(tokens) * heads), kBlock, 0, stream>>>(
        static_cast<const T*>(x), ld_x, static_cast<const T*>(w), static_cast<T*>(y), ld_y, head_dim, heads, eps);
    return launch_status("launch_head_rms_norm");
  });
}

cudaError_t launch_fused_add_rms_norm(const void* delta, int64_t ld_delta, void* residual, const void* w, void* y,
                                      int64_t ld_y, int rows, int hidden, float eps, DType dtype, cudaStream_t stream) {
  if (rows < 0 || hidden <= 0 || ld_delta < hidden || ld_y < hidden)
    return invalid_argument("launch_fused_add_rms_norm: rows=%d hidden=%d ld_delta=%lld ld_y=%lld", rows, hidden,
                            (long long)ld_delta, (long long)ld_y);
  if (y == residual) return invalid_argument("launch_fused_add_rms_norm: y must not alias residual");
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "fused_add_rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fusedAddRmsNormKernel<T><<<rows, kBlock, 0, stream>>>(static_cast<const T*>(delta), ld_delta,
                                                          static_cast<T*>(residual), static_cast<const T*>(w),
                                                          static_cast<T*>(y), ld_y, hidden, eps);
    return launch_status("launch_fused_add_rms_norm");
  });
}

}  // namespace openlora::cuda

extern "C" int openlora_cuda_rms_norm_f32(const float* x, const float* w, float* y, int rows, int hidden, float eps,
                                          void* stream) {
  if (rows <= 0 || hidden <= 0) return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(openlora::cuda::launch_rms_norm(x, hidden, w, y, hidden, rows, hidden, eps,
                                                          openlora::cuda::DType::F32,
                                                          static_cast<cudaStream_t>(stream)));
}
