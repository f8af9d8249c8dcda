// Shared host helpers of the CUDA kernel checks (test/native/cuda/*_checks.cu): random
// inputs (never zeros), device buffers in any activation dtype, and PASS/FAIL reporting with
// max abs / rel error. Each family file checks its kernels against a naive CPU loop; main.cu
// runs them (see run.mjs for the build).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../../native/cuda/common.cuh"

namespace openlora::cuda_checks {

using namespace openlora::cuda;

// ---------------------------------------------------------------------------------------------
// Host helpers

inline std::mt19937 g_rng(1234);
inline int g_failures = 0;

inline std::vector<float> randomVec(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = d(g_rng);
    while (x == 0.0f);  // never zeros
  }
  return v;
}

inline float roundTo(DType t, float v) {
  if (t == DType::BF16) return __bfloat162float(__float2bfloat16(v));
  if (t == DType::F16) return __half2float(__float2half(v));
  return v;
}
inline void roundAll(DType t, std::vector<float>& v) {
  for (auto& x : v) x = roundTo(t, x);
}

/** A device buffer holding host floats converted to dtype t. */
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  Dev() = default;
  explicit Dev(size_t b) : bytes(b) {
    if (cudaMalloc(&p, b) != cudaSuccess) {
      std::fprintf(stderr, "cudaMalloc(%zu) failed\n", b);
      std::exit(1);
    }
    cudaMemset(p, 0, b);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
    if (p) cudaFree(p);
  }
  template <typename U>
  U* as() const {
    return static_cast<U*>(p);
  }
};

inline Dev* upload(DType t, const std::vector<float>& v) {
  Dev* d = new Dev(v.size() * size_t(dtypeSize(t)) + 16);
  if (t == DType::F32) {
    cudaMemcpy(d->p, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
  } else if (t == DType::BF16) {
    std::vector<__nv_bfloat16> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2bfloat16(v[i]);
    cudaMemcpy(d->p, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
  } else {
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2half(v[i]);
    cudaMemcpy(d->p, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
  }
  return d;
}
template <typename U>
Dev* uploadRaw(const std::vector<U>& v) {
  Dev* d = new Dev(v.size() * sizeof(U) + 16);
  cudaMemcpy(d->p, v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice);
  return d;
}
inline std::vector<float> download(DType t, const Dev* d, size_t n) {
  std::vector<float> out(n);
  if (t == DType::F32) {
    cudaMemcpy(out.data(), d->p, n * 4, cudaMemcpyDeviceToHost);
  } else if (t == DType::BF16) {
    std::vector<__nv_bfloat16> h(n);
    cudaMemcpy(h.data(), d->p, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) out[i] = __bfloat162float(h[i]);
  } else {
    std::vector<__half> h(n);
    cudaMemcpy(h.data(), d->p, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) out[i] = __half2float(h[i]);
  }
  return out;
}
template <typename U>
std::vector<U> downloadRaw(const Dev* d, size_t n) {
  std::vector<U> out(n);
  cudaMemcpy(out.data(), d->p, n * sizeof(U), cudaMemcpyDeviceToHost);
  return out;
}

inline bool launched(const char* name, cudaError_t err) {
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::printf("FAIL  %-44s launch: %s (%s)\n", name, cudaGetErrorString(err), last_error_message());
    g_failures++;
    return false;
  }
  return true;
}

/** Compare got vs ref: pass when |got - ref| <= atol + rtol |ref| everywhere. */
inline void report(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, float atol, float rtol) {
  double maxAbs = 0, maxRel = 0;
  bool ok = got.size() == ref.size();
  size_t bad = 0;
  for (size_t i = 0; ok && i < ref.size(); i++) {
    const double e = std::fabs(double(got[i]) - double(ref[i]));
    if (!(e <= atol + rtol * std::fabs(double(ref[i])))) {
      if (bad == 0) std::printf("      first mismatch at %zu: got %g ref %g\n", i, double(got[i]), double(ref[i]));
      bad++;
    }
    if (!(e == e)) maxAbs = INFINITY;
    maxAbs = std::max(maxAbs, e);
    maxRel = std::max(maxRel, e / std::max(std::fabs(double(ref[i])), 1e-3));
  }
  ok = ok && bad == 0;
  if (!ok) g_failures++;
  std::printf("%s  %-44s max_abs %.3e  max_rel %.3e  (atol %.0e rtol %.0e, n=%zu)\n", ok ? "PASS" : "FAIL", name.c_str(),
              maxAbs, maxRel, double(atol), double(rtol), ref.size());
}

inline void reportBool(const std::string& name, bool ok, const std::string& detail) {
  if (!ok) g_failures++;
  std::printf("%s  %-44s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

struct Shape {
  const char* name;
  int hidden, heads, kvHeads, headDim, inter, rank, vocab;
};

// ---------------------------------------------------------------------------------------------
// Family entry points (one *_checks.cu each), called by main.cu per shape.

/** embedding, rms_norm (+ fused residual), rope (default and llama3), swiglu. */
void runElementwiseChecks(const Shape& s);
/** reshape_and_cache, paged (decode) attention, prefill attention over paged KV. */
void runAttentionChecks(const Shape& s);
/** sgmv and bgmv shrink/expand, every LoRA module shape. */
void runLoraChecks(const Shape& s);
/** WMMA GEMM, int8 weight-only GEMM, fp8 GEMM (cc: compute capability, e.g. 90). */
void runGemmChecks(const Shape& s, int cc);
/** cuBLAS through the loader, or a SKIP line when it does not load. */
void runCublasChecks();
/** Model-family kernels vs native/cpu/ops.cc: partial / scaled / per-token-table RoPE, q/k head norms, GeGLU, soft-cap, scale. */
void runFamilyChecks(const Shape& s);
/** Sampling kernel vs the host sampler at this vocab size. */
void runSamplingChecks(const Shape& s);
/** Frequencies of many device draws vs the distribution. */
void runSamplingDistributionCheck();

}  // namespace openlora::cuda_checks
