// Shared pieces of the CUDA kernels (native/cuda/*.cu): the activation dtype enum, the error
// message helper every launcher uses, and (for .cu files only) device conversions and
// warp/block reductions.
//
// Launcher contract (every native/cuda/<family>.cuh):
//   cudaError_t launch_<op>(..., cudaStream_t stream)
// - raw device pointers; activations/weights are `void*` plus a DType, so one launcher serves
//   every dtype in its instantiation list;
// - returns cudaSuccess, the launch's cudaError_t, or cudaErrorNotSupported /
//   cudaErrorInvalidValue for an unsupported combination or bad argument; the message is then
//   in last_error_message() ("No suitable kernel: ..." or "<launcher>: <argument> ...").
//   Nothing aborts the process; nothing synchronises the stream.
// - The header is plain host C++ (only cuda_runtime_api.h): g++ can include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../src/dtype.h"  // openlora::DType, the one element-type enum

namespace openlora::cuda {

/** Element type of activations, weights and KV cache (fp32 accumulation everywhere): the shared
 * openlora::DType; the kernels take F32 (float), F16 (__half) and BF16 (__nv_bfloat16). */
using DType = openlora::DType;

/**
 * The message of the last failed launcher call on this thread ("" when none). A launcher that
 * returns an error always sets it; a successful one does not clear it.
 */
const char* last_error_message();

/** Record "No suitable kernel: <printf-formatted>" and return cudaErrorNotSupported. */
cudaError_t no_suitable_kernel(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/** Record "<printf-formatted>" and return cudaErrorInvalidValue (a bad argument). */
cudaError_t invalid_argument(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/**
 * Return cudaGetLastError() after a kernel launch; on error record "<what>: cudaErrorXxx:
 * description". Use as `return launch_status("launch_rope");`.
 */
cudaError_t launch_status(const char* what);

}  // namespace openlora::cuda

#ifdef __CUDACC__
// ---------------------------------------------------------------------------------------------
// Device helpers (nvcc only)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace openlora::cuda {

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<__half> {
  static constexpr DType value = DType::F16;
};
template <>
struct DTypeOf<__nv_bfloat16> {
  static constexpr DType value = DType::BF16;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/**
 * Sum over the block (blockDim.x a multiple of 32, <= 1024). Every thread must call it; every
 * thread gets the result. `scratch` is __shared__ float[32]; reusable right after return.
 */
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}
/** Max over the block; same contract as block_sum. */
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

/** A type carrier for dispatch lambdas: `[&](auto tag) { using T = typename decltype(tag)::type; }`. */
template <typename T>
struct Tag {
  using type = T;
};

/**
 * Call f(Tag<T>{}) for the activation type T of `dtype` (the instantiation list: float, __half,
 * __nv_bfloat16); any other value fails with "No suitable kernel: <op> dtype=<n>".
 */
template <typename F>
cudaError_t dispatch_dtype(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: return f(Tag<float>{});
    case DType::F16: return f(Tag<__half>{});
    case DType::BF16: return f(Tag<__nv_bfloat16>{});
    case DType::I8: break;  // int8 weights go through quant_int8.cuh, never as activations
  }
  return no_suitable_kernel("%s dtype=%d", op, int(dtype));
}

/** Head sizes the attention kernels are instantiated for (vLLM's list minus 80/112/120/192). */
template <typename F>
cudaError_t dispatch_head_dim(int head_dim, const char* op, F&& f) {
  switch (head_dim) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 96: return f(std::integral_constant<int, 96>{});
    case 128: return f(std::integral_constant<int, 128>{});
    case 256: return f(std::integral_constant<int, 256>{});
  }
  return no_suitable_kernel("%s head_dim=%d (supported: 32, 64, 96, 128, 256)", op, head_dim);
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace openlora::cuda
#endif  // __CUDACC__
