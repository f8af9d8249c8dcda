// cuBLAS at run time: dlopen + dlsym of four entry points (no link-time dependency), a
// per-thread handle, and cublasGemmEx for the NT product of every linear layer. Host code only.
//
// NOTE(why): the enum values below are cuBLAS's stable ABI (cublas_api.h: CUBLAS_OP_N = 0,
// CUBLAS_OP_T = 1, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1); we declare them rather
// than include a header the build machines do not have.
// NOTE(why): handles are never destroyed: a thread_local destructor may run after the CUDA
// context is gone at process exit, and one handle per engine thread is a few KB.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>

#include <cstdio>
#include <mutex>
#include <string>

#include "cublas_loader.cuh"
#include "gemm.cuh"

namespace openlora::cuda {

namespace {

using Handle = void*;  // cublasHandle_t
using CreateFn = int (*)(Handle*);
using SetStreamFn = int (*)(Handle, cudaStream_t);
using GemmExFn = int (*)(Handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* a,
                         cudaDataType a_type, int lda, const void* b, cudaDataType b_type, int ldb, const void* beta,
                         void* c, cudaDataType c_type, int ldc, int compute_type, int algo);

constexpr int kOpN = 0, kOpT = 1, kCompute32F = 68, kGemmDefault = -1;

struct Api {
  bool ok = false;
  std::string why;
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  GemmExFn gemm_ex = nullptr;
};

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
    void* lib = nullptr;
    std::string tried;
    for (const char* n : names) {
      lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : n);
    }
    if (!lib) {
      a.why = "cuBLAS not available: " + tried;
      return;
    }
    a.create = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
    a.set_stream = reinterpret_cast<SetStreamFn>(dlsym(lib, "cublasSetStream_v2"));
    a.gemm_ex = reinterpret_cast<GemmExFn>(dlsym(lib, "cublasGemmEx"));
    if (!a.create || !a.set_stream || !a.gemm_ex) {
      a.why = "cuBLAS not available: a symbol is missing (cublasCreate_v2, cublasSetStream_v2, cublasGemmEx)";
      return;
    }
    a.ok = true;
  });
  return a;
}

cudaDataType toCuda(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::I8: return CUDA_R_8I;
  }
  return CUDA_R_32F;
}

}  // namespace

bool cublas_available(const char** why) {
  const Api& a = api();
  if (why) *why = a.ok ? "" : a.why.c_str();
  return a.ok;
}

cudaError_t launch_cublas_gemm(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w,
                               int64_t ld_w, int m, int n, int k, float alpha, float beta, DType in_dtype,
                               cudaStream_t stream) {
  const Api& a = api();
  if (!a.ok) return no_suitable_kernel("cublas_gemm: %s", a.why.c_str());
  if (m < 0 || n <= 0 || k <= 0 || ld_x < k || ld_w < k || ld_y < n || ld_x > INT32_MAX || ld_w > INT32_MAX ||
      ld_y > INT32_MAX)
    return invalid_argument("launch_cublas_gemm: m=%d n=%d k=%d ld_x=%lld ld_w=%lld ld_y=%lld", m, n, k,
                            (long long)ld_x, (long long)ld_w, (long long)ld_y);
  if (in_dtype == DType::F32 || !(out_dtype == in_dtype || out_dtype == DType::F32))
    return no_suitable_kernel("cublas_gemm in=%s out=%s", dtypeName(in_dtype), dtypeName(out_dtype));
  if (m == 0) return cudaSuccess;
  thread_local Handle handle = nullptr;
  thread_local int handle_device = -1;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return launch_status("launch_cublas_gemm (cudaGetDevice)");
  if (!handle || handle_device != dev) {
    const int st = a.create(&handle);
    if (st != 0) {
      handle = nullptr;
      invalid_argument("launch_cublas_gemm: cublasCreate failed with cublasStatus_t %d", st);
      return cudaErrorUnknown;
    }
    handle_device = dev;
  }
  int st = a.set_stream(handle, stream);
  // Row-major y[m, n] = x[m, k] w[n, k]^T is column-major y^T[n, m] = w^T-as-stored (op T) x (op N).
  if (st == 0)
    st = a.gemm_ex(handle, kOpT, kOpN, n, m, k, &alpha, w, toCuda(in_dtype), int(ld_w), x, toCuda(in_dtype), int(ld_x),
                   &beta, y, toCuda(out_dtype), int(ld_y), kCompute32F, kGemmDefault);
  if (st != 0) {
    invalid_argument("launch_cublas_gemm: cuBLAS call failed with cublasStatus_t %d (m=%d n=%d k=%d)", st, m, n, k);
    return cudaErrorUnknown;
  }
  return cudaSuccess;
}

cudaError_t launch_gemm_best(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w,
                             int64_t ld_w, int m, int n, int k, float alpha, float beta, DType in_dtype,
                             cudaStream_t stream) {
  if (cublas_available(nullptr))
    return launch_cublas_gemm(y, ld_y, out_dtype, x, ld_x, w, ld_w, m, n, k, alpha, beta, in_dtype, stream);
  return launch_gemm(y, ld_y, out_dtype, x, ld_x, w, ld_w, m, n, k, alpha, beta, in_dtype, stream);
}

}  // namespace openlora::cuda
