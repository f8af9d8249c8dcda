// Device helpers of openlora-cli (cuda_bench.cu; built only with CUDA). Plain C ABI so the
// g++-compiled CLI needs no CUDA headers. Every function returns a cudaError_t (0 = success)
// and writes "cudaErrorXxx: text" into err (cap bytes) on failure; none aborts.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

/** Name of device 0 and its memory, for the log. */
int openlora_cli_cuda_describe(char* name, int nameCap, size_t* totalBytes, char* err, int cap);

/**
 * Device-to-device copy bandwidth of a `bytes` buffer (bytes read + bytes written per copy,
 * METHOD.md's convention), median of `iters` cudaMemcpyAsync timed with events, after one
 * warm-up copy. The source is filled with random data first (never zeros).
 */
int openlora_cli_cuda_copy_bandwidth(size_t bytes, int iters, double* gbPerS, char* err, int cap);

/**
 * Generate a random-weight model's bf16 tensors on the device (random_weights.h values, the
 * same as the CPU reference), timing it; frees them again.
 * @param numel [count] elements per tensor; @param streams [count] stream ids; @param scale,
 *   offset [count]. @param ms out: generation time; @param bytes out: bytes allocated.
 */
int openlora_cli_cuda_random_weights(uint64_t seed, int count, const int64_t* numel, const uint64_t* streams,
                                     const float* scale, const float* offset, double* ms, size_t* bytes, char* err,
                                     int cap);

/**
 * Adapter upload timing: `count` adapters of `bytesEach` bytes, copied from pinned host memory
 * to device slots on a dedicated non-blocking stream (the JIT loader's path), while the default
 * stream is idle. @param msEach out: median milliseconds per adapter; @param gbPerS out.
 */
int openlora_cli_cuda_upload_timing(size_t bytesEach, int count, double* msEach, double* gbPerS, char* err, int cap);
}
