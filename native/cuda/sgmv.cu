// SGMV (Punica): segmented multi-LoRA shrink, and the general (CSR by row) expand.
// Pool layout and term model: sgmv.cuh.
//
// Shrink: Grid (num_segments, ceil(max_seg_len / 16), ceil(max_rank / 32)), Block (256).
//   A block computes a 16-term x 32-rank tile of tmp for one segment (one slot): per k-chunk of
//   64 it stages x rows (gathered through term_rows) [16][65] and A_slot [32][65] in shared memory
//   as fp32 (the +1 pad keeps column reads conflict-free); thread (i = tid / 16, c = tid % 16)
//   accumulates terms i, ranks c and c + 16. So A is read once per 16 terms, not per term.
// Expand: Grid (num_rows, ceil(out / 256)), Block (256). Thread o of row r sums, over the row's
//   terms t (CSR), term_scale[t] * sum_r tmp[t, r] Bt_slot[r, o] in fp32, then y[r, o] += it with
//   one rounding. One writer per element: deterministic, no atomics; rows without terms exit.
// Dtypes: x, y, pools f32 | f16 | bf16; fp32 accumulation.
#include <cuda_runtime.h>

#include "sgmv.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int kTM = 16;  // terms per block
constexpr int kTR = 32;  // ranks per block
constexpr int kTK = 64;  // k chunk
static_assert(kTM * kTR == 2 * kBlock, "two outputs per thread");

template <typename T>
__global__ void __launch_bounds__(kBlock)
    sgmvShrinkKernel(float* tmp, const T* __restrict__ x, int64_t ld_x, const T* __restrict__ a_pool,
                     const int32_t* __restrict__ slot_rank, const int32_t* __restrict__ term_rows,
                     const int32_t* __restrict__ seg_start, const int32_t* __restrict__ seg_slot, int in,
                     int max_rank) {
  __shared__ float xs[kTM][kTK + 1];
  __shared__ float as[kTR][kTK + 1];
  const int g = blockIdx.x;
  const int t0 = seg_start[g] + blockIdx.y * kTM;
  const int t_end = seg_start[g + 1];
  if (t0 >= t_end) return;
  const int r0 = blockIdx.z * kTR;
  if (r0 >= max_rank) return;
  const int slot = seg_slot[g];
  const int rank = slot < 0 ? 0 : (slot_rank ? min(slot_rank[slot], max_rank) : max_rank);
  const int nt = min(kTM, t_end - t0);
  const int i = threadIdx.x / 16, c = threadIdx.x % 16;
  float acc0 = 0.0f, acc1 = 0.0f;
  if (r0 < rank) {  // block-uniform
    const T* a = a_pool + int64_t(slot) * max_rank * in;  // [max_rank, in]
    for (int k0 = 0; k0 < in; k0 += kTK) {
      __syncthreads();
      for (int e = threadIdx.x; e < kTM * kTK; e += kBlock) {
        const int ti = e / kTK, kk = e % kTK, k = k0 + kk;
        xs[ti][kk] = (ti < nt && k < in) ? to_float(x[int64_t(term_rows[t0 + ti]) * ld_x + k]) : 0.0f;
      }
      for (int e = threadIdx.x; e < kTR * kTK; e += kBlock) {
        const int ri = e / kTK, kk = e % kTK, k = k0 + kk, r = r0 + ri;
        as[ri][kk] = (r < rank && k < in) ? to_float(a[int64_t(r) * in + k]) : 0.0f;
      }
      __syncthreads();
#pragma unroll 16
      for (int kk = 0; kk < kTK; kk++) {
        const float xv = xs[i][kk];
        acc0 += xv * as[c][kk];
        acc1 += xv * as[c + 16][kk];
      }
    }
  }
  if (i < nt) {
    float* out = tmp + int64_t(t0 + i) * max_rank;
    if (r0 + c < max_rank) out[r0 + c] = r0 + c < rank ? acc0 : 0.0f;
    if (r0 + c + 16 < max_rank) out[r0 + c + 16] = r0 + c + 16 < rank ? acc1 : 0.0f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    sgmvExpandKernel(T* y, int64_t ld_y, const float* __restrict__ tmp, const T* __restrict__ bt_pool,
                     const int32_t* __restrict__ slot_rank, const int32_t* __restrict__ row_ptr,
                     const int32_t* __restrict__ row_terms, const int32_t* __restrict__ term_slot,
                     const float* __restrict__ term_scale, int out, int max_rank) {
  const int row = blockIdx.x;
  const int begin = row_ptr[row], end = row_ptr[row + 1];
  if (begin >= end) return;  // no adapters: untouched
  const int o = blockIdx.y * kBlock + threadIdx.x;
  if (o >= out) return;
  float total = 0.0f;
  for (int e = begin; e < end; e++) {
    const int t = row_terms[e];
    const int slot = term_slot[t];
    if (slot < 0) continue;
    const int rank = slot_rank ? min(slot_rank[slot], max_rank) : max_rank;
    const float* tr = tmp + int64_t(t) * max_rank;                // [max_rank] (broadcast reads)
    const T* b = bt_pool + int64_t(slot) * max_rank * out + o;   // column o of Bt_slot [max_rank, out]
    float acc = 0.0f;
    for (int r = 0; r < rank; r++) acc += tr[r] * to_float(b[int64_t(r) * out]);
    total += term_scale[t] * acc;
  }
  T* yp = y + int64_t(row) * ld_y + o;
  *yp = from_float<T>(to_float(*yp) + total);
}

}  // namespace

cudaError_t launch_sgmv_shrink(float* tmp, const void* x, int64_t ld_x, const void* a_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* seg_start, const int32_t* seg_slot,
                               int num_segments, int max_seg_len, int num_terms, int in, int max_rank, DType dtype,
                               cudaStream_t stream) {
  if (num_segments < 0 || max_seg_len < 0 || num_terms < 0 || in <= 0 || ld_x < in)
    return invalid_argument("launch_sgmv_shrink: num_segments=%d max_seg_len=%d num_terms=%d in=%d ld_x=%lld",
                            num_segments, max_seg_len, num_terms, in, (long long)ld_x);
  if (max_rank <= 0 || max_rank > kLoraMaxRank)
    return no_suitable_kernel("sgmv_shrink in=%d max_rank=%d (limit %d) dtype=%s", in, max_rank, kLoraMaxRank,
                              dtypeName(dtype));
  if (num_segments == 0 || max_seg_len == 0 || num_terms == 0) return cudaSuccess;
  if (ceil_div(max_seg_len, kTM) > 65535)
    return no_suitable_kernel("sgmv_shrink max_seg_len=%d (limit %d)", max_seg_len, 65535 * kTM);
  return dispatch_dtype(dtype, "sgmv_shrink", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid{unsigned(num_segments), ceil_div(max_seg_len, kTM), ceil_div(max_rank, kTR)};
    sgmvShrinkKernel<T><<<grid, kBlock, 0, stream>>>(tmp, static_cast<const T*>(x), ld_x, static_cast<const T*>(a_pool),
                                                     slot_rank, term_rows, seg_start, seg_slot, in, max_rank);
    return launch_status("launch_sgmv_shrink");
  });
}

