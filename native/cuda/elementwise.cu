// Small element-wise kernels of the forward.
//
// add_bias: grid (rows), block 256 threads striding the columns; y[r, :] += b (fp32 add, one
//   rounding to the dtype); in place.
#include <cuda_runtime.h>

#include "elementwise.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock) addBiasKernel(T* y, int64_t ld, const T* b, int n) {
  T* row = y + int64_t(blockIdx.x) * ld;
  for (int j = threadIdx.x; j < n; j += kBlock) row[j] = from_float<T>(to_float(row[j]) + to_float(b[j]));
}

}  // namespace

cudaError_t launch_add_bias(void* y, int64_t ld_y, const void* b, int rows, int n, DType dtype, cudaStream_t stream) {
  if (rows < 0 || n < 0 || ld_y < n) return invalid_argument("launch_add_bias: rows=%d n=%d ld_y=%lld", rows, n, (long long)ld_y);
  if (!b || rows == 0 || n == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "add_bias", [&](auto tag) {
    using T = typename decltype(tag)::type;
    addBiasKernel<T><<<unsigned(rows), kBlock, 0, stream>>>(static_cast<T*>(y), ld_y, static_cast<const T*>(b), n);
    return launch_status("launch_add_bias");
  });
}

}  // namespace openlora::cuda
