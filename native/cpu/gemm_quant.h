// Weight-quantized products with int8 activations: the INT8 and 4-bit formats of the base
// model's linear layers and lm_head (EngineOptions.quantization "int8" / "int4"). Each row of x
// is quantized to int8 in groups of 32 (llama.cpp's Q8_0: one float scale per 32 values), the
// dot products run in int32 (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, or portable C++), and each
// group's integer sum is scaled into a float32 accumulator.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "large_pages.h"
#include "thread_pool.h"

namespace openlora::cpu {

/** Quantized weight formats. */
enum class QuantFormat : uint8_t {
  Q8,  // int8 [-127, 127], one float32 scale per output row: w = scale[o] * q (LLM.int8()'s absmax, per channel)
  Q4,  // 4-bit, groups of 32 along k, one fp16 scale per group: w = d * (q - 8), q in [0, 15] (llama.cpp Q4_0)
};

/**
 * A weight W [n, k] (nn.Linear layout) quantized and packed for the int8-activation kernels.
 *
 * Layout: panels of 16 output rows (the last zero-padded); k is padded to a multiple of 32 with
 * zeros. Per panel and group of 32 inputs, "quads" of 4 consecutive inputs of each of the 16
 * rows are 32-bit lanes: Q8 stores 8 quads x [16 rows][4] bytes (512 bytes), each q as q + 128
 * (offset binary: VNNI's unsigned operand as it is); Q4 stores 4 blocks
 * x [16 rows][4] bytes (256 bytes) whose low nibbles hold quad b and high nibbles quad b + 4.
 * Q8 row scales are float32 [n], apart. Q4 group scales (fp16, 16 per panel and group: 32 bytes)
 * live in the panel's stream: groups go in pairs of 576 bytes, [group 2i][group 2i + 1][scales
 * of 2i][scales of 2i + 1] (an odd last group leaves its pair's second slots unused), so that a
 * one-row product reads one sequential stream per panel, 64-byte aligned, rather than a weight
 * stream and a scale stream (NOTE(why): with the scales apart, int4 batch-1 decode of the 360M
 * shape on a 2-thread Zen 5 ran 5-14% slower in 8 of 8 interleaved pairs: twice the streams for
 * the miss buffers and prefetchers to follow).
 */
class QuantMatrix {
 public:
  static constexpr int kPanel = 16;  // output rows per panel
  static constexpr int kGroup = 32;  // inputs per activation (and Q4 weight) scale

  /** Fills rows [r0, r0 + count) of W as float32 into dst ([count, k] row-major); count <= 16. */
  using RowReader = std::function<void(int64_t r0, int64_t count, float* dst)>;

  QuantMatrix() = default;
  /**
   * Quantize W [n, k] read panel by panel through `read` (never widened whole).
   * Q8: scale_o = max_j |W[o, j]| / 127 (1 for an all-zero row), q = round(W / scale_o).
   * Q4: per group, d = m / -8 with m the value of largest magnitude, rounded to fp16;
   * q = clamp(round(W / d) + 8, 0, 15) (d = 0: q = 8).
   */
  static QuantMatrix quantize(QuantFormat format, int64_t n, int64_t k, const RowReader& read);

  QuantFormat format() const { return format_; }
  int64_t rows() const { return n_; }
  int64_t cols() const { return k_; }
  int64_t groups() const { return kp_ / kGroup; }
  int64_t panels() const { return (n_ + kPanel - 1) / kPanel; }
  bool empty() const { return n_ == 0; }
  /** Bytes of storage: packed values (padding included) and scales. */
  int64_t bytes() const { return int64_t(data_.size() + scales_.size()); }
  /** Row `row` dequantized to float32 into dst[k] (the embedding gather of a tied quantized head). */
  void row(int64_t row, float* dst) const;
  /** Start of panel p's packed values (and, for Q4, scales). */
  const uint8_t* panel(int64_t p) const { return data_.data() + p * panelBytes(); }
  /** Bytes from one panel to the next: groups x 512 (Q8), or ceil(groups / 2) x 576 (Q4). */
  int64_t panelBytes() const { return format_ == QuantFormat::Q8 ? groups() * 512 : (groups() + 1) / 2 * kQ4PairBytes; }
  /** Q8 only: float32 scale per row [panels * 16]. */
  const uint8_t* scales() const { return scales_.data(); }
  /** Packed weight bytes per (panel, group): 512 (Q8) or 256 (Q4). */
  int64_t groupBytes() const { return format_ == QuantFormat::Q8 ? 512 : 256; }
  /** Byte offset of group g's packed weights from its panel's start. */
  int64_t groupOffset(int64_t g) const { return format_ == QuantFormat::Q8 ? g * 512 : q4GroupOffset(g); }
  /** Q4: byte offset of group g's weights from its panel's start (see the layout above). */
  static int64_t q4GroupOffset(int64_t g) { return (g >> 1) * kQ4PairBytes + (g & 1) * 256; }
  /** Q4: byte offset of group g's 16 fp16 scales from its panel's start. */
  static int64_t q4ScaleOffset(int64_t g) { return (g >> 1) * kQ4PairBytes + 512 + (g & 1) * 32; }
  /** Q4: the 16 fp16 scales (bits) of panel p, group g. */
  const uint16_t* q4Scales(int64_t p, int64_t g) const { return reinterpret_cast<const uint16_t*>(panel(p) + q4ScaleOffset(g)); }
  /** Q4: bytes of a pair of groups (2 x 256 of weights, 2 x 32 of scales). */
  static constexpr int64_t kQ4PairBytes = 576;

