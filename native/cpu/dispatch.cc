// See dispatch.h. The products themselves live in gemm_packed.cc (base weights) and sgmv.cc (LoRA).
#include "dispatch.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu_features.h"

namespace openlora::cpu {

bool useAvx2() {
  static const bool v = [] {
    const char* force = std::getenv("OPENLORA_GEMM");
    if (force && std::strcmp(force, "portable") == 0) return false;
    return cpuFeatures().avx2 && cpuFeatures().fma;
  }();
  return v;
}

bool useAvx512() {
  static const bool v = [] {
    const char* force = std::getenv("OPENLORA_GEMM");
    if (force && std::strcmp(force, "avx2") == 0) return false;
    return useAvx2() && cpuFeatures().avx512f && cpuFeatures().avx512bw;
  }();
  return v;
}

// NOTE(why): a parallel op must carry at least this many multiply-adds per task; below it the
// hand-over (even spinning, ~1 us) and the lost cache locality cost more than the split gains.
// OPENLORA_GEMM_GRAIN overrides it (for measurements).
int64_t gemmMinTaskMacs() {
  static const int64_t v = [] {
    const char* s = std::getenv("OPENLORA_GEMM_GRAIN");
    return s ? std::max<int64_t>(1, std::atoll(s)) : int64_t(96 * 1024);
  }();
  return v;
}

}  // namespace openlora::cpu
