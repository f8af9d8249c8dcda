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
 * Rotary embedding in place, HF `rotate_half` convention over the first d = rotDim dims of each
 * head (the rest pass through: Phi-3 partial_rotary_factor): for j < d/2 with
 * angle = pos * invFreq[j] (float32, as HF), cos and sin times mscale (HF attention_scaling of
 * yarn / longrope), x[j] <- x[j] cos - x[j + d/2] sin and x[j + d/2] <- x[j + d/2] cos + x[j] sin.
 * @param x [m, heads, headDim] with row stride ldx floats; @param pos [m] positions;
 * @param invFreq [rotDim / 2]; @param rotDim even, <= headDim (0 = headDim).
 */
void applyRope(float* x, int64_t ldx, const int32_t* pos, const float* invFreq, int64_t m, int heads, int headDim,
               int rotDim = 0, float mscale = 1.0f);

/**
 * GeGLU gate in place (Gemma MLP): gate[i] = gelu_tanh(gate[i]) * up[i] with PyTorch's
 * gelu(approximate="tanh"): 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))). [count].
 */
void geluTanhMul(float* gate, const float* up, int64_t count);

/** Soft-capping in place (Gemma 2 final_logit_softcapping): x = cap * tanh(x / cap). [count]; cap > 0. */
void softcap(float* x, int64_t count, float cap);

/**
 * SwiGLU gate in place: gate[i] = silu(gate[i]) * up[i], silu(v) = v / (1 + exp(-v)). [count].
 * With avx2 (the caller's useAvx2(), dispatch.h; the CPU must have AVX2 and FMA), exp is the
 * vectorised expAvx2 (simd_math.h, within 2 ulp of std::exp): the two paths agree to float
 * rounding, and each gives every row of a batch the same bits.
 */
void siluMul(float* gate, const float* up, int64_t count, bool avx2 = false);

/** y[i] += b[i % n] for a [m, n] matrix with row stride ld (linear-layer bias). */
void addBias(float* y, int64_t ld, const float* b, int64_t m, int64_t n);

}  // namespace openlora::cpu
