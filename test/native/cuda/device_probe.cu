// Does a CUDA device answer? Exit 0 and print its name when one does; exit 2 and print why not
// (no driver, no device) otherwise. run.mjs runs this before building the kernel checks.
#include <cuda_runtime.h>

#include <cstdio>

int main() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("%s\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("%s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  return 0;
}
