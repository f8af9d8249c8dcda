// Launcher for paged attention decode (paged_attention.cu): one query token per sequence over
// its block table, GQA, split-K (flash-decoding) for long contexts. Semantics of
// native/cpu/paged_attention.cc (softmax(q K^T * scale) V over positions [0, context_len)).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/** Tokens of context one split-K partition covers. */
constexpr int kPagedAttentionPartition = 512;

/**
 * Bytes of fp32 workspace launch_paged_attention_decode needs: 0 when max_context_len <=
 * kPagedAttentionPartition (single pass), else num_seqs * num_heads * partitions * (head_dim + 2)
 * floats, partitions = ceil(max_context_len / kPagedAttentionPartition).
 */
size_t paged_attention_decode_workspace_bytes(int num_seqs, int num_heads, int head_dim, int max_context_len);

/**
 * out[s, h, :] = softmax(cap(q[s, h] . K_s^T * scale)) V_s over positions [first, context_lens[s])
 * of sequence s, first = max(0, context_lens[s] - window) with a sliding window (window > 0; HF
 * sliding_window: the query at p sees keys (p - window, p]), else 0; cap(x) = softcap * tanh(x /
 * softcap) when softcap > 0 (Gemma 2 attn_logit_softcapping), else x. Query head h reads KV head
 * h / (num_heads / num_kv_heads) (HF repeat_kv). Blocks before `first` are never read (their
 * table entries may be -1: dropped outside every layer's window).
 * @param out [num_seqs, num_heads, head_dim] dtype, row stride ld_out per sequence
 * @param q   [num_seqs, num_heads, head_dim] dtype, row stride ld_q per sequence
 * @param key_cache, value_cache [num_blocks, num_kv_heads, block_size, head_dim] dtype (one layer)
 * @param block_tables [num_seqs, max_blocks_per_seq] int32; position p of sequence s is in block
 *   block_tables[s * max_blocks_per_seq + p / block_size], offset p % block_size
 * @param context_lens [num_seqs] int32 (>= 1; a 0 gives a zero output row)
 * @param max_context_len an upper bound of context_lens (host; sizes the split-K grid)
 * @param workspace fp32 scratch of paged_attention_decode_workspace_bytes (may be nullptr when that is 0)
 * @param softcap attention-logit soft cap (0 = none); @param window sliding window in positions (0 = none)
 * Dtypes: f32, f16, bf16 (q, cache, out share it). head_dim in {32, 64, 96, 128, 256};
 * any block_size >= 1; num_heads % num_kv_heads == 0.
 */
cudaError_t launch_paged_attention_decode(void* out, int64_t ld_out, const void* q, int64_t ld_q, const void* key_cache,
                                          const void* value_cache, const int32_t* block_tables, int max_blocks_per_seq,
                                          const int32_t* context_lens, int max_context_len, int num_seqs, int num_heads,
                                          int num_kv_heads, int head_dim, int block_size, float scale, float softcap,
                                          int window, float* workspace, size_t workspace_bytes, DType dtype,
                                          cudaStream_t stream);

}  // namespace openlora::cuda
