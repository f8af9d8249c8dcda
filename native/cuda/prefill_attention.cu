// Prefill attention, flash-attention style over the paged KV pool: causal, GQA, online softmax.
//
// Grid:  (ceil(max_q_len / 16), num_heads, num_seqs)   one block per 16 query rows of one head
// Block: (128) = 4 warps; warp w owns query rows 4w .. 4w+3 of the block's tile
// Shared (dynamic): q tile [16][HD] fp32, K and V tiles [32][HD + 1] fp32 (the +1 pad makes
//   lane j's reads of key row j conflict-free). HD = 256 needs 82 KB (opt-in attribute).
// Per key tile of 32 positions (gathered through the block table, converted to fp32):
//   lane j scores key j against each of its warp's rows (full dot from shared memory), then the
//   row's running max m, sum l and fp32 accumulator acc[HD] (lane holds dims lane + 32 i) are
//   rescaled by exp(m_old - m_new) and acc += p_j V_j for the 32 keys (p_j broadcast by shuffle).
// Dtypes: q, cache, out f32 | f16 | bf16; fp32 softmax and accumulation, one rounding at the end.
// Causality: query i of a sequence with q_len queries and context ctx sits at position
//   ctx - q_len + i and sees positions [0, that] (with a sliding window w: (that - w, that]); key
//   tiles past the block's last row, or before its first row's window, are skipped (never read).
// Soft-capping (Gemma 2): each scaled score becomes cap * tanh(score / cap) before the softmax.
// NOTE(why): SIMT fp32 and not mma.sync: simple and exact enough to be the reference the tuned
// kernels get checked against later; prefill is compute-bound, so this is the first to replace.
#include <cuda_runtime.h>

#include "prefill_attention.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 128;
constexpr int kBM = 16;  // query rows per block
constexpr int kBN = 32;  // keys per tile (one per lane)
constexpr int kRowsPerWarp = kBM / (kBlock / 32);
static_assert(kBN == 32, "one key per lane");

template <int HD>
constexpr size_t prefillSmemBytes() {
  return (size_t(kBM) * HD + 2 * size_t(kBN) * (HD + 1)) * sizeof(float);
}

template <typename T, int HD>
__global__ void __launch_bounds__(kBlock)
    prefillAttentionKernel(T* out, int64_t ld_out, const T* __restrict__ q, int64_t ld_q,
                           const T* __restrict__ key_cache, const T* __restrict__ value_cache,
                           const int32_t* __restrict__ block_tables, int max_blocks_per_seq,
                           const int32_t* __restrict__ cu_seqlens_q, const int32_t* __restrict__ context_lens,
                           int num_kv_heads, int group, int block_size, float scale, float softcap, int window) {
  constexpr int KS = HD + 1;       // padded row of the K / V tiles
  constexpr int DPL = HD / 32;     // dims per lane
  extern __shared__ float smem[];
  float* qs = smem;                // [kBM][HD]
  float* ks = qs + kBM * HD;       // [kBN][KS]
  float* vs = ks + kBN * KS;       // [kBN][KS]

  const int s = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kBM;
  const int qbegin = cu_seqlens_q[s];
  const int qlen = cu_seqlens_q[s + 1] - qbegin;
  if (q0 >= qlen) return;
  const int ctx = context_lens[s];
  const int base = ctx - qlen;  // position of query 0
  const int kvh = h / group;
  const int32_t* table = block_tables + int64_t(s) * max_blocks_per_seq;

  for (int i = threadIdx.x; i < kBM * HD; i += kBlock) {
    const int r = i / HD, d = i % HD;
    const int row = q0 + r;
    qs[i] = row < qlen ? to_float(q[int64_t(qbegin + row) * ld_q + int64_t(h) * HD + d]) : 0.0f;
  }

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++) acc[r][i] = 0.0f;
  }

  const int last_row = min(q0 + kBM, qlen) - 1;
  const int kv_end = min(ctx, base + last_row + 1);  // positions [kv_begin, kv_end) are visible to some row
  const int kv_begin = window > 0 ? max(0, base + q0 - window + 1) : 0;
  for (int kt = kv_begin; kt < kv_end; kt += kBN) {
    __syncthreads();  // the previous tile is consumed (and, first time, qs is written)
    for (int i = threadIdx.x; i < kBN * HD; i += kBlock) {
      const int j = i / HD, d = i % HD;
      const int pos = kt + j;
      float kv = 0.0f, vv = 0.0f;
      if (pos < kv_end) {  // pos >= kv_begin: kt starts there
        const int64_t off =
            ((int64_t(table[pos / block_size]) * num_kv_heads + kvh) * block_size + pos % block_size) * HD + d;
        kv = to_float(key_cache[off]);
        vv = to_float(value_cache[off]);
      }
      ks[j * KS + d] = kv;
      vs[j * KS + d] = vv;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int r = warp * kRowsPerWarp + rr;
      const int row = q0 + r;
      if (row >= qlen) continue;  // warp-uniform
      const int qpos = base + row;
      if (kt > qpos) continue;    // warp-uniform: the whole tile is in this row's future
      const int lo = window > 0 ? qpos - window + 1 : 0;  // the row's first visible key
      if (kt + kBN <= lo) continue;  // warp-uniform: the whole tile is before this row's window
      const int kpos = kt + lane;
      float sc = -INFINITY;
      if (kpos <= qpos && kpos < kv_end && kpos >= lo) {
        const float* qr = qs + r * HD;
        const float* kr = ks + lane * KS;
        float dot = 0.0f;
#pragma unroll 8
        for (int d = 0; d < HD; d++) dot += qr[d] * kr[d];
        sc = dot * scale;
        if (softcap > 0.0f) sc = softcap * tanhf(sc / softcap);
      }
      // Finite: the tile holds a key in [lo, qpos] (kt <= qpos and kt + kBN > lo).
      const float m_new = fmaxf(m[rr], warp_max(sc));
      const float p = sc == -INFINITY ? 0.0f : expf(sc - m_new);
      const float alpha = expf(m[rr] - m_new);  // 0 on the first tile (m = -inf)
      l[rr] = l[rr] * alpha + warp_sum(p);
#pragma unroll
      for (int i = 0; i < DPL; i++) acc[rr][i] *= alpha;
      const int nk = min(kBN, min(qpos, kv_end - 1) - kt + 1);  // keys of this tile the row sees
      for (int j = 0; j < nk; j++) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        const float* vr = vs + j * KS;
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[rr][i] += pj * vr[lane + 32 * i];
      }
      m[rr] = m_new;
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int row = q0 + warp * kRowsPerWarp + rr;
    if (row >= qlen) continue;
    T* orow = out + int64_t(qbegin + row) * ld_out + int64_t(h) * HD;
    const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++) orow[lane + 32 * i] = from_float<T>(acc[rr][i] * inv);
  }
}

}  // namespace

