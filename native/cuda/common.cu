// Host side of common.cuh: dtype names and the per-thread last-error message. No kernels.
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>

#include "common.cuh"

namespace openlora::cuda {

namespace {
// NOTE(why): thread_local so two engine threads (two engines in one process) never mix messages.
thread_local char g_message[512] = "";

void vrecord(const char* prefix, const char* fmt, va_list ap) {
  int n = std::snprintf(g_message, sizeof g_message, "%s", prefix);
  if (n < 0 || n >= int(sizeof g_message)) return;
  std::vsnprintf(g_message + n, sizeof g_message - size_t(n), fmt, ap);
}
}  // namespace

const char* last_error_message() { return g_message; }

cudaError_t no_suitable_kernel(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vrecord("No suitable kernel: ", fmt, ap);
  va_end(ap);
  return cudaErrorNotSupported;
}

cudaError_t invalid_argument(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vrecord("", fmt, ap);
  va_end(ap);
  return cudaErrorInvalidValue;
}

cudaError_t launch_status(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) std::snprintf(g_message, sizeof g_message, "%s: %s: %s", what, cudaGetErrorName(err), cudaGetErrorString(err));
  return err;
}

}  // namespace openlora::cuda
