// Element-wise ops of the CPU backend (attention: paged_attention.h) (float32), HF modeling_llama.py semantics.
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

}  // namespace openlora::cpu
