// Element-wise and attention ops of the CPU backend (float32), HF modeling_llama.py semantics.
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace openlora::cpu {

/**
 * LlamaRMSNorm: y = w * x / sqrt(mean(x^2) + eps), per row.
 * @param x [m, n]; @param w [n]; @param y [m, n] (may alias x).
 */
void rmsNorm(const float* x, const float* w, float eps, float* y, int64_t m, int64_t n);

/**
 * Rotary embedding in place, HF `rotate_half` convention: for j < d/2 with angle = pos * invFreq[j]
 * (float32, as HF), x[j] <- x[j] cos - x[j + d/2] sin and x[j + d/2] <- x[j + d/2] cos + x[j] sin.
 * @param x [m, heads, headDim] with row stride ldx floats; @param pos [m] positions;
 * @param invFreq [headDim / 2].
 */
void applyRope(float* x, int64_t ldx, const int32_t* pos, const float* invFreq, int64_t m, int heads, int headDim);

/** SwiGLU gate in place: gate[i] = silu(gate[i]) * up[i], silu(v) = v / (1 + exp(-v)). [count]. */
void siluMul(float* gate, const float* up, int64_t count);

/** y[i] += b[i % n] for a [m, n] matrix with row stride ld (linear-layer bias). */
void addBias(float* y, int64_t ld, const float* b, int64_t m, int64_t n);

/** Where one query row finds its keys and values: the sequence's cache for this layer. */
struct AttentionRow {
  const float* keys;    // [nCtx, numKvHeads, headDim], position-major
  const float* values;  // [nCtx, numKvHeads, headDim]
  int nCtx;             // positions visible to this row (causal: its own position + 1)
};

/**
 * Causal GQA attention: out[t, h] = softmax(q[t,h] . K^T / sqrt(headDim)) V, where query head h
 * reads KV head h / (numHeads / numKvHeads) (HF repeat_kv). Parallel over (row, head).
 * @param q [m, numHeads, headDim] (row stride ldq); @param rows [m];
 * @param out [m, numHeads * headDim] (row stride ldo).
 */
void attention(ThreadPool& pool, const float* q, int64_t ldq, const AttentionRow* rows, float* out, int64_t ldo,
               int64_t m, int numHeads, int numKvHeads, int headDim);

}  // namespace openlora::cpu