 private:
  QuantFormat format_ = QuantFormat::Q8;
  int64_t n_ = 0, k_ = 0, kp_ = 0;  // kp_: k padded to a multiple of 32
  std::vector<uint8_t, LargePageAllocator<uint8_t>> data_;
  std::vector<uint8_t> scales_;
};

/**
 * y = alpha * x W^T (+ y when accumulate), W quantized (QuantMatrix), x quantized per row in groups
 * of 32 to int8 (dx = max|x| / 127 per group). Per output: acc = sum over groups, in order, of
 * fma(d_g, float(integer dot of the group), acc), d_g = dx_g (Q8; times the row scale at the end)
 * or dx_g * d_w (Q4, whose integer dot is sum q * xq - 8 * sum xq). Integer sums are exact, so
 * every kernel (AVX-512 VNNI, AVX2, portable) gives the same bits and a row's result does not
 * depend on the other rows of the batch.
 * @param x [m, k] float32, row stride ldx; @param y [m, n] float32, row stride ldy.
 * OPENLORA_GEMM=portable / avx2 force the portable / AVX2 kernels, as for gemmPacked.
 */
void gemmQuant(ThreadPool& pool, const float* x, int64_t ldx, const QuantMatrix& w, float* y, int64_t ldy, int64_t m,
               float alpha = 1.0f, bool accumulate = false);

/** One product of gemmQuantMulti: y = x W^T, y [m, w->rows()] with row stride ldy. */
struct QuantProduct {
  const QuantMatrix* w = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

/**
 * Several products of the same x in one parallel region (a layer's q/k/v or gate/up): each y_j as
 * gemmQuant (alpha 1, no accumulate) gives it, bit for bit, with x quantized once and the panels
 * of all the W_j handed out as one job. Every W_j must have x's width (cols()).
 * @throws std::invalid_argument when the widths differ.
 */
void gemmQuantMulti(ThreadPool& pool, const float* x, int64_t ldx, const QuantProduct* products, int count, int64_t m);

/** Kernel family gemmQuant uses here: "avx512vnni", "avx2" or "portable". */
const char* gemmQuantKernelName();

/** float32 -> IEEE binary16 bits, round to nearest even (overflow to infinity, subnormals kept). */
uint16_t floatToF16(float x);

// ---- internal: the per-ISA kernels (gemm_quant_simd.cc), exposed for gemm_quant.cc only ----

/** x quantized for one gemmQuant call: [m][kp] int8, and per (row, group) scale and sum. */
struct QuantActs {
  int64_t kp = 0, groups = 0;
  std::vector<int8_t> q;    // [m, kp]
  std::vector<float> d;     // [m, groups]
  std::vector<int32_t> s;   // [m, groups] sum of q over the group
};

/**
 * The first `groups` full groups of 32 of one row x (float32) quantized as gemmQuant does (AVX2):
 * q [groups * 32] int8, d [groups] scales, sum [groups] sums of q. The same bits as the portable
 * loop (cvtps rounds to nearest even like its roundEven; a NaN never raises the group's max).
 */
void quantizeGroupsAvx2(const float* x, int64_t groups, int8_t* q, float* d, int32_t* sum);

/**
 * acc[r][j] for rows [0, mr) (mr <= 4) of `a` starting at row t0 and the 16 rows of panel p:
 * the float32 accumulators described at gemmQuant (before the Q8 row scale).
 */
void quantTileAvx512(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, float* acc);
/**
 * As quantTileAvx512 for one row (t0) and the four panels ps[0..3] of a Q8 or Q4 matrix (any four:
 * gemmQuant's one-row products pass the j-th panel of four contiguous quarters), acc [4][16]; the
 * same bits.
 */
void quantRow4Avx512(const QuantMatrix& w, const QuantActs& a, int64_t t0, const int64_t* ps, float* acc);
/**
 * As quantTileAvx512 for np panels p .. p + np - 1 (np = 2 or 4 only with mr = 1: several
 * weight streams at batch 1), acc [np][mr][16].
 */
void quantTileAvx2(const QuantMatrix& w, const QuantActs& a, int64_t t0, int mr, int64_t p, int np, float* acc);

}  // namespace openlora::cpu
