// Launcher for the embedding gather (embedding.cu). See common.cuh for the launcher contract.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * out[t, :] = table[ids[t], :] (torch.nn.Embedding). An id outside [0, vocab) gives a zero row.
 * @param ids   [num_tokens] int32 device
 * @param table [vocab, hidden] dtype, row-major
 * @param out   [num_tokens, hidden] dtype, row stride ld_out elements (>= hidden)
 * Dtypes: f32, f16, bf16 (table and out share it).
 */
cudaError_t launch_embedding(const int32_t* ids, const void* table, void* out, int64_t ld_out, int num_tokens,
                             int hidden, int vocab, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