cudaError_t launch_prefill_attention(void* out, int64_t ld_out, const void* q, int64_t ld_q, const void* key_cache,
                                     const void* value_cache, const int32_t* block_tables, int max_blocks_per_seq,
                                     const int32_t* cu_seqlens_q, const int32_t* context_lens, int num_seqs,
                                     int max_q_len, int num_heads, int num_kv_heads, int head_dim, int block_size,
                                     float scale, float softcap, int window, DType dtype, cudaStream_t stream) {
  if (num_seqs < 0 || num_seqs > 65535 || max_q_len < 0 || num_heads <= 0 || num_heads > 65535 || num_kv_heads <= 0 ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks_per_seq <= 0 || window < 0 || softcap < 0.0f ||
      ld_q < int64_t(num_heads) * head_dim || ld_out < int64_t(num_heads) * head_dim)
    return invalid_argument("launch_prefill_attention: num_seqs=%d max_q_len=%d num_heads=%d num_kv_heads=%d "
                            "block_size=%d max_blocks_per_seq=%d head_dim=%d",
                            num_seqs, max_q_len, num_heads, num_kv_heads, block_size, max_blocks_per_seq, head_dim);
  if (num_seqs == 0 || max_q_len == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "prefill_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return dispatch_head_dim(head_dim, "prefill_attention", [&](auto hd) {
      constexpr int HD = decltype(hd)::value;
      constexpr size_t smem = prefillSmemBytes<HD>();
      auto kernel = prefillAttentionKernel<T, HD>;
      if (smem > 48 * 1024) {
        const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (err != cudaSuccess) return launch_status("launch_prefill_attention (shared memory attribute)");
      }
      const dim3 grid{ceil_div(max_q_len, kBM), unsigned(num_heads), unsigned(num_seqs)};
      kernel<<<grid, kBlock, smem, stream>>>(static_cast<T*>(out), ld_out, static_cast<const T*>(q), ld_q,
                                             static_cast<const T*>(key_cache), static_cast<const T*>(value_cache),
                                             block_tables, max_blocks_per_seq, cu_seqlens_q, context_lens, num_kv_heads,
                                             num_heads / num_kv_heads, block_size, scale, softcap, window);
      return launch_status("launch_prefill_attention");
    });
  });
}

}  // namespace openlora::cuda
