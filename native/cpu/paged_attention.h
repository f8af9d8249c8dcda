// Paged attention of the CPU backend (prefill and decode): causal GQA attention whose keys and
// values are read through each row's block table (vLLM csrc/attention/attention_kernels.cuh,
// PagedAttention; here one float32 loop per (row, head)).
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace openlora::cpu {

/** Where one query row finds its keys and values: its sequence's block table in a KV pool. */
struct PagedAttentionRow {
  const float* keyCache;     // one layer's keys:   [num_blocks, num_kv_heads, block_size, head_dim]
  const float* valueCache;   // one layer's values: [num_blocks, num_kv_heads, block_size, head_dim]
  const int32_t* blockTable; // [ceil(nCtx / blockSize)] block ids; position j is in blockTable[j / blockSize]
  int blockSize;             // tokens per block
  int nCtx;                  // positions visible to this row (causal: its own position + 1)
};

/**
 * out[t, h] = softmax(q[t, h] . K^T / sqrt(headDim)) V over positions [0, rows[t].nCtx), where
 * query head h reads KV head h / (numHeads / numKvHeads) (HF repeat_kv). Parallel over
 * (row, head). Same summation order as a contiguous cache, so paging changes no bit.
 * @param q [m, numHeads, headDim] (row stride ldq); @param rows [m];
 * @param out [m, numHeads * headDim] (row stride ldo).
 */
void pagedAttention(ThreadPool& pool, const float* q, int64_t ldq, const PagedAttentionRow* rows, float* out, int64_t ldo,
                    int64_t m, int numHeads, int numKvHeads, int headDim);

}  // namespace openlora::cpu
