// Backend selection: which compute backend an engine uses, and why.
#pragma once

#include <string>

namespace openlora {

/** What the CUDA runtime answers now (cudaInfo() of native/types.ts). */
struct CudaInfo {
  bool compiled = false;  // built with OPENLORA_WITH_CUDA (nvcc was found at build time)
  int deviceCount = 0;
  std::string error;      // "" or e.g. "cudaErrorInsufficientDriver: ... (code 35)"
};

/** Probe the CUDA runtime (cheap after the first call; never throws). */
CudaInfo probeCuda();

/** A resolved backend choice. */
struct BackendChoice {
  std::string backend;  // "cpu"
  std::string reason;   // human-readable, for ModelInfo.backendReason
};

/**
 * Resolve EngineOptions.backend ("auto" | "cpu" | "cuda").
 * @throws std::runtime_error for "cuda" (the CUDA backend is not complete yet; the message says
 *   what the probe found) and for unknown names.
 */
BackendChoice chooseBackend(const std::string& requested);

}  // namespace openlora
