// SwiGLU activation: out = silu(gate) * up, element-wise.
//
// Grid:  (ceil(inter / 256), rows)
// Block: (256)            one element per thread
// Dtypes: f32 | f16 | bf16; fp32 math (expf, not __expf), one rounding.
// Shapes: gate, up, out [rows, inter] with their own row strides (a fused gate_up buffer works).
// In place: out may equal gate or up (each element is read before it is written, by one thread).
#include <cuda_runtime.h>

#include "swiglu.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock) siluMulKernel(const T* gate, int64_t ld_gate, const T* up, int64_t ld_up, T* out,
                                                        int64_t ld_out, int inter) {
  const int i = blockIdx.x * kBlock + threadIdx.x;
  if (i >= inter) return;
  const int64_t r = blockIdx.y;
  const float g = to_float(gate[r * ld_gate + i]);
  const float u = to_float(up[r * ld_up + i]);
  out[r * ld_out + i] = from_float<T>(g / (1.0f + expf(-g)) * u);
}

}  // namespace

cudaError_t launch_silu_mul(const void* gate, int64_t ld_gate, const void* up, int64_t ld_up, void* out, int64_t ld_out,
                            int rows, int inter, DType dtype, cudaStream_t stream) {
  if (rows < 0 || rows > 65535 || inter <= 0 || ld_gate < inter || ld_up < inter || ld_out < inter)
    return invalid_argument("launch_silu_mul: rows=%d (<= 65535) inter=%d ld_gate=%lld ld_up=%lld ld_out=%lld", rows,
                            inter, (long long)ld_gate, (long long)ld_up, (long long)ld_out);
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "silu_mul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid(ceil_div(inter, kBlock), unsigned(rows));
    siluMulKernel<T><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(gate), ld_gate, static_cast<const T*>(up), ld_up,
                                                  static_cast<T*>(out), ld_out, inter);
    return launch_status("launch_silu_mul");
  });
}

}  // namespace openlora::cuda
