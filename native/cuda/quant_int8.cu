// Weight-only INT8 GEMV/GEMM: y = alpha * x (scale (.) wq)^T (+ y).
//
// Grid:  (ceil(n / 8), ceil(m / 8))   one block per 8 output channels x 8 rows of x
// Block: (256) = 8 warps; warp w owns output channel n0 + w. Its lanes stride over k, load the
//   int8 weight once (-> fp32) and FMA it into 8 per-row accumulators (the 8 rows of x, read
//   through L1), then warp-sum; lane 0 applies alpha * scale[j] and writes (one rounding).
// Dtypes: x, y f32 | f16 | bf16; wq int8; scale fp32 per output channel; fp32 accumulation.
// Shapes: x [m, k] (row stride ld_x); wq [n, k] (row stride k); scale [n]; y [m, n] (row stride ld_y).
// NOTE(why): GEMV-shaped for decode (weights streamed once per 8 rows). Prefill-sized m is
// correct but re-streams wq m/8 times; a dequantise-into-shared-memory tensor-core tile is the
// follow-up.
#include <cuda_runtime.h>

#include "quant_int8.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kRows = 8;

template <typename T>
__global__ void __launch_bounds__(kBlock) gemmW8Kernel(T* y, int64_t ld_y, const T* __restrict__ x, int64_t ld_x,
                                                       const int8_t* __restrict__ wq, const float* __restrict__ scale,
                                                       int m, int n, int k, float alpha, bool accumulate) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * (kBlock / 32) + warp;
  if (j >= n) return;
  const int m0 = blockIdx.y * kRows;
  const int rows = min(kRows, m - m0);
  const int8_t* wr = wq + int64_t(j) * k;  // [k]
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; r++) acc[r] = 0.0f;
  for (int kk = lane; kk < k; kk += 32) {
    const float wv = float(wr[kk]);
#pragma unroll
    for (int r = 0; r < kRows; r++)
      if (r < rows) acc[r] += to_float(x[int64_t(m0 + r) * ld_x + kk]) * wv;
  }
  const float s = alpha * scale[j];
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const float v = warp_sum(acc[r]);
    if (lane == 0 && r < rows) {
      T* yp = y + int64_t(m0 + r) * ld_y + j;
      *yp = from_float<T>(accumulate ? to_float(*yp) + s * v : s * v);
    }
  }
}

}  // namespace

cudaError_t launch_gemm_w8(void* y, int64_t ld_y, const void* x, int64_t ld_x, const int8_t* wq, const float* scale, int m,
                           int n, int k, float alpha, bool accumulate, DType dtype, cudaStream_t stream) {
  if (m < 0 || n <= 0 || k <= 0 || ld_x < k || ld_y < n)
    return invalid_argument("launch_gemm_w8: m=%d n=%d k=%d ld_x=%lld ld_y=%lld", m, n, k, (long long)ld_x,
                            (long long)ld_y);
  if (m == 0) return cudaSuccess;
  if (ceil_div(m, kRows) > 65535) return no_suitable_kernel("gemm_w8 m=%d (limit %d)", m, 65535 * kRows);
  return dispatch_dtype(dtype, "gemm_w8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid{ceil_div(n, kBlock / 32), ceil_div(m, kRows)};
    gemmW8Kernel<T><<<grid, kBlock, 0, stream>>>(static_cast<T*>(y), ld_y, static_cast<const T*>(x), ld_x, wq, scale, m,
                                                 n, k, alpha, accumulate);
    return launch_status("launch_gemm_w8");
  });
}

}  // namespace openlora::cuda
