// Launcher for prefill attention (prefill_attention.cu): flash-attention style (key tiles in
// shared memory, online softmax, fp32 accumulation), causal, GQA, keys/values read through
// block tables of the paged pool (written first by launch_reshape_and_cache). Works for a
// fresh prompt, a chunk of one (chunked prefill) and a prompt after a prefix-cache hit.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * Sequence s owns query rows [cu_seqlens_q[s], cu_seqlens_q[s + 1]) (q_len_s of them); its
 * context holds context_lens[s] >= q_len_s positions, the last q_len_s of which are these
 * queries. Query i (0-based within the sequence) sits at position p = context_lens[s] - q_len_s + i
 * and attends to positions [0, p] (causal), or (p - window, p] with a sliding window (window > 0):
 *   out[row, h, :] = softmax(cap(q[row, h] . K^T * scale)) V,  KV head h / (num_heads / num_kv_heads),
 * cap(x) = softcap * tanh(x / softcap) when softcap > 0 (Gemma 2), else x. Positions no query of
 * the sequence sees are never read (their block-table entries may be -1).
 * @param out [num_tokens, num_heads, head_dim] dtype, row stride ld_out
 * @param q   [num_tokens, num_heads, head_dim] dtype, row stride ld_q
 * @param key_cache, value_cache [num_blocks, num_kv_heads, block_size, head_dim] dtype (one layer)
 * @param block_tables [num_seqs, max_blocks_per_seq] int32
 * @param cu_seqlens_q [num_seqs + 1] int32, cu_seqlens_q[0] = 0
 * @param context_lens [num_seqs] int32
 * @param max_q_len an upper bound of q_len_s (host; sizes the grid)
 * @param softcap attention-logit soft cap (0 = none); @param window sliding window in positions (0 = none)
 * Dtypes: f32, f16, bf16. head_dim in {32, 64, 96, 128, 256}; num_heads % num_kv_heads == 0.
 */
cudaError_t launch_prefill_attention(void* out, int64_t ld_out, const void* q, int64_t ld_q, const void* key_cache,
                                     const void* value_cache, const int32_t* block_tables, int max_blocks_per_seq,
                                     const int32_t* cu_seqlens_q, const int32_t* context_lens, int num_seqs,
                                     int max_q_len, int num_heads, int num_kv_heads, int head_dim, int block_size,
                                     float scale, float softcap, int window, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
