// The machine's ceilings, measured at run time: what the CPU backend's kernels are compared
// against (roofline fractions in the bench and in bench/results/). Nothing here is used by the
// forward; it only measures.
#pragma once

#include <string>

namespace openlora::cpu {

/** Measured ceilings; a figure that could not be measured (missing feature) is 0 and its reason is set. */
struct Ceilings {
  std::string cpuModel;   // /proc/cpuinfo "model name" (empty when unknown)
  std::string features;   // describeCpuFeatures(cpuFeatures())
  int threads = 1;        // threads of the multi-thread figures
  double readGBps1 = 0;   // read bandwidth, one thread, GB/s (1e9 bytes)
  double readGBpsN = 0;   // read bandwidth, `threads` threads
  double fmaAvx2Gflops1 = 0, fmaAvx2GflopsN = 0;      // fp32 FMA, 8-lane, GFLOP/s (2 per FMA lane)
  double fmaAvx512Gflops1 = 0, fmaAvx512GflopsN = 0;  // fp32 FMA, 16-lane
  double bf16DotGflops1 = 0, bf16DotGflopsN = 0;      // vdpbf16ps zmm (32 multiply-adds each)
  double amxBf16Gflops1 = 0, amxBf16GflopsN = 0;      // tdpbf16ps 16x16x32 tiles, in registers
  std::string avx512Why, bf16Why, amxWhy;  // why a figure is 0
  double bufferMiB = 0;   // size of the read buffer (well past the last-level cache)

  /** One JSON object with every field (GB/s, GFLOP/s), for bench/results/. */
  std::string toJson() const;
};

/**
 * Measure every ceiling the CPU has: read bandwidth (sum of 64-byte loads over `bufferMiB` MiB,
 * 1 thread then `threads` threads each reading its own contiguous part, best of `reps` passes of
 * each of two patterns: one plain stream a thread, and four interleaved streams a thread with a
 * software prefetch, the one-row products' pattern),
 * and in-register peaks (independent accumulator chains, no memory traffic) of AVX2 FMA,
 * AVX-512 FMA, AVX-512 BF16 dot products and AMX-BF16 tiles, where present. Takes ~1-3 s.
 * @param threads >= 1 threads for the multi-thread figures (std::thread, one per part).
 */
Ceilings measureCeilings(int threads, int bufferMiB = 512, int reps = 5);

}  // namespace openlora::cpu
