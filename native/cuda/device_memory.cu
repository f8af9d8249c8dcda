// See device_memory.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "../src/errors.h"
#include "common.cuh"
#include "device_memory.cuh"

namespace openlora::cuda {

// Errors: every status becomes an Error (errors.h: out_of_memory or device_error; never abort).
void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
  raise(e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceError,
        std::string("CUDA forward: ") + what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

void checkLaunch(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  const char* msg = last_error_message();
  raise(e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceError,
        std::string("CUDA forward: ") + what + ": " +
            (msg && *msg ? std::string(msg) : std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)));
}

void DevBuf::reset() {
  if (p) (void)cudaFree(p);
  p = nullptr;
  cap = 0;
}

void* DevBuf::ensure(size_t bytes, const char* what) {
  if (bytes <= cap && p) return p;
  reset();
  check(cudaMalloc(&p, std::max<size_t>(bytes, 256)), what);
  cap = std::max<size_t>(bytes, 256);
  return p;
}

PinnedBuf::~PinnedBuf() {
  if (p) (void)cudaFreeHost(p);
}

void* PinnedBuf::ensure(size_t bytes, const char* what) {
  if (bytes <= cap && p) return p;
  if (p) (void)cudaFreeHost(p);
  p = nullptr;
  cap = 0;
  const size_t n = std::max<size_t>(bytes + bytes / 2, 4096);
  check(cudaHostAlloc(&p, n, cudaHostAllocDefault), what);
  cap = n;
  return p;
}

}  // namespace openlora::cuda
