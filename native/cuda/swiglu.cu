// Gated MLP activations, element-wise: SwiGLU out = silu(gate) * up; GeGLU out =
// gelu_tanh(gate) * up (HF gelu_pytorch_tanh, Gemma).
//
// Grid:  (ceil(inter / 256), rows)
// Block: (256)            one element per thread
// Dtypes: f32 | f16 | bf16; fp32 math (expf / tanhf, not the fast intrinsics), one rounding.
// Shapes: gate, up, out [rows, inter] with their own row strides (a fused gate_up buffer works).
// In place: out may equal gate or up (each element is read before it is written, by one thread).
#include <cuda_runtime.h>

#include "swiglu.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;

enum class Act { Silu, GeluTanh };

template <Act A>
__device__ __forceinline__ float activate(float g) {
  if constexpr (A == Act::Silu) {
    return g / (1.0f + expf(-g));
  } else {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi), as native/cpu/ops.cc geluTanhMul
    return 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
  }
}

template <typename T, Act A>
__global__ void __launch_bounds__(kBlock) gatedKernel(const T* gate, int64_t ld_gate, const T* up, int64_t ld_up, T* out,
                                                      int64_t ld_out, int inter) {
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= inter) return;
  const int64_t r = blockIdx.y;
  const float g = to_float(gate[r * ld_gate + i]);
  const float u = to_float(up[r * ld_up + i]);
  out[r * ld_out + i] = from_float<T>(activate<A>(g) * u);
}

template <Act A>
cudaError_t launchGated(const char* name, const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out,
                        int64_t ld_out, int rows, int inter, DType dtype, cudaStream_t stream) {
  if (rows < 0 || rows > 65535 || inter <= 0 || ld_gate < inter || ld_up < inter || ld_out < inter)
    return invalid_argument("%s: rows=%d (<= 65535) inter=%d ld_gate=%lld ld_up=%lld ld_out=%lld", name, rows, inter,
                            (long long)ld_gate, (long long)ld_up, (long long)ld_out);
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid(ceil_div(inter, kBlock), unsigned(rows));
    gatedKernel<T, A><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(gate), ld_gate, static_cast<const T*>(up), ld_up,
                                                   static_cast<T*>(out), ld_out, inter);
    return launch_status(name);
  });
}

}  // namespace

cudaError_t launch_silu_mul(const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out, int64_t ld_out,
                            int rows, int inter, DType dtype, cudaStream_t stream) {
  return launchGated<Act::Silu>("launch_silu_mul", gate, ld_gate, up, ld_up, out, ld_out, rows, inter, dtype, stream);
}

cudaError_t launch_gelu_tanh_mul(const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out,
                                 int64_t ld_out, int rows, int inter, DType dtype, cudaStream_t stream) {
  return launchGated<Act::GeluTanh>("launch_gelu_tanh_mul", gate, ld_gate, up, ld_up, out, ld_out, rows, inter, dtype,
                                    stream);
}

}  // namespace openlora::cuda
