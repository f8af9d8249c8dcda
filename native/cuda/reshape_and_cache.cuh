// Launcher for the KV-cache write (reshape_and_cache.cu), vLLM reshape_and_cache semantics over
// the layout of the CPU pool (native/src/kv_cache.h):
//   pool [num_layers, 2 (K, V), num_blocks, num_kv_heads, block_size, head_dim]
// The caller passes one layer's K and V planes: key_cache = pool + (layer * 2) * plane,
// value_cache = pool + (layer * 2 + 1) * plane, plane = num_blocks * num_kv_heads * block_size * head_dim.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * key_cache[b, h, o, :] = k[t, h, :] and value_cache[b, h, o, :] = v[t, h, :] where
 * slot_mapping[t] = b * block_size + o; a negative slot skips the token (padding).
 * @param k [num_tokens, num_kv_heads, head_dim] dtype, token row stride ld_k elements
 * @param v [num_tokens, num_kv_heads, head_dim] dtype, token row stride ld_v
 * @param key_cache, value_cache [num_blocks, num_kv_heads, block_size, head_dim] dtype (one layer)
 * @param slot_mapping [num_tokens] int64
 * Dtypes: f32, f16, bf16 (activations and cache share it).
 */
cudaError_t launch_reshape_and_cache(const void* k, int64_t ld_k, const void* v, int64_t ld_v, void* key_cache,
                                     void* value_cache, const int64_t* slot_mapping, int num_tokens, int num_kv_heads,
                                     int head_dim, int block_size, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
