// Paged attention of the CPU backend (prefill and decode): causal GQA attention whose keys and
// values are read through each row's block table (vLLM csrc/attention/attention_kernels.cuh,
// PagedAttention), with the FlashAttention-2 online softmax (running max and sum per query head,
// Dao 2023, Algorithm 1) over fixed tiles of logical positions, all query heads of one KV head
// group together (FlashDecoding / vLLM GQA: each K/V row is loaded once for the group).
// There is no contiguous-cache attention elsewhere in the CPU backend: prefill and decode both
// come here.
#pragma once

#include <cstdint>

#include "../src/dtype.h"  // DType, floatToBf16 / bf16ToFloat (KV elements)
#include "thread_pool.h"

namespace openlora::cpu {

/** Where one query row finds its keys and values: its sequence's block table in a KV pool. */
struct PagedAttentionRow {
  const void* keyCache;      // one layer's keys:   [num_blocks, num_kv_heads, block_size, head_dim] of kvDtype
  const void* valueCache;    // one layer's values: [num_blocks, num_kv_heads, block_size, head_dim] of kvDtype
  const int32_t* blockTable; // [ceil(nCtx / blockSize)] block ids; position j is in blockTable[j / blockSize]
  int blockSize;             // tokens per block (>= 1)
  int nCtx;                  // positions visible to this row (causal: its own position + 1; >= 1)
  DType kvDtype = DType::F32;  // element type of keyCache / valueCache (float32 or bfloat16 bits)
  int start = 0;             // first visible position (sliding window: nCtx - window, else 0); < nCtx.
                             // Blocks wholly before it are never read (they may be freed).
};

/** Logical positions per online-softmax tile: fixed, independent of blockSize (see below). */
constexpr int kAttentionTile = 32;

/**
 * Logical positions per partition (vLLM PagedAttention V2's PARTITION_SIZE, FlashDecoding's
 * split-KV): a row whose span [start, nCtx) is longer is cut into partitions [start + 512 p,
 * start + 512 (p + 1)), attended by separate tasks, then reduced. Fixed per row, so a decode step's
 * few long rows spread over every thread (5 KV heads were 5 tasks for 2 threads) and the bits
 * still depend on nothing but the row.
 */
constexpr int kAttentionPartition = 512;

/** Score options: scale (0 = 1/sqrt(headDim)) and Gemma 2's attn_logit_softcapping (0 = none). */
struct AttentionScores {
  float scale = 0.0f;    // s = q.k * scale (Gemma: query_pre_attn_scalar^-0.5)
  float softcap = 0.0f;  // s = softcap * tanh(s / softcap) before the softmax, when > 0
};

/**
 * out[t, h] = softmax(q[t, h] . K^T * scale) V over positions [rows[t].start, rows[t].nCtx), where
 * query head h reads KV head h / (numHeads / numKvHeads) (HF repeat_kv). q, out and the
 * arithmetic are float32; K/V are float32 or bfloat16 per row (PagedAttentionRow::kvDtype,
 * vLLM kv_cache_dtype): bf16 elements are widened exactly to float32 as they are loaded (AVX2:
 * zero-extend 8 x u16 to u32, shift left 16), so a bf16 row computes exactly what the float32
 * kernel computes on the bf16-rounded K/V, at half the bytes read. The float32 path is unchanged.
 *
 * Algorithm: one task per (row, partition, KV head, up to 8 of its query heads); on the AVX2 path
 * up to 4 consecutive rows of one sequence (a prompt's rows) share a task, each with its own
 * arithmetic. Within a partition (kAttentionPartition), positions are visited in tiles of
 * kAttentionTile logical positions [start + 32i, start + 32i + 32); per tile the scores
 * s = q.k * scale (then soft-capped when asked)
 * are computed, then the FlashAttention-2 update for each query head:
 *   m' = max(m, max_j s_j),  c = exp(m - m'),  l' = c l + sum_j exp(s_j - m'),
 *   acc' = c acc + sum_j exp(s_j - m') v_j        (positions j in order),
 * and finally out = acc / l. A row of one partition accumulates in `out` itself; a longer row's
 * partitions leave (acc_p, m_p, l_p) in a scratch buffer (thread-local, at most 16 MiB: longer
 * prefill chunks are run in slices of rows), reduced in partition order as FlashDecoding does:
 * M = max m_p, out = sum_p exp(m_p - M) acc_p / sum_p exp(m_p - M) l_p.
 *
 * Determinism (relied on by test/native paging, batch and prefix-cache tests): the arithmetic for
 * one output row depends only on that row's q, keys, values and nCtx. Tile and partition
 * boundaries are logical positions, never block boundaries, and each score is reduced on its own; so the block
 * size, the block ids, the other rows of the batch and the thread count change no bit.
 *
 * Kernels: AVX2/FMA when useAvx2() (dispatch.h: CPU has AVX2+FMA and OPENLORA_GEMM != portable)
 * and headDim % 8 == 0: 8-wide over head_dim; q.k for 8 positions at a time (one hadd
 * reduction), a vectorised exp (Cephes expf polynomial, within 2 ulp of std::exp on [-87, 0],
 * exactly 1 at 0, 0 below -87.3), P.V with each V row broadcast into the group's accumulators
 * (about 8 independent FMA chains; on AVX-512 F/BW CPUs 16-wide with up to 16 chains, element by
 * element the same operations, so the same bits), the next tile's K/V rows prefetched. Otherwise portable C++
 * with std::exp, same tiles and update order. The two agree to float rounding, not bitwise.
 * Decode at batch 16-64 is bound by reading the KV cache from memory, not by arithmetic.
 *
 * @param q [m, numHeads, headDim] (row stride ldq floats); @param rows [m];
 * @param out [m, numHeads * headDim] (row stride ldo floats; must not alias q or the caches).
 * @throws std::invalid_argument when numKvHeads < 1, numHeads is not a multiple of numKvHeads,
 *   headDim < 1, or a row has nCtx < 1, blockSize < 1 or start outside [0, nCtx) (checked before any work).
 */
void pagedAttention(ThreadPool& pool, const float* q, int64_t ldq, const PagedAttentionRow* rows, float* out, int64_t ldo,
                    int64_t m, int numHeads, int numKvHeads, int headDim, AttentionScores scores = {});

/** Name of the attention kernel pagedAttention uses for this headDim: "avx2+fma, avx512 q.k and p.v", "avx2+fma" or "portable". */
const char* attentionKernelName(int headDim);

/**
 * Test hook: y[i] = exp(x[i]) with the vectorised exp of the AVX2 kernel (std::exp where the
 * portable kernel is in use). Meant for inputs in (-inf, 0] (score minus running max).
 * @param x [n]; @param y [n].
 */
void attentionExpForTest(const float* x, float* y, int64_t n);

/**
 * Test hook: the partials scratch bound in floats (default 4 Mi = 16 MiB; past it a call runs its
 * rows in slices). A tiny bound runs every group as its own slice. @returns the previous bound.
 */
int64_t setAttentionPartialLimitForTest(int64_t floats);

}  // namespace openlora::cpu
