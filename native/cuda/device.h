// Host-side declarations of the CUDA device probe (implemented in device.cu, compiled by nvcc).
// Plain C ABI so the g++-compiled addon links it without CUDA headers.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Count CUDA devices. Never throws or aborts.
 * @param errorCode out: the cudaError_t of cudaGetDeviceCount (0 = success; 35 = insufficient
 *   driver, what a machine without a driver answers; 100 = no device).
 * @param errorText out: "cudaErrorXxx: description" when errorCode != 0 (NUL-terminated, truncated to cap).
 * @return the device count, 0 on any error.
 */
int openlora_cuda_device_count(int* errorCode, char* errorText, int cap);

#ifdef __cplusplus
}
#endif
