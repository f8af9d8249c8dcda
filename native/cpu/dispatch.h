// Kernel dispatch shared by the CPU backend's kernels (packed GEMM, attention, LoRA): whether the
// AVX2/FMA and AVX-512 paths are in use, the smallest parallel task of a product, how the panel
// chunks of several products form one parallel job, and the memory a run prefetches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace openlora::cpu {

/**
 * Whether the AVX2/FMA kernels are in use: the CPU has AVX2 and FMA (checked once at run time)
 * and OPENLORA_GEMM=portable is not set in the environment (tests force the portable kernels).
 */
bool useAvx2();

/**
 * Whether the AVX-512 F/BW kernels are in use: useAvx2(), the CPU has AVX-512 F and BW with the
 * OS saving ZMM state, and OPENLORA_GEMM is not "avx2" (tests force the AVX2 kernels with it).
 */
bool useAvx512();

/**
 * Fewest multiply-adds a parallel GEMM task must carry (96 Ki; OPENLORA_GEMM_GRAIN overrides):
 * below it the hand-over (~1 us spinning) and the lost locality cost more than the split gains.
 */
int64_t gemmMinTaskMacs();

/**
 * How far ahead (bytes) a one-row product's weight streams are prefetched in software
 * (_mm_prefetch to L1, once per 64-byte line): gemm_packed.cc's and gemm_quant_simd.cc's
 * one-row tiles, which read four (BF16, Q4) or one (Q8) panel streams per thread.
 * NOTE(why): at batch 1 the products are bound by reading W, and the hardware prefetchers alone
 * kept ~48 GB/s (BF16) / ~34 GB/s (Q4) of a 2-thread Zen 5 EPYC's 62-69 GB/s (four streams a
 * thread, software-prefetched: the `ceilings` read figure); 1-2 KiB ahead gave 59-64 / 41-47
 * GB/s over a 360M model's matrices (interleaved runs, 2026-12-07; 512 B gained little, 4 KiB
 * less than 2 KiB). A prefetch past the end of W is harmless (it never faults).
 */
constexpr int64_t kStreamPrefetchBytes = 1536;

/**
 * The check of every several-products entry (gemmPackedMulti, gemmQuantMulti, linearMulti): all
 * `count` weights must have x's width, widthOf(0).
 * @throws std::invalid_argument naming `who` and the first width that differs.
 */
template <typename WidthOf>
void requireSameWidth(const char* who, int count, WidthOf&& widthOf) {
  for (int j = 1; j < count; j++) {
    if (widthOf(j) != widthOf(0))
      throw std::invalid_argument(std::string(who) + ": every weight must have x's width (" + std::to_string(widthOf(0)) + "), got " +
                                  std::to_string(widthOf(j)));
  }
}

/**
 * The panel chunks of several products numbered as one parallel job (gemmPackedMulti,
 * gemmQuantMulti): product j owns chunks [first[j], first[j + 1]), ceil(panels_j / chunkPanels)
 * of them, in product order. Reusable: assign() keeps the capacity (no allocation per product
 * once warm).
 */
class ProductChunks {
 public:
  /** Number the chunks of `count` products; panelsOf(j) is product j's panel count. */
  template <typename PanelsOf>
  void assign(int count, int64_t chunkPanels, PanelsOf&& panelsOf) {
    chunkPanels_ = chunkPanels;
    panels_.resize(size_t(count));
    first_.assign(size_t(count) + 1, 0);
    for (int j = 0; j < count; j++) {
      panels_[size_t(j)] = panelsOf(j);
      first_[size_t(j) + 1] = first_[size_t(j)] + (panels_[size_t(j)] + chunkPanels - 1) / chunkPanels;
    }
  }
  /** Chunks of the whole job. */
  int64_t chunks() const { return first_.empty() ? 0 : first_.back(); }
  /**
   * A claimed range [b, e) of chunks as panel ranges of each product it covers, in order:
   * fn(j, p0, p1) for panels [p0, p1) of product j (p1 clamped to its panel count).
   */
  template <typename Fn>
  void forEach(int64_t b, int64_t e, Fn&& fn) const {
    for (size_t j = 0; j + 1 < first_.size() && b < e; j++) {
      if (b >= first_[j + 1]) continue;
      const int64_t end = std::min(e, first_[j + 1]);
      fn(int(j), (b - first_[j]) * chunkPanels_, std::min(panels_[j], (end - first_[j]) * chunkPanels_));
      b = end;
    }
  }

 private:
  int64_t chunkPanels_ = 1;
  std::vector<int64_t> panels_;  // [count]
  std::vector<int64_t> first_;   // [count + 1]
};

/**
 * Memory a run of a product should bring into L2 while it runs: the operands of the work its
 * thread does next (cpu/fused_lora.cc passes the LoRA A / B^T that the thread's next sgmv tasks
 * read). A product with many rows is bound by arithmetic and leaves the memory bus idle; the
 * LoRA tasks (bound by memory) then find their weights on chip. Reusable (clear() keeps capacity).
 */
struct PrefetchRanges {
  std::vector<std::pair<const char*, int64_t>> ranges;  // (start, bytes)
  int64_t total = 0;
  void clear() {
    ranges.clear();
    total = 0;
  }
  void add(const void* p, int64_t bytes) {
    if (bytes <= 0) return;
    ranges.push_back({static_cast<const char*>(p), bytes});
    total += bytes;
  }
};

}  // namespace openlora::cpu
