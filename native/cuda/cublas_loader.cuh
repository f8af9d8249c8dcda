// cuBLAS loaded at run time (cublas_loader.cu): dlopen("libcublas.so.<13|12|11>") and dlsym of
// the few entry points we use, so the build needs no cuBLAS and a machine without it (dev, CI)
// gets a clean "not available" instead of a load failure.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * Whether cuBLAS could be loaded (tried once per process, thread-safe). When not, *why (if
 * non-null) says what was tried, e.g. "cuBLAS not available: libcublas.so.13: cannot open ...".
 */
bool cublas_available(const char** why);

/**
 * y = alpha * x w^T + beta * y through cublasGemmEx (fp32 compute), same contract as
 * launch_gemm. Uses a per-thread cuBLAS handle bound to `stream` for this call.
 * @return cudaErrorNotSupported ("cuBLAS not available: ...") when cuBLAS is absent, or
 *   cudaErrorUnknown with the cublasStatus_t in last_error_message() when a call fails.
 */
cudaError_t launch_cublas_gemm(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w,
                               int64_t ld_w, int m, int n, int k, float alpha, float beta, DType in_dtype,
                               cudaStream_t stream);

/** launch_cublas_gemm when cuBLAS is available, else launch_gemm (our tensor-core kernel). */
cudaError_t launch_gemm_best(void* y, int64_t ld_y, DType out_dtype, const void* x, int64_t ld_x, const void* w,
                             int64_t ld_w, int m, int n, int k, float alpha, float beta, DType in_dtype,
                             cudaStream_t stream);

}  // namespace openlora::cuda
