// See cuda_bench.h. Host helpers + one generator kernel for openlora-cli's roofline and bench.
//
// randomBf16Kernel: Grid (min(ceil(n / 256), 65535 * 4)), Block (256); grid-stride over n.
// dst [n] bf16 bits (uint16_t), value i = randomBf16(seed, stream, i, scale, offset).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda_bench.h"
#include "random_weights.h"

namespace {

int report(cudaError_t e, char* err, int cap) {
  if (e != cudaSuccess && err && cap > 0) std::snprintf(err, size_t(cap), "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
  return static_cast<int>(e);
}

#define CLI_CHECK(call)                           \
  do {                                            \
    cudaError_t e_ = (call);                      \
    if (e_ != cudaSuccess) return report(e_, err, cap); \
  } while (0)

__global__ void randomBf16Kernel(uint16_t* dst, int64_t n, uint64_t seed, uint64_t stream, float scale, float offset) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = openlora::cli::randomBf16(seed, stream, uint64_t(i), scale, offset);
  }
}

void launchRandom(uint16_t* dst, int64_t n, uint64_t seed, uint64_t stream, float scale, float offset, cudaStream_t s) {
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535 * 4);
  randomBf16Kernel<<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), 256, 0, s>>>(dst, n, seed, stream, scale, offset);
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : double(v[v.size() / 2]);
}

}  // namespace

extern "C" int openlora_cli_cuda_describe(char* name, int nameCap, size_t* totalBytes, char* err, int cap) {
  cudaDeviceProp p;
  CLI_CHECK(cudaGetDeviceProperties(&p, 0));
  if (name && nameCap > 0) std::snprintf(name, size_t(nameCap), "%s (sm_%d%d, %d SMs)", p.name, p.major, p.minor, p.multiProcessorCount);
  if (totalBytes) *totalBytes = p.totalGlobalMem;
  return 0;
}

extern "C" int openlora_cli_cuda_copy_bandwidth(size_t bytes, int iters, double* gbPerS, char* err, int cap) {
  void* a = nullptr;
  void* b = nullptr;
  CLI_CHECK(cudaMalloc(&a, bytes));
  cudaError_t e = cudaMalloc(&b, bytes);
  if (e != cudaSuccess) {
    cudaFree(a);
    return report(e, err, cap);
  }
  launchRandom(static_cast<uint16_t*>(a), int64_t(bytes / 2), 1, 2, 1.0f, 0.0f, nullptr);
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  std::vector<float> ms;
  e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, nullptr);  // warm-up
  for (int i = 0; e == cudaSuccess && i < iters; i++) {
    cudaEventRecord(t0, nullptr);
    cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, nullptr);
    cudaEventRecord(t1, nullptr);
    e = cudaEventSynchronize(t1);
    float m = 0;
    cudaEventElapsedTime(&m, t0, t1);
    ms.push_back(m);
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaFree(a);
  cudaFree(b);
  if (e != cudaSuccess) return report(e, err, cap);
  *gbPerS = 2.0 * double(bytes) / (median(ms) * 1e-3) / 1e9;
  return 0;
}

extern "C" int openlora_cli_cuda_random_weights(uint64_t seed, int count, const int64_t* numel, const uint64_t* streams,
                                                const float* scale, const float* offset, double* ms, size_t* bytes,
                                                char* err, int cap) {
  std::vector<uint16_t*> bufs(size_t(count), nullptr);
  size_t total = 0;
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < count && e == cudaSuccess; i++) {
    e = cudaMalloc(&bufs[size_t(i)], size_t(numel[i]) * 2);
    total += size_t(numel[i]) * 2;
  }
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  if (e == cudaSuccess) {
    cudaEventRecord(t0, nullptr);
    for (int i = 0; i < count; i++) launchRandom(bufs[size_t(i)], numel[i], seed, streams[i], scale[i], offset[i], nullptr);
    cudaEventRecord(t1, nullptr);
    e = cudaEventSynchronize(t1);
    if (e == cudaSuccess) e = cudaGetLastError();
    float m = 0;
    cudaEventElapsedTime(&m, t0, t1);
    *ms = m;
    *bytes = total;
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  for (uint16_t* p : bufs) cudaFree(p);
  return report(e, err, cap);
}

extern "C" int openlora_cli_cuda_upload_timing(size_t bytesEach, int count, double* msEach, double* gbPerS, char* err, int cap) {
  void* host = nullptr;
  CLI_CHECK(cudaMallocHost(&host, bytesEach));
  for (size_t i = 0; i < bytesEach / 2; i++) static_cast<uint16_t*>(host)[i] = openlora::cli::randomBf16(3, 4, i, 0.02f, 0.0f);
  std::vector<void*> slots(size_t(count), nullptr);
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < count && e == cudaSuccess; i++) e = cudaMalloc(&slots[size_t(i)], bytesEach);
  cudaStream_t upload = nullptr;
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&upload, cudaStreamNonBlocking);
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  std::vector<float> ms;
  for (int i = 0; i < count && e == cudaSuccess; i++) {
    cudaEventRecord(t0, upload);
    cudaMemcpyAsync(slots[size_t(i)], host, bytesEach, cudaMemcpyHostToDevice, upload);
    cudaEventRecord(t1, upload);
    e = cudaEventSynchronize(t1);
    float m = 0;
    cudaEventElapsedTime(&m, t0, t1);
    ms.push_back(m);
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  if (upload) cudaStreamDestroy(upload);
  for (void* p : slots) cudaFree(p);
  cudaFreeHost(host);
  if (e != cudaSuccess) return report(e, err, cap);
  *msEach = median(ms);
  *gbPerS = double(bytesEach) / (*msEach * 1e-3) / 1e9;
  return 0;
}
