// Host-side pieces shared by the CUDA backend's files (device_weights, adapter_pool, staging,
// forward): CUDA statuses turned into Errors, and growable device / pinned host buffers.
// Plain host C++ (cuda_runtime_api.h only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace openlora::cuda {

/**
 * A CUDA runtime call's status (cudaMalloc, cudaMemcpyAsync, ...): returns on success, else
 * clears a non-sticky error and throws Error (errors.h) out_of_memory (cudaErrorMemoryAllocation)
 * or device_error, "CUDA forward: <what>: <name>: <description>". Never aborts.
 */
void check(cudaError_t e, const char* what);

/** A launcher of native/cuda/*.cuh: as check(), with the launcher's own message (last_error_message) when it set one. */
void checkLaunch(cudaError_t e, const char* what);

/** A 16-bit element offset of a device pointer (bf16 activations and weights). */
inline void* at(void* p, int64_t elems) { return static_cast<uint16_t*>(p) + elems; }
inline const void* at(const void* p, int64_t elems) { return static_cast<const uint16_t*>(p) + elems; }

/** A growable device buffer (cudaMalloc); contents are lost when it grows. @throws as check(). */
struct DevBuf {
  void* p = nullptr;
  size_t cap = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { reset(); }
  /** Free the buffer (never throws). */
  void reset();
  /** At least `bytes` (at least 256), reallocated only when it grows. */
  void* ensure(size_t bytes, const char* what);
};

/** A growable pinned host buffer (cudaHostAlloc), grown by half again to amortise; contents are lost when it grows. */
struct PinnedBuf {
  void* p = nullptr;
  size_t cap = 0;
  PinnedBuf() = default;
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
  ~PinnedBuf();
  /** At least `bytes`. @throws as check(). */
  void* ensure(size_t bytes, const char* what);
};

}  // namespace openlora::cuda
