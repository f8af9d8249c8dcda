// Paged attention decode (vLLM PagedAttention V1/V2; flash-decoding split-K for long contexts):
// one query token per sequence, keys and values read through the sequence's block table.
//
// Main kernel, one block per (query head, sequence, partition of kPagedAttentionPartition tokens):
//   Grid:  (num_heads, num_seqs, partitions)  partitions = 1 when max_context_len <= 512
//   Block: (128) = 4 warps
//   1. q (fp32) to shared memory;
//   2. scores: warp w takes tokens w, w+4, ...; its lanes split head_dim, warp-sum the dot;
//      logits[512] fp32 in shared memory;
//   3. block max / exp / block sum (fp32);
//   4. P V: thread = (token group g, dim d); groups stride tokens, then a shared-memory sum.
//   Single partition: out = acc / sum. Split: partial (acc / sum, max, sum) go to the workspace.
// Reduce kernel (split only), one block per (head, sequence): rescale each partition by
//   sum_p * exp(max_p - max) and normalise (the flash-decoding combine).
// Dtypes: q, cache, out f32 | f16 | bf16; all softmax and accumulation in fp32.
// Shapes: see paged_attention.cuh. KV head of query head h is h / (num_heads / num_kv_heads).
// Sliding window: partitions start at the first visible key, max(0, ctx - window); soft-capping
// (Gemma 2) maps each scaled score through cap * tanh(score / cap) before the softmax.
// NOTE(why): the dot is multiplied by `scale` after the sum, as native/cpu/paged_attention.cc
// does, rather than folding scale into q.
#include <cuda_runtime.h>

#include <algorithm>

#include "paged_attention.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 128;
constexpr int kWarps = kBlock / 32;
constexpr int kPart = kPagedAttentionPartition;

template <typename T, int HD>
__global__ void __launch_bounds__(kBlock)
    pagedDecodeKernel(T* out, int64_t ld_out, const T* __restrict__ q, int64_t ld_q, const T* __restrict__ key_cache,
                      const T* __restrict__ value_cache, const int32_t* __restrict__ block_tables,
                      int max_blocks_per_seq, const int32_t* __restrict__ context_lens, int num_kv_heads, int group,
                      int block_size, float scale, float softcap, int window, float* part_out, float* part_max,
                      float* part_sum, int max_parts) {
  constexpr int DW = HD < kBlock ? HD : kBlock;  // dims covered by one token group
  constexpr int G = kBlock / DW;                 // token groups in the P V phase
  constexpr int DPT = HD / DW;                   // dims per thread
  static_assert(HD % 32 == 0 && HD % DW == 0, "head_dim must be a multiple of 32");
  __shared__ float qs[HD];
  __shared__ float logits[kPart];
  __shared__ float scratch[32];
  __shared__ float red[G > 1 ? G : 1][HD];

  const int h = blockIdx.x, s = blockIdx.y, part = blockIdx.z;
  const int num_heads = gridDim.x;
  const int ctx = context_lens[s];
  const int first = window > 0 ? max(0, ctx - window) : 0;  // the first key the query sees
  const int start = first + part * kPart;
  const bool split = max_parts > 1;
  const int64_t sh = int64_t(s) * num_heads + h;
  if (ctx <= 0) {  // empty context: zero output (only partition 0 writes)
    if (part == 0 && !split)
      for (int d = threadIdx.x; d < HD; d += kBlock) out[int64_t(s) * ld_out + int64_t(h) * HD + d] = from_float<T>(0.0f);
    if (part == 0 && split && threadIdx.x == 0) {
      part_max[sh * max_parts] = -INFINITY;
      part_sum[sh * max_parts] = 0.0f;
    }
    return;
  }
  if (start >= ctx) return;
  const int n = min(ctx, start + kPart) - start;
  const int kvh = h / group;
  const int32_t* table = block_tables + int64_t(s) * max_blocks_per_seq;
  auto row = [&](const T* cache, int pos) {  // [HD] of position pos, KV head kvh
    return cache + ((int64_t(table[pos / block_size]) * num_kv_heads + kvh) * block_size + pos % block_size) * HD;
  };

  const T* qh = q + int64_t(s) * ld_q + int64_t(h) * HD;
  for (int d = threadIdx.x; d < HD; d += kBlock) qs[d] = to_float(qh[d]);
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int t = warp; t < n; t += kWarps) {
    const T* kr = row(key_cache, start + t);
    float dot = 0.0f;
#pragma unroll
    for (int i = lane; i < HD; i += 32) dot += qs[i] * to_float(kr[i]);
    dot = warp_sum(dot);
    if (lane == 0) {
      const float sc = dot * scale;
      logits[t] = softcap > 0.0f ? softcap * tanhf(sc / softcap) : sc;
    }
  }
  __syncthreads();

  float mx = -INFINITY;
  for (int t = threadIdx.x; t < n; t += kBlock) mx = fmaxf(mx, logits[t]);
  mx = block_max(mx, scratch);
  float sum = 0.0f;
  for (int t = threadIdx.x; t < n; t += kBlock) {
    const float e = expf(logits[t] - mx);
    logits[t] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);  // its barriers also publish logits[]

  const int g = threadIdx.x / DW, dl = threadIdx.x % DW;
  float acc[DPT];
