// CUDA device probe. No kernels: host code only, compiled by nvcc so it links cudart_static.
//
// NOTE(why): any error (no driver: 35, no device: 100, ...) means "no GPU" to the caller; the
// error is cleared with cudaGetLastError so it does not leak into later runtime calls.
#include <cuda_runtime.h>

#include <cstdio>

#include "device.h"

extern "C" int openlora_cuda_device_count(int* errorCode, char* errorText, int cap) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (errorCode) *errorCode = static_cast<int>(err);
  if (err != cudaSuccess) {
    if (errorText && cap > 0) std::snprintf(errorText, size_t(cap), "%s: %s", cudaGetErrorName(err), cudaGetErrorString(err));
    (void)cudaGetLastError();
    return 0;
  }
  if (errorText && cap > 0) errorText[0] = '\0';
  return count;
}
