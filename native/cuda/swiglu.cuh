// Launchers for the gated MLP activations (swiglu.cu): SwiGLU (Llama family) and GeGLU (Gemma).
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

/**
 * GeGLU with HF's gelu_pytorch_tanh (Gemma's hidden_activation): out[r, i] = gelu(gate[r, i]) *
 * up[r, i], gelu(v) = 0.5 v (1 + tanh(sqrt(2 / pi) (v + 0.044715 v^3))), fp32 math, one rounding.
 * Shapes, strides, aliasing and dtypes as launch_silu_mul.
 */
cudaError_t launch_gelu_tanh_mul(const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out,
                                 int64_t ld_out, int rows, int inter, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
