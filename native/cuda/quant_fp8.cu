// FP8 (e4m3) weight GEMV/GEMM: y = alpha * x (scale (.) e4m3(wq))^T (+ y). sm_89 and newer.
//
// Grid:  (ceil(n / 8), ceil(m / 8))   one block per 8 output channels x 8 rows of x
// Block: (256) = 8 warps; warp w owns output channel n0 + w; lanes stride over k, convert each
//   e4m3 byte to fp32 once (hardware cvt on sm_89+) and FMA it into 8 per-row accumulators.
// Dtypes: x, y f32 | f16 | bf16; wq e4m3 bytes; scale fp32, per output channel (num_scales = n)
//   or per tensor (num_scales = 1); fp32 accumulation, one rounding.
// NOTE(why): the sm_80 build compiles an empty body (guarded by __CUDA_ARCH__ < 890) and the
// launcher refuses devices below sm_89, so the fatbin stays valid for all three targets.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "quant_fp8.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kRows = 8;

template <typename T>
__global__ void __launch_bounds__(kBlock) gemmFp8Kernel(T* y, int64_t ld_y, const T* __restrict__ x, int64_t ld_x,
                                                        const uint8_t* __restrict__ wq, const float* __restrict__ scale,
                                                        int num_scales, int m, int n, int k, float alpha,
                                                        bool accumulate) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * (kBlock / 32) + warp;
  if (j >= n) return;
  const int m0 = blockIdx.y * kRows;
  const int rows = min(kRows, m - m0);
  const uint8_t* wr = wq + int64_t(j) * k;  // [k]
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; r++) acc[r] = 0.0f;
  for (int kk = lane; kk < k; kk += 32) {
    __nv_fp8_e4m3 w8;
    w8.__x = wr[kk];
    const float wv = float(w8);
#pragma unroll
    for (int r = 0; r < kRows; r++)
      if (r < rows) acc[r] += to_float(x[int64_t(m0 + r) * ld_x + kk]) * wv;
  }
  const float s = alpha * scale[num_scales == 1 ? 0 : j];
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const float v = warp_sum(acc[r]);
    if (lane == 0 && r < rows) {
      T* yp = y + int64_t(m0 + r) * ld_y + j;
      *yp = from_float<T>(accumulate ? to_float(*yp) + s * v : s * v);
    }
  }
#else
  (void)y, (void)ld_y, (void)x, (void)ld_x, (void)wq, (void)scale, (void)num_scales, (void)m, (void)n, (void)k,
      (void)alpha, (void)accumulate;
#endif
}

}  // namespace

cudaError_t launch_gemm_fp8(void* y, int64_t ld_y, const void* x, int64_t ld_x, const uint8_t* wq, const float* scale,
                            int num_scales, int m, int n, int k, float alpha, bool accumulate, DType dtype,
                            cudaStream_t stream) {
  if (m < 0 || n <= 0 || k <= 0 || ld_x < k || ld_y < n || (num_scales != 1 && num_scales != n))
    return invalid_argument("launch_gemm_fp8: m=%d n=%d k=%d num_scales=%d (1 or n) ld_x=%lld ld_y=%lld", m, n, k,
                            num_scales, (long long)ld_x, (long long)ld_y);
  if (m == 0) return cudaSuccess;
  int dev = 0, major = 0, minor = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (err != cudaSuccess) return launch_status("launch_gemm_fp8 (device query)");
  if (major * 10 + minor < 89)
    return no_suitable_kernel("gemm_fp8 m=%d n=%d k=%d dtype=%s: fp8 e4m3 needs sm_89+ (device is sm_%d%d)", m, n, k,
                              dtypeName(dtype), major, minor);
  if (ceil_div(m, kRows) > 65535) return no_suitable_kernel("gemm_fp8 m=%d (limit %d)", m, 65535 * kRows);
  return dispatch_dtype(dtype, "gemm_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid{ceil_div(n, kBlock / 32), ceil_div(m, kRows)};
    gemmFp8Kernel<T><<<grid, kBlock, 0, stream>>>(static_cast<T*>(y), ld_y, static_cast<const T*>(x), ld_x, wq, scale,
                                                  num_scales, m, n, k, alpha, accumulate);
    return launch_status("launch_gemm_fp8");
  });
}

}  // namespace openlora::cuda
