// Launcher for the SwiGLU activation (swiglu.cu).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * out[r, i] = silu(gate[r, i]) * up[r, i], silu(v) = v / (1 + exp(-v)), fp32 math, one rounding.
 * @param gate [rows, inter] dtype, row stride ld_gate; @param up [rows, inter], row stride ld_up
 * @param out  [rows, inter] dtype, row stride ld_out (may equal gate or up: element-wise)
 * A fused gate_up projection [rows, 2 * inter] is gate = p, up = p + inter, ld = 2 * inter.
 * Dtypes: f32, f16, bf16.
 */
cudaError_t launch_silu_mul(const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out, int64_t ld_out,
                            int rows, int inter, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
