// Dense products against weights packed once at load: the base model's linear layers and
// lm_head on the CPU backend. Weights stay in their storage type (float32, bfloat16 or int8);
// activations and accumulation are float32.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "../src/dtype.h"
#include "dispatch.h"  // ProductChunks, PrefetchRanges
#include "large_pages.h"
#include "thread_pool.h"

namespace openlora::cpu {

/**
 * A weight W [n, k] (nn.Linear layout: output features x input features) in column panels:
 * panel p holds rows [16p, 16p + 16) of W, stored k-major as [k][16], so one 16-wide vector load
 * reads the weights of 16 output features for one input feature. The last panel is zero-padded.
 * This is the "packed B" layout of the BLIS / GotoBLAS micro-kernel (Goto & van de Geijn, "Anatomy
 * of High-Performance Matrix Multiplication", TOMS 2008), with the panel width of one AVX-512
 * vector.
 *
 * Element types: F32 (4 bytes), BF16 (2 bytes; the top half of a float32, so widening is exact),
 * I8 (1 byte, per-output-channel scales kept by the caller).
 */
class PackedMatrix {
 public:
  static constexpr int kPanel = 16;  // output features per panel

  PackedMatrix() = default;
  /**
   * Pack a row-major float32 W [n, k]. With DType::BF16 each value is rounded to bfloat16 (round to
   * nearest even): exact when W came from a BF16 file. @throws std::invalid_argument for I8.
   */
  static PackedMatrix fromF32(const float* w, int64_t n, int64_t k, DType storage);
  /**
   * Fills rows [r0, r0 + count) of W as float32 into dst ([count, k] row-major). The packers
   * below ask for at most kPanel rows at a time, so a weight is never widened whole (loading
   * reads a checkpoint tensor panel by panel: no float32 copy of the tensor).
   */
  using RowReader = std::function<void(int64_t r0, int64_t count, float* dst)>;
  /** As fromF32, reading W [n, k] through `read` one panel (16 rows) at a time. */
  static PackedMatrix fromRows(int64_t n, int64_t k, DType storage, const RowReader& read);
  /** Pack a row-major int8 W [n, k]. */
  static PackedMatrix fromI8(const int8_t* w, int64_t n, int64_t k);

  DType type() const { return type_; }
  int64_t rows() const { return n_; }
  int64_t cols() const { return k_; }
  int64_t panels() const { return (n_ + kPanel - 1) / kPanel; }
  bool empty() const { return n_ == 0; }
  /** Bytes of packed storage (padding included). */
  int64_t bytes() const { return int64_t(data_.size()); }
  /** Start of panel p: [k][16] elements of type(). */
  const uint8_t* panel(int64_t p) const { return data_.data() + p * k_ * kPanel * elemSize(); }
  /** W[row, col] widened to float32 (int8: the raw integer value). */
  float at(int64_t row, int64_t col) const;
  /** Row `row` of W widened to float32 into dst[k] (int8: raw integer values); a strided gather. */
  void row(int64_t row, float* dst) const;
  /** The whole of W [n, k] row-major, widened to float32 (int8: raw integer values). */
  std::vector<float> unpack() const;
  int elemSize() const { return int(dtypeSize(type_)); }

