// See cpu_features.h. Bits from the Intel SDM vol. 2A, CPUID leaf 1 and leaf 7 (AMD matches for
// the bits it implements); OS support from XGETBV(0) (XCR0): bits 1-2 SSE/AVX state, 5-7
// opmask/ZMM state, 17-18 AMX tile config/data.
#include "cpu_features.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define OPENLORA_X86 1
#endif

namespace openlora::cpu {

namespace {

#ifdef OPENLORA_X86
bool bit(unsigned v, int b) { return ((v >> b) & 1u) != 0; }

unsigned long long xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}
#endif

CpuFeatures probe() {
  CpuFeatures f;
#ifdef OPENLORA_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = bit(c, 27);
  const unsigned long long x = osxsave ? xcr0() : 0;
  const bool ymm = (x & 0x6) == 0x6;        // XMM + YMM state
  const bool zmm = ymm && (x & 0xe0) == 0xe0;  // opmask + ZMM_Hi256 + Hi16_ZMM state
  const bool tiles = (x & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
  f.fma = ymm && bit(c, 12);
  f.f16c = ymm && bit(c, 29);
  unsigned maxLeaf = __get_cpuid_max(0, nullptr);
  if (maxLeaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned subleaves = a;
    f.avx2 = ymm && bit(b, 5);
    f.avx512f = zmm && bit(b, 16);
    f.avx512bw = zmm && bit(b, 30);
    f.avx512vnni = zmm && bit(c, 11);
    f.amxBf16 = tiles && bit(d, 22);
    f.amxTile = tiles && bit(d, 24);
    f.amxInt8 = tiles && bit(d, 25);
    if (subleaves >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.avx512bf16 = zmm && bit(a, 5);
    }
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures f = probe();
  return f;
}

bool requestAmxPermission(std::string* why) {
  const CpuFeatures& f = cpuFeatures();
  if (!f.amxTile || !f.amxBf16) {
    if (why) *why = f.amxTile ? "no amx_bf16 in cpuid" : "no amx_tile in cpuid (or the OS does not enable tile state in XCR0)";
    return false;
  }
#if defined(__linux__) && defined(__x86_64__)
  constexpr int kArchReqXcompPerm = 0x1023;  // arch/x86/include/uapi/asm/prctl.h
  constexpr int kXfeatureXtiledata = 18;
  static const long rc = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata);
  if (rc != 0) {
    if (why) *why = "arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) refused (kernel < 5.16?)";
    return false;
  }
  return true;
#else
  if (why) *why = "AMX permission is requested through Linux arch_prctl";
  return false;
#endif
}

std::string describeCpuFeatures(const CpuFeatures& f) {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512bf16, "avx512_bf16");
  add(f.avx512vnni, "avx512_vnni");
  add(f.amxTile, "amx_tile");
  add(f.amxBf16, "amx_bf16");
  add(f.amxInt8, "amx_int8");
  return s.empty() ? "none" : s;
}

}  // namespace openlora::cpu
