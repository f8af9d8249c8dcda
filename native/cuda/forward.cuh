// The CUDA forward backend (forward.cu): CudaForward, the whole Llama forward of
// native/cpu/forward.cc on one device with the launchers of native/cuda/*.cuh, behind the
// ForwardBackend interface of native/src/backend.h.
//
// Plain host C++ (g++ includes it from backend.cc); the definition is built only where nvcc is
// (OPENLORA_WITH_CUDA).
#pragma once

#include <memory>

#include "../src/backend.h"

namespace openlora {

/**
 * A CudaForward over `model` on device 0. Activations, weights and KV are bf16 (fp32 accumulation
 * in every kernel); int8 models keep their int8 linear layers (launch_gemm_w8). Logits come back
 * to the host as fp32, so the engine's CPU sampler runs unchanged.
 * @throws std::runtime_error naming the failed CUDA call (no device, out of memory, ...).
 */
std::unique_ptr<ForwardBackend> makeCudaForward(std::shared_ptr<const Model> model);

}  // namespace openlora