#pragma unroll
  for (int i = 0; i < DPT; i++) acc[i] = 0.0f;
  if (g < G) {
    for (int t = g; t < n; t += G) {
      const T* vr = row(value_cache, start + t);
      const float p = logits[t];
#pragma unroll
      for (int i = 0; i < DPT; i++) acc[i] += p * to_float(vr[dl + i * DW]);
    }
  }
  if constexpr (G > 1) {
    if (g < G) red[g][dl] = acc[0];
    __syncthreads();
    if (g == 0) {
      for (int j = 1; j < G; j++) acc[0] += red[j][dl];
    }
  }
  if (g != 0) return;
  const float inv = 1.0f / sum;
  if (!split) {
    T* oh = out + int64_t(s) * ld_out + int64_t(h) * HD;
#pragma unroll
    for (int i = 0; i < DPT; i++) oh[dl + i * DW] = from_float<T>(acc[i] * inv);
  } else {
    float* po = part_out + (sh * max_parts + part) * HD;
#pragma unroll
    for (int i = 0; i < DPT; i++) po[dl + i * DW] = acc[i] * inv;
    if (threadIdx.x == 0) {
      part_max[sh * max_parts + part] = mx;
      part_sum[sh * max_parts + part] = sum;
    }
  }
}

template <typename T, int HD>
__global__ void __launch_bounds__(kBlock)
    pagedDecodeReduceKernel(T* out, int64_t ld_out, const int32_t* __restrict__ context_lens,
                            const float* __restrict__ part_out, const float* __restrict__ part_max,
                            const float* __restrict__ part_sum, int max_parts, int window) {
  const int h = blockIdx.x, s = blockIdx.y, num_heads = gridDim.x;
  const int64_t sh = int64_t(s) * num_heads + h;
  const int ctx = context_lens[s];
  const int span = window > 0 ? min(ctx, window) : ctx;  // keys the query sees
  const int parts = span <= 0 ? 1 : (span + kPart - 1) / kPart;
  float mx = -INFINITY;
  for (int p = 0; p < parts; p++) mx = fmaxf(mx, part_max[sh * max_parts + p]);
  float total = 0.0f;
  for (int p = 0; p < parts; p++) total += part_sum[sh * max_parts + p] * expf(part_max[sh * max_parts + p] - mx);
  T* oh = out + int64_t(s) * ld_out + int64_t(h) * HD;
  for (int d = threadIdx.x; d < HD; d += kBlock) {
    float acc = 0.0f;
    if (ctx > 0) {
      for (int p = 0; p < parts; p++) {
        const float w = part_sum[sh * max_parts + p] * expf(part_max[sh * max_parts + p] - mx);
        acc += w * part_out[(sh * max_parts + p) * HD + d];
      }
      acc /= total;
    }
    oh[d] = from_float<T>(acc);
  }
}

