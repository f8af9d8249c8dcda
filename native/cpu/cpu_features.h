// The CPU backend's one feature probe: which instruction-set extensions this CPU has AND the OS
// has enabled (cpuid + xgetbv), read once. Kernels dispatch on it at run time, never on build
// flags alone (ENV.md: a -march=native build died with "invalid opcode" elsewhere).
#pragma once

#include <string>

namespace openlora::cpu {

/** Extensions usable by this process (false on non-x86 builds). */
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;        // vcvtph2ps: F16 -> F32 widening
  bool avx512f = false;     // with the OS saving ZMM state
  bool avx512bw = false;
  bool avx512bf16 = false;  // vdpbf16ps
  bool avx512vnni = false;  // vpdpbusd
  bool amxTile = false;     // with the OS saving tile state; each thread must still request
                            // XFEATURE_XTILEDATA (arch_prctl) before using AMX
  bool amxBf16 = false;
  bool amxInt8 = false;
};

/**
 * Request the AMX tile-data permission for this process (Linux arch_prctl(ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA), needed once before any AMX instruction; kernel >= 5.16). Asked once.
 * @return true when granted; false on a CPU or OS without AMX, with the reason in *why when why
 *   is not null (naming the missing cpuid flag, or the refused arch_prctl).
 */
bool requestAmxPermission(std::string* why = nullptr);

/** This CPU's features (probed on first call; thread-safe). */
const CpuFeatures& cpuFeatures();

/** "avx2 fma f16c avx512f ..." : the features present, for logs and the CLI. */
std::string describeCpuFeatures(const CpuFeatures& f);

}  // namespace openlora::cpu
