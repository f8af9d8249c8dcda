// BGMV (vLLM csrc/punica/bgmv): multi-LoRA shrink and expand with one term (row, slot, scale)
// per decode token. Pool layout and term model: sgmv.cuh.
//
// Shrink: Grid (num_terms), Block (256) = 8 warps. Warp w computes ranks w, w+8, ...: its lanes
//   stride over `in` reading x[row] and A_slot[r] (both contiguous: coalesced), then warp-sum.
//   tmp[t, r] fp32; ranks >= the slot's rank and negative slots write 0.
// Expand: Grid (num_terms, ceil(out / 256)), Block (256): tmp[t] staged in shared memory; thread o
//   sums tmp[t, r] * Bt_slot[r, o] over r (Bt rows contiguous in o: coalesced), then
//   y[row, o] += scale * sum, one rounding. Requires distinct term rows (no atomics).
// Dtypes: x, y, pools f32 | f16 | bf16; fp32 accumulation.
#include <cuda_runtime.h>

#include "bgmv.cuh"
#include "sgmv.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock)
    bgmvShrinkKernel(float* tmp, const T* __restrict__ x, int64_t ld_x, const T* __restrict__ a_pool,
                     const int32_t* __restrict__ slot_rank, const int32_t* __restrict__ term_rows,
                     const int32_t* __restrict__ term_slot, int in, int max_rank) {
  const int t = blockIdx.x;
  const int slot = term_slot[t];
  const int rank = slot < 0 ? 0 : (slot_rank ? min(slot_rank[slot], max_rank) : max_rank);
  float* out = tmp + int64_t(t) * max_rank;  // [max_rank]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int r = warp; r < max_rank; r += kBlock / 32) {
    float dot = 0.0f;
    if (r < rank) {
      const T* xr = x + int64_t(term_rows[t]) * ld_x;                       // [in]
      const T* ar = a_pool + (int64_t(slot) * max_rank + r) * int64_t(in);  // [in]
      for (int k = lane; k < in; k += 32) dot += to_float(xr[k]) * to_float(ar[k]);
      dot = warp_sum(dot);
    }
    if (lane == 0) out[r] = dot;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    bgmvExpandKernel(T* y, int64_t ld_y, const float* __restrict__ tmp, const T* __restrict__ bt_pool,
                     const int32_t* __restrict__ slot_rank, const int32_t* __restrict__ term_rows,
                     const int32_t* __restrict__ term_slot, const float* __restrict__ term_scale, int out,
                     int max_rank) {
  __shared__ float ts[kLoraMaxRank];
  const int t = blockIdx.x;
  const int slot = term_slot[t];
  if (slot < 0) return;
  const int rank = slot_rank ? min(slot_rank[slot], max_rank) : max_rank;
  for (int r = threadIdx.x; r < rank; r += kBlock) ts[r] = tmp[int64_t(t) * max_rank + r];
  __syncthreads();
  const int o = blockIdx.y * kBlock + threadIdx.x;
  if (o >= out) return;
  const T* b = bt_pool + int64_t(slot) * max_rank * out + o;  // column o of Bt_slot [max_rank, out]
  float acc = 0.0f;
  for (int r = 0; r < rank; r++) acc += ts[r] * to_float(b[int64_t(r) * out]);
  T* yp = y + int64_t(term_rows[t]) * ld_y + o;
  *yp = from_float<T>(to_float(*yp) + term_scale[t] * acc);
}

}  // namespace

cudaError_t launch_bgmv_shrink(float* tmp, const void* x, int64_t ld_x, const void* a_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* term_slot, int num_terms, int in, int max_rank,
                               DType dtype, cudaStream_t stream) {
  if (num_terms < 0 || in <= 0 || ld_x < in) return invalid_argument("launch_bgmv_shrink: num_terms=%d in=%d ld_x=%lld", num_terms, in, (long long)ld_x);
  if (max_rank <= 0 || max_rank > kLoraMaxRank)
    return no_suitable_kernel("bgmv_shrink in=%d max_rank=%d (limit %d) dtype=%s", in, max_rank, kLoraMaxRank,
                              dtypeName(dtype));
  if (num_terms == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "bgmv_shrink", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bgmvShrinkKernel<T><<<num_terms, kBlock, 0, stream>>>(tmp, static_cast<const T*>(x), ld_x,
                                                          static_cast<const T*>(a_pool), slot_rank, term_rows, term_slot,
                                                          in, max_rank);
    return launch_status("launch_bgmv_shrink");
  });
}

cudaError_t launch_bgmv_expand(void* y, int64_t ld_y, const float* tmp, const void* bt_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* term_slot, const float* term_scale,
                               int num_terms, int out, int max_rank, DType dtype, cudaStream_t stream) {
  if (num_terms < 0 || out <= 0 || ld_y < out)
    return invalid_argument("launch_bgmv_expand: num_terms=%d out=%d ld_y=%lld", num_terms, out, (long long)ld_y);
  if (max_rank <= 0 || max_rank > kLoraMaxRank)
    return no_suitable_kernel("bgmv_expand out=%d max_rank=%d (limit %d) dtype=%s", out, max_rank, kLoraMaxRank,
                              dtypeName(dtype));
  if (num_terms == 0) return cudaSuccess;
  if (ceil_div(out, kBlock) > 65535) return no_suitable_kernel("bgmv_expand out=%d (limit %d)", out, 65535 * kBlock);
  return dispatch_dtype(dtype, "bgmv_expand", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid{unsigned(num_terms), ceil_div(out, kBlock)};
    bgmvExpandKernel<T><<<grid, kBlock, 0, stream>>>(static_cast<T*>(y), ld_y, tmp, static_cast<const T*>(bt_pool),
                                                     slot_rank, term_rows, term_slot, term_scale, out, max_rank);
    return launch_status("launch_bgmv_expand");
  });
}

}  // namespace openlora::cuda
