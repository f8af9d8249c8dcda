// Dense GEMM on tensor cores (WMMA), the fallback when cuBLAS is absent:
//   y[m, n] = alpha * sum_k x[m, k] w[n, k] + beta * y[m, n]   (torch.nn.Linear layout, "NT")
//
// Grid:  (ceil(n / 64), ceil(m / 64))   one block per 64 x 64 tile of y
// Block: (128) = 4 warps in 2 x 2; each warp owns a 32 x 32 sub-tile = 2 x 2 WMMA 16x16x16
//   fragments with fp32 accumulators.
// Shared: x tile [64][32 + 8] and w tile [64][32 + 8] (in_dtype; +8 keeps rows 16-byte aligned
//   and staggers banks), then the fp32 result tile [64][64 + 4] for the bounds-checked epilogue.
//   Per k-step of 32 the tiles are loaded element-wise with zero fill past m, n, k, so any shape works.
// Dtypes: x, w f16 | bf16 (fragments of that type); accumulate fp32; y in_dtype or f32.
// NOTE(why): no cp.async pipeline, no swizzle: the first goal is a correct tensor-core path;
// cuBLAS (cublas_loader.cuh) is the fast path wherever the library exists.
#include <cuda_runtime.h>
#include <mma.h>

#include "gemm.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 128;
constexpr int kTM = 64, kTN = 64, kTK = 32;
constexpr int kLd = kTK + 8;  // shared row stride of the x / w tiles (elements)
constexpr int kLdC = kTN + 4; // shared row stride of the fp32 result tile

template <typename T, typename TOut>
__global__ void __launch_bounds__(kBlock)
    gemmWmmaKernel(TOut* y, int64_t ld_y, const T* __restrict__ x, int64_t ld_x, const T* __restrict__ w, int64_t ld_w,
                   int m, int n, int k, float alpha, float beta) {
  using namespace nvcuda;
  __shared__ __align__(32) T xs[kTM * kLd];
  __shared__ __align__(32) T ws[kTN * kLd];
  __shared__ __align__(32) float cs[kTM * kLdC];
  const int m0 = blockIdx.y * kTM, n0 = blockIdx.x * kTN;
  const int warp = threadIdx.x >> 5;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < k; k0 += kTK) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTM * kTK; e += kBlock) {
      const int r = e / kTK, c = e % kTK;
      const int gm = m0 + r, gn = n0 + r, gk = k0 + c;
      xs[r * kLd + c] = (gm < m && gk < k) ? x[int64_t(gm) * ld_x + gk] : from_float<T>(0.0f);
      ws[r * kLd + c] = (gn < n && gk < k) ? w[int64_t(gn) * ld_w + gk] : from_float<T>(0.0f);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], xs + (wm + 16 * i) * kLd + kk, kLd);
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], ws + (wn + 16 * j) * kLd + kk, kLd);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync(cs + (wm + 16 * i) * kLdC + wn + 16 * j, acc[i][j], kLdC, wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < kTM * kTN; e += kBlock) {
    const int r = e / kTN, c = e % kTN;
    const int gm = m0 + r, gn = n0 + c;
    if (gm >= m || gn >= n) continue;
    TOut* yp = y + int64_t(gm) * ld_y + gn;
    float v = alpha * cs[r * kLdC + c];
    if (beta != 0.0f) v += beta * to_float(*yp);
    *yp = from_float<TOut>(v);
  }
}

template <typename T, typename TOut>
cudaError_t launchTyped(void* y, int64_t ld_y, const void* x, int64_t ld_x, const void* w, int64_t ld_w, int m, int n,
                        int k, float alpha, float beta, cudaStream_t stream) {
  const dim3 grid{ceil_div(n, kTN), ceil_div(m, kTM)};
  gemmWmmaKernel<T, TOut><<<grid, kBlock, 0, stream>>>(static_cast<TOut*>(y), ld_y, static_cast<const T*>(x), ld_x,
                                                      static_cast<const T*>(w), ld_w, m, n, k, alpha, beta);
  return launch_status("launch_gemm");
}

}  // namespace

cudaError_t launch_gemm(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w, int64_t ld_w,
                        int m, int n, int k, float alpha, float beta, DType in_dtype, cudaStream_t stream) {
  if (m < 0 || n <= 0 || k <= 0 || ld_x < k || ld_w < k || ld_y < n)
    return invalid_argument("launch_gemm: m=%d n=%d k=%d ld_x=%lld ld_w=%lld ld_y=%lld", m, n, k, (long long)ld_x,
                            (long long)ld_w, (long long)ld_y);
  if (m == 0) return cudaSuccess;
  if (ceil_div(m, kTM) > 65535) return no_suitable_kernel("gemm m=%d (limit %d)", m, 65535 * kTM);
  const bool same = out_dtype == in_dtype, f32 = out_dtype == DType::F32;
  if (in_dtype == DType::F16 && same) return launchTyped<__half, __half>(y, ld_y, x, ld_x, w, ld_w, m, n, k, alpha, beta, stream);
  if (in_dtype == DType::F16 && f32) return launchTyped<__half, float>(y, ld_y, x, ld_x, w, ld_w, m, n, k, alpha, beta, stream);
  if (in_dtype == DType::BF16 && same)
    return launchTyped<__nv_bfloat16, __nv_bfloat16>(y, ld_y, x, ld_x, w, ld_w, m, n, k, alpha, beta, stream);
  if (in_dtype == DType::BF16 && f32)
    return launchTyped<__nv_bfloat16, float>(y, ld_y, x, ld_x, w, ld_w, m, n, k, alpha, beta, stream);
  // NOTE(why): no f32-input tensor-core kernel (TF32 would change results vs the CPU reference).
  return no_suitable_kernel("gemm m=%d n=%d k=%d in=%s out=%s (supported: f16/bf16 in, same or f32 out)", m, n, k,
                            dtypeName(in_dtype), dtypeName(out_dtype));
}

}  // namespace openlora::cuda
