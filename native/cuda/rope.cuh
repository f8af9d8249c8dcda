// Launcher for rotary position embedding (rope.cu) and the host-side HF inverse frequencies
// (default, linear and llama3 rope_scaling).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * In-place RoPE on q and k, HF `rotate_half` convention, one position per token:
 * for j < head_dim/2, angle = positions[t] * inv_freq[j] (fp32, as HF), then
 *   x[j]       <- x[j] cos - x[j + d/2] sin
 *   x[j + d/2] <- x[j + d/2] cos + x[j] sin      (fp32 math, one rounding to dtype)
 * @param q [num_tokens, num_heads, head_dim] dtype, token row stride ld_q elements (in place)
 * @param k [num_tokens, num_kv_heads, head_dim] dtype, token row stride ld_k (in place; may be
 *   nullptr with num_kv_heads = 0 to rotate q only)
 * @param positions [num_tokens] int32; @param inv_freq [head_dim / 2] float32 device (from
 *   rope_inv_freq below: llama3 / linear scaling is folded in there, as HF does)
 * Dtypes: f32, f16, bf16. head_dim even, <= 512.
 */
cudaError_t launch_rope(void* q, int64_t ld_q, void* k, int64_t ld_k, const int32_t* positions, const float* inv_freq,
                        int num_tokens, int num_heads, int num_kv_heads, int head_dim, DType dtype, cudaStream_t stream);

/** HF rope_scaling kinds. */
enum class RopeScalingKind : int { None = 0, Linear = 1, Llama3 = 2 };

/**
 * Host: inv_freq[j] = 1 / theta^(2j / head_dim) in fp32 (HF _compute_default_rope_parameters),
 * then Linear: / factor; Llama3 (HF _compute_llama3_parameters): wavelen = 2 pi / f; wavelen >
 * orig/low_freq_factor -> f / factor; wavelen < orig/high_freq_factor -> f; else smooth =
 * (orig/wavelen - low) / (high - low), f = (1 - smooth) f / factor + smooth f.
 * Same rule as native/src/config.cc ModelConfig::ropeInvFreq. @param out [head_dim / 2] host.
 */
void rope_inv_freq(double theta, int head_dim, RopeScalingKind kind, double factor, double low_freq_factor,
                   double high_freq_factor, double original_max_position_embeddings, float* out);

}  // namespace openlora::cuda
