// See backend.h.
#include "backend.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <stdexcept>

#include "errors.h"
#include "model.h"

#ifdef OPENLORA_WITH_CUDA
#include "../cuda/device.h"
#include "../cuda/forward.cuh"
#endif

namespace openlora {

int64_t ForwardBackend::memoryAvailableBytes() const {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    long long kb = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kb) == 1) return int64_t(kb) * 1024;
  }
  return -1;
}

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

// NOTE(why): CudaForward (native/cuda/forward.cu) runs every op of the CPU forward on the device,
// but no GPU has verified it yet. Until a GPU run has (then this returns true outright),
// "auto" picks it only when OPENLORA_CUDA_FORWARD=1, so a GPU session can test it without a
// rebuild and nobody else gets an unverified backend by default.
bool cudaForwardComplete() {
  const char* v = std::getenv("OPENLORA_CUDA_FORWARD");
  return v != nullptr && std::string(v) == "1";
}

namespace {

/** "" when a CUDA device answers in a CUDA build, else why not ("cuda: ..."). */
std::string cudaDeviceStatus() {
  CudaInfo info = probeCuda();
  if (!info.compiled) return "cuda: not compiled into this build";
  if (!info.error.empty()) return "cuda: no device (" + info.error + ")";
  if (info.deviceCount == 0) return "cuda: no device";
  return "";
}

}  // namespace

std::string cudaForwardGaps(const ModelConfig& c) {
  std::vector<std::string> gaps;
  // The attention kernels (cuda/paged_attention.cu, prefill_attention.cu) are instantiated for
  // these head sizes; RoPE needs an even rotary dim.
  if (c.headDim != 32 && c.headDim != 64 && c.headDim != 96 && c.headDim != 128 && c.headDim != 256) {
    gaps.push_back("head_dim " + std::to_string(c.headDim) + " (the CUDA attention kernels take 32, 64, 96, 128, 256)");
  }
  if (c.rotaryDim < 2 || c.rotaryDim % 2 != 0 || c.rotaryDim > c.headDim) gaps.push_back("rotary dim " + std::to_string(c.rotaryDim));
  std::string out;
  for (const std::string& g : gaps) out += (out.empty() ? "" : ", ") + g;
  return out;
}

BackendChoice chooseBackend(const std::string& requested) {
  if (requested == "cpu") return {"cpu", "cpu: requested"};
  if (requested == "auto" || requested.empty()) {
    const std::string s = cudaDeviceStatus();
    if (!s.empty()) return {"cpu", "auto: " + s + "; using cpu"};
    if (!cudaForwardComplete()) {
      return {"cpu", "auto: cuda: " + std::to_string(probeCuda().deviceCount) +
                         " device(s) answer, but the CUDA forward is not verified on a GPU yet (set OPENLORA_CUDA_FORWARD=1 "
                         "to let auto pick it, or ask for backend \"cuda\"); using cpu"};
    }
    return {"cuda", "auto: cuda: a device answers and the CUDA forward is enabled (OPENLORA_CUDA_FORWARD=1)"};
  }
  if (requested == "cuda") {
    const std::string s = cudaDeviceStatus();
    if (!s.empty()) raise(ErrorCode::DeviceError, "backend \"cuda\" is not available: " + s + " (use \"auto\" or \"cpu\")");
    return {"cuda", cudaForwardComplete() ? "cuda: requested" : "cuda: requested (the CUDA forward is not verified on a GPU yet)"};
  }
  invalidArgument("EngineOptions.backend", "backend must be \"auto\", \"cpu\" or \"cuda\", got \"" + requested + "\"");
}

std::unique_ptr<ForwardBackend> makeForwardBackend(const std::string& requested, std::shared_ptr<const Model> model,
                                                   int threads, std::string* reason, int threadNice, bool bf16Activations) {
  BackendChoice choice = chooseBackend(requested);
  const std::string gaps = choice.backend == "cuda" ? cudaForwardGaps(model->config()) : "";
  if (!gaps.empty()) {
    // NOTE(why): a shape the CUDA kernels are not instantiated for runs on the CPU ("auto").
    if (requested == "cuda") {
      raise(ErrorCode::UnsupportedModel, "backend \"cuda\": the CUDA forward does not implement " + gaps + " (" +
                                             model->config().architecture + "); use \"auto\" or \"cpu\"");
    }
    choice = {"cpu", "auto: cuda: the CUDA forward does not implement " + gaps + " (" + model->config().architecture + "); using cpu"};
  }
  if (reason) *reason = choice.reason;
  // NOTE(why): the CUDA forward has its own precision rules (its GEMMs read bf16 activations); the
  // option only changes the CPU products.
  if (choice.backend == "cpu") return makeCpuForward(std::move(model), threads, threadNice, bf16Activations);
#ifdef OPENLORA_WITH_CUDA
  if (choice.backend == "cuda") return makeCudaForward(std::move(model));
#endif
  // Unreachable: chooseBackend answers "cuda" only in a CUDA build.
  raise(ErrorCode::DeviceError, "backend \"" + choice.backend + "\" has no forward in this build");
}

}  // namespace openlora
