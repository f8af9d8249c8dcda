// Launcher for rotary position embedding (rope.cu) and the host-side HF inverse frequencies
// (default, linear and llama3 rope_scaling).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * In-place RoPE on q and k, HF `rotate_half` convention on the first rotary_dim dims of each head
 * (partial_rotary_factor: the rest pass through), one position per token: for j < rotary_dim/2,
 * angle = positions[t] * inv_freq[j] (fp32, as HF), c = cos(angle) * mscale, s = sin(angle) * mscale, then
 *   x[j]              <- x[j] c - x[j + rotary_dim/2] s
 *   x[j + rotary_dim/2] <- x[j + rotary_dim/2] c + x[j] s      (fp32 math, one rounding to dtype)
 * @param q [num_tokens, num_heads, head_dim] dtype, token row stride ld_q elements (in place)
 * @param k [num_tokens, num_kv_heads, head_dim] dtype, token row stride ld_k (in place; may be
 *   nullptr with num_kv_heads = 0 to rotate q only)
 * @param positions [num_tokens] int32
 * @param inv_freq [tables, rotary_dim / 2] float32 device: one or more inverse-frequency tables
 *   (scaling folded in, as HF does: ModelConfig::ropeInvFreq and its longrope / dynamic variants)
 * @param table_of_token [num_tokens] int32 device, which table each token uses; nullptr = table 0
 * @param mscale HF attention_scaling (yarn / longrope attention factor; 1 otherwise)
 * Dtypes: f32, f16, bf16. head_dim <= 512; rotary_dim even, 2 <= rotary_dim <= head_dim.
 */
cudaError_t launch_rope(void* q, int64_t ld_q, void* k, int64_t ld_k, const int32_t* positions, const float* inv_freq,
                        const int32_t* table_of_token, int num_tokens, int num_heads, int num_kv_heads, int head_dim,
                        int rotary_dim, float mscale, DType dtype, cudaStream_t stream);

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
