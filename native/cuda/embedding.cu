// Embedding gather: out[t, :] = table[ids[t], :].
//
// Grid:  (num_tokens)     one block per token
// Block: (256)            threads stride over `hidden`
// Dtypes: table/out f32 | f16 | bf16 (a plain copy, no conversion).
// Shapes: ids [num_tokens] int32; table [vocab, hidden]; out [num_tokens, hidden], row stride ld_out.
// An out-of-range id writes a zero row (the engine validates ids; this only keeps memory safe).
#include <cuda_runtime.h>

#include "embedding.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock) embeddingKernel(const int32_t* __restrict__ ids, const T* __restrict__ table,
                                                          T* __restrict__ out, int64_t ld_out, int hidden, int vocab) {
  const int32_t id = ids[blockIdx.x];
  T* dst = out + int64_t(blockIdx.x) * ld_out;  // [hidden]
  if (id < 0 || id >= vocab) {
    for (int i = threadIdx.x; i < hidden; i += kBlock) dst[i] = from_float<T>(0.0f);
    return;
  }
  const T* src = table + int64_t(id) * hidden;  // [hidden]
  for (int i = threadIdx.x; i < hidden; i += kBlock) dst[i] = src[i];
}

}  // namespace

cudaError_t launch_embedding(const int32_t* ids, const void* table, void* out, int64_t ld_out, int num_tokens,
                             int hidden, int vocab, DType dtype, cudaStream_t stream) {
  if (num_tokens < 0 || hidden <= 0 || vocab <= 0 || ld_out < hidden)
    return invalid_argument("launch_embedding: num_tokens=%d hidden=%d vocab=%d ld_out=%lld", num_tokens, hidden, vocab,
                            (long long)ld_out);
  if (num_tokens == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    embeddingKernel<T><<<num_tokens, kBlock, 0, stream>>>(ids, static_cast<const T*>(table), static_cast<T*>(out), ld_out,
                                                         hidden, vocab);
    return launch_status("launch_embedding");
  });
}

}  // namespace openlora::cuda