int partitions(int max_context_len) { return max_context_len <= kPart ? 1 : (max_context_len + kPart - 1) / kPart; }

}  // namespace

size_t paged_attention_decode_workspace_bytes(int num_seqs, int num_heads, int head_dim, int max_context_len) {
  const int parts = partitions(max_context_len);
  if (parts == 1) return 0;
  return size_t(num_seqs) * size_t(num_heads) * size_t(parts) * size_t(head_dim + 2) * sizeof(float);
}

cudaError_t launch_paged_attention_decode(void* out, int64_t ld_out, const void* q, int64_t ld_q, const void* key_cache,
                                          const void* value_cache, const int32_t* block_tables, int max_blocks_per_seq,
                                          const int32_t* context_lens, int max_context_len, int num_seqs, int num_heads,
                                          int num_kv_heads, int head_dim, int block_size, float scale, float softcap,
                                          int window, float* workspace, size_t workspace_bytes, DType dtype,
                                          cudaStream_t stream) {
  if (num_seqs < 0 || num_seqs > 65535 || num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      block_size <= 0 || max_blocks_per_seq <= 0 || max_context_len < 0 || window < 0 || softcap < 0.0f ||
      int64_t(max_context_len) > int64_t(max_blocks_per_seq) * block_size || ld_q < int64_t(num_heads) * head_dim ||
      ld_out < int64_t(num_heads) * head_dim)
    return invalid_argument("launch_paged_attention_decode: num_seqs=%d num_heads=%d num_kv_heads=%d block_size=%d "
                            "max_blocks_per_seq=%d max_context_len=%d head_dim=%d",
                            num_seqs, num_heads, num_kv_heads, block_size, max_blocks_per_seq, max_context_len, head_dim);
  if (num_seqs == 0) return cudaSuccess;
  // A window bounds the keys one query reads, so the split-K grid covers at most `window` of them.
  const int span = window > 0 ? std::min(max_context_len, window) : max_context_len;
  const int parts = partitions(span);
  const size_t need = paged_attention_decode_workspace_bytes(num_seqs, num_heads, head_dim, span);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need))
    return invalid_argument("launch_paged_attention_decode: workspace of %zu bytes needed for max_context_len=%d, got %zu",
                            need, max_context_len, workspace_bytes);
  const size_t slots = size_t(num_seqs) * size_t(num_heads) * size_t(parts);
  float* part_out = workspace;                                      // [num_seqs, num_heads, parts, head_dim]
  float* part_max = workspace ? workspace + slots * head_dim : nullptr;  // [num_seqs, num_heads, parts]
  float* part_sum = part_max ? part_max + slots : nullptr;               // [num_seqs, num_heads, parts]
  return dispatch_dtype(dtype, "paged_attention_decode", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return dispatch_head_dim(head_dim, "paged_attention_decode", [&](auto hd) {
      constexpr int HD = decltype(hd)::value;
      const dim3 grid{unsigned(num_heads), unsigned(num_seqs), unsigned(parts)};
      pagedDecodeKernel<T, HD><<<grid, kBlock, 0, stream>>>(
          static_cast<T*>(out), ld_out, static_cast<const T*>(q), ld_q, static_cast<const T*>(key_cache),
          static_cast<const T*>(value_cache), block_tables, max_blocks_per_seq, context_lens, num_kv_heads,
          num_heads / num_kv_heads, block_size, scale, softcap, window, part_out, part_max, part_sum, parts);
      cudaError_t err = launch_status("launch_paged_attention_decode");
      if (err != cudaSuccess || parts == 1) return err;
      pagedDecodeReduceKernel<T, HD><<<dim3{unsigned(num_heads), unsigned(num_seqs)}, kBlock, 0, stream>>>(
          static_cast<T*>(out), ld_out, context_lens, part_out, part_max, part_sum, parts, window);
      return launch_status("launch_paged_attention_decode (reduce)");
    });
  });
}

}  // namespace openlora::cuda