 private:
  DType type_ = DType::F32;
  int64_t n_ = 0, k_ = 0;
  std::vector<uint8_t, LargePageAllocator<uint8_t>> data_;  // [panels][k][16] elements, in huge pages (large_pages.h)
};

/**
 * y = alpha * (x W^T) * scale (+ y when accumulate), W packed (see PackedMatrix).
 *
 * @param x [m, k] float32 row-major, row stride ldx (>= k).
 * @param scale [n] per-output-feature factors (int8 weights), or nullptr for 1.
 * @param y [m, n] float32 row-major, row stride ldy (>= n).
 * Every output is one fused multiply-add chain over k in ascending order, whatever m, the tile it
 * falls in, the thread that computes it or the instruction set (AVX-512 and AVX2 kernels give
 * the same bits; the portable fallback rounds each product separately). So a row's result does not
 * depend on the other rows of the batch (batch invariance). Register tiles of up to 12 (AVX-512) or
 * 6 (AVX2) rows of x by 1-4 panels; parallel over panel groups when the op is large enough to pay for the hand-over.
 * OPENLORA_GEMM=portable forces the portable kernel, OPENLORA_GEMM=avx2 caps it at AVX2,
 * OPENLORA_GEMM=avx512 keeps the fp32 FMA kernel where vdpbf16ps would run.
 *
 * bf16Activations (EngineOptions.activationDtype "bfloat16", opt-in): for BF16 weights, x is
 * rounded to bfloat16 (nearest even) before the product, as llama.cpp and PyTorch bf16 inference
 * do (vLLM --dtype bfloat16). With AMX-BF16 (and the tile permission) the product runs on tiles
 * (gemm_amx.h); else with AVX-512 BF16 on vdpbf16ps (pairs of input features per step, twice the
 * fp32 FMA rate; an output is one chain over pairs in ascending order); elsewhere the rounded x
 * goes through the fp32 kernels. Every kernel is batch-invariant, none gives another's bits.
 * Relative error vs the fp32-activation product: ~2^-9 per term (the rounding of x). Ignored for
 * F32 and I8 weights.
 */
void gemmPacked(ThreadPool& pool, const float* x, int64_t ldx, const PackedMatrix& w, const float* scale, float* y, int64_t ldy,
                int64_t m, float alpha = 1.0f, bool accumulate = false, bool bf16Activations = false);

/** One product of gemmPackedMulti: y = x W^T * scale, W packed, y [m, w->rows()] with row stride ldy. */
struct PackedProduct {
  const PackedMatrix* w = nullptr;
  const float* scale = nullptr;  // [n] per-output-feature factors, or nullptr for 1
  float* y = nullptr;
  int64_t ldy = 0;
};

/**
 * Several products of the same x in one parallel region (the q/k/v projections of a layer, or its
 * gate/up): y_j = x W_j^T * scale_j for j < count, as gemmPacked (alpha 1, no accumulate, no
 * prefetch) gives each of them, bit for bit. The panels of all the W_j are handed out as one job,
 * so small matrices (k/v: 320 rows) no longer leave a thread idle, the threads meet once instead of
 * `count` times, and bf16Activations rounds x once. Every W_j must have x's width (cols()).
 * @throws std::invalid_argument when the widths differ.
 */
void gemmPackedMulti(ThreadPool& pool, const float* x, int64_t ldx, const PackedProduct* products, int count, int64_t m,
                     bool bf16Activations = false);

/**
 * gemmPackedMulti's job with the hand-out left to the caller, for a caller that mixes the panel
 * chunks with other work in its own parallel region (cpu/fused_lora.cc): prepare() on the calling
 * thread (rounds x to bf16 once when asked), then run() every chunk exactly once, on any threads.
 * The results are gemmPackedMulti's (alpha, accumulate as gemmPacked's), bit for bit. Reusable:
 * prepare() keeps the buffers' capacity. x, the weights and the outputs must outlive the runs.
 */
class PackedJob {
 public:
  /** The products ps[0..count) of x [m, k] (row stride ldx); every W_j of width k. */
  void prepare(const float* x, int64_t ldx, const PackedProduct* ps, int count, int64_t m, bool bf16Activations, float alpha = 1.0f,
               bool accumulate = false);
  /** Chunks of the job (4 panels of one product each). */
  int64_t chunks() const { return chunks_.chunks(); }
  /** Multiply-adds of one whole chunk (the grain unit). */
  int64_t chunkMacs() const;
  /**
   * Chunks [b, e) on this thread. prefetch (optional): brought into L2 while they run, each
   * tile taking its share (its rows x panels of the run's) spread over its k loop, the rest at
   * the end; never read otherwise.
   */
  void run(int64_t b, int64_t e, const PrefetchRanges* prefetch) const;

 private:
  const float* x_ = nullptr;
  int64_t ldx_ = 0, m_ = 0;
  float alpha_ = 1.0f;
  bool accumulate_ = false;
  std::vector<PackedProduct> ps_;
  const uint32_t* xp_ = nullptr;  // x as bf16 pairs (AMX / vdpbf16ps), or nullptr
  const float* xr_ = nullptr;     // x rounded to bf16 (fp32 kernels), or x
  int64_t ldxp_ = 0, ldxr_ = 0;
  std::vector<uint32_t> xpStore_;
  std::vector<float> xrStore_;
  ProductChunks chunks_;
};

/** Kernel family gemmPacked uses here: "avx512", "avx2+fma" or "portable". */
const char* gemmPackedKernelName();

/**
 * Kernel gemmPacked uses for BF16 weights with bf16Activations: "amx-bf16", "avx512-bf16-dot"
 * (vdpbf16ps), else gemmPackedKernelName() (x rounded, then the fp32 kernels).
 */
const char* gemmPackedBf16KernelName();

}  // namespace openlora::cpu
