// KV-cache write (vLLM reshape_and_cache) into one layer of the paged pool.
//
// Grid:  (num_tokens)     one block per token
// Block: (128)            threads stride over num_kv_heads * head_dim elements
// Dtypes: f32 | f16 | bf16 (k, v and the cache share it: a plain copy).
// Shapes: k, v [num_tokens, num_kv_heads, head_dim] (token strides ld_k, ld_v); key_cache,
//   value_cache [num_blocks, num_kv_heads, block_size, head_dim]; slot_mapping [num_tokens] int64.
// NOTE(why): int64 offsets: a Llama-3-8B pool plane passes 2^31 elements at ~16k blocks.
#include <cuda_runtime.h>

#include "reshape_and_cache.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 128;

template <typename T>
__global__ void __launch_bounds__(kBlock) reshapeAndCacheKernel(const T* __restrict__ k, int64_t ld_k,
                                                                const T* __restrict__ v, int64_t ld_v, T* key_cache,
                                                                T* value_cache, const int64_t* slot_mapping,
                                                                int num_kv_heads, int head_dim, int block_size) {
  const int64_t slot = slot_mapping[blockIdx.x];
  if (slot < 0) return;
  const int64_t block = slot / block_size, offset = slot % block_size;
  const int n = num_kv_heads * head_dim;
  for (int i = threadIdx.x; i < n; i += kBlock) {
    const int h = i / head_dim, d = i % head_dim;
    const int64_t dst = ((block * num_kv_heads + h) * block_size + offset) * head_dim + d;
    key_cache[dst] = k[int64_t(blockIdx.x) * ld_k + i];
    value_cache[dst] = v[int64_t(blockIdx.x) * ld_v + i];
  }
}

}  // namespace

cudaError_t launch_reshape_and_cache(const void* k, int64_t ld_k, const void* v, int64_t ld_v, void* key_cache,
                                     void* value_cache, const int64_t* slot_mapping, int num_tokens, int num_kv_heads,
                                     int head_dim, int block_size, DType dtype, cudaStream_t stream) {
  const int64_t n = int64_t(num_kv_heads) * head_dim;
  if (num_tokens < 0 || num_kv_heads <= 0 || head_dim <= 0 || block_size <= 0 || ld_k < n || ld_v < n)
    return invalid_argument("launch_reshape_and_cache: num_tokens=%d num_kv_heads=%d head_dim=%d block_size=%d "
                            "ld_k=%lld ld_v=%lld",
                            num_tokens, num_kv_heads, head_dim, block_size, (long long)ld_k, (long long)ld_v);
  if (num_tokens == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "reshape_and_cache", [&](auto tag) {
    using T = typename decltype(tag)::type;
    reshapeAndCacheKernel<T><<<num_tokens, kBlock, 0, stream>>>(
        static_cast<const T*>(k), ld_k, static_cast<const T*>(v), ld_v, static_cast<T*>(key_cache),
        static_cast<T*>(value_cache), slot_mapping, num_kv_heads, head_dim, block_size);
    return launch_status("launch_reshape_and_cache");
  });
}

}  // namespace openlora::cuda
