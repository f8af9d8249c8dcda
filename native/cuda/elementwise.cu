// Small element-wise kernels of the forward.
//
// add_bias: grid (rows), block 256 threads striding the columns; y[r, :] += b (fp32 add, one
//   rounding to the dtype); in place.
// scale, softcap: grid-stride loops over n elements (grid <= 4096 blocks of 256), fp32 math
//   (tanhf, not the fast intrinsic), one rounding; in place.
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

enum class Map { Scale, Softcap };

template <typename T, Map M>
__global__ void __launch_bounds__(kBlock) mapKernel(T* x, int64_t n, float a) {
  for (int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x; i < n; i += int64_t(gridDim.x) * kBlock) {
    const float v = to_float(x[i]);
    x[i] = from_float<T>(M == Map::Scale ? v * a : a * tanhf(v / a));
  }
}

template <Map M>
cudaError_t launchMap(const char* name, void* x, int64_t n, float a, DType dtype, cudaStream_t stream) {
  if (n < 0 || (M == Map::Softcap && !(a > 0.0f))) return invalid_argument("%s: n=%lld a=%g", name, (long long)n, double(a));
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const unsigned grid = unsigned(n / kBlock + 1 < 4096 ? n / kBlock + 1 : 4096);
    mapKernel<T, M><<<grid, kBlock, 0, stream>>>(static_cast<T*>(x), n, a);
    return launch_status(name);
  });
}

}  // namespace

cudaError_t launch_scale(void* x, int64_t n, float s, DType dtype, cudaStream_t stream) {
  return launchMap<Map::Scale>("launch_scale", x, n, s, dtype, stream);
}

cudaError_t launch_softcap(void* x, int64_t n, float cap, DType dtype, cudaStream_t stream) {
  return launchMap<Map::Softcap>("launch_softcap", x, n, cap, dtype, stream);
}

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