cudaError_t launch_sgmv_expand(void* y, int64_t ld_y, const float* tmp, const void* bt_pool, const int32_t* slot_rank,
                               const int32_t* row_ptr, const int32_t* row_terms, const int32_t* term_slot,
                               const float* term_scale, int num_rows, int out, int max_rank, DType dtype,
                               cudaStream_t stream) {
  if (num_rows < 0 || out <= 0 || ld_y < out)
    return invalid_argument("launch_sgmv_expand: num_rows=%d out=%d ld_y=%lld", num_rows, out, (long long)ld_y);
  if (max_rank <= 0 || max_rank > kLoraMaxRank)
    return no_suitable_kernel("sgmv_expand out=%d max_rank=%d (limit %d) dtype=%s", out, max_rank, kLoraMaxRank,
                              dtypeName(dtype));
  if (num_rows == 0) return cudaSuccess;
  if (ceil_div(out, kBlock) > 65535) return no_suitable_kernel("sgmv_expand out=%d (limit %d)", out, 65535 * kBlock);
  return dispatch_dtype(dtype, "sgmv_expand", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid{unsigned(num_rows), ceil_div(out, kBlock)};
    sgmvExpandKernel<T><<<grid, kBlock, 0, stream>>>(static_cast<T*>(y), ld_y, tmp, static_cast<const T*>(bt_pool),
                                                     slot_rank, row_ptr, row_terms, term_slot, term_scale, out,
                                                     max_rank);
    return launch_status("launch_sgmv_expand");
  });
}

}  // namespace openlora::cuda
