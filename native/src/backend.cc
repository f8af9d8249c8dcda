// See backend.h.
#include "backend.h"

#include <stdexcept>

#ifdef OPENLORA_WITH_CUDA
#include "../cuda/device.h"
#endif

namespace openlora {

CudaInfo probeCuda() {
  CudaInfo info;
#ifdef OPENLORA_WITH_CUDA
  info.compiled = true;
  int code = 0;
  char text[256] = {0};
  info.deviceCount = openlora_cuda_device_count(&code, text, sizeof(text));
  if (code != 0) info.error = std::string(text) + " (code " + std::to_string(code) + ")";
#else
  info.error = "this build has no CUDA backend (built without nvcc, or with OPENLORA_NO_CUDA=1)";
#endif
  return info;
}

namespace {

std::string cudaStatus() {
  CudaInfo info = probeCuda();
  if (!info.compiled) return "cuda: not compiled into this build";
  if (!info.error.empty()) return "cuda: no device (" + info.error + ")";
  if (info.deviceCount == 0) return "cuda: no device";
  return "cuda: " + std::to_string(info.deviceCount) + " device(s) answer, but the CUDA backend is not complete yet";
}

}  // namespace

BackendChoice chooseBackend(const std::string& requested) {
  if (requested == "cpu") return {"cpu", "cpu: requested"};
  if (requested == "auto" || requested.empty()) return {"cpu", "auto: " + cudaStatus() + "; using cpu"};
  if (requested == "cuda") {
    throw std::runtime_error("backend \"cuda\" is not available: " + cudaStatus() + " (use \"auto\" or \"cpu\")");
  }
  throw std::runtime_error("backend must be \"auto\", \"cpu\" or \"cuda\", got \"" + requested + "\"");
}

}  // namespace openlora
