// Weights of one linear layer: float32 or bfloat16 (the checkpoint's own precision), or weight
// quantized (int8 per output channel, or 4-bit in groups of 32: cpu/gemm_quant.h), and the
// matching product y = x W^T.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/gemm_packed.h"
#include "../cpu/gemm_quant.h"
#include "../cpu/thread_pool.h"
#include "dtype.h"

namespace openlora {

/**
 * Base-weight storage chosen at load (EngineOptions.quantization). Int8: the decoder's linear
 * layers and lm_head (and the embedding, which a tied head shares) int8 per row; Int4: all of them
 * 4-bit in groups of 32 (Q4_0-like, as llama.cpp's --pure Q4_0).
 *
 * NOTE(why): until 2026-12-07 Int4 kept lm_head and the embedding int8 per row (as llama.cpp's
 * Q4_0 keeps the output matrix at higher precision). At a 128k vocabulary that head was 123 of
 * the 301 MB of a 360M model, which capped batch-1 decode near 2.9x BF16 at full bandwidth; a
 * 4-bit head makes it 246 MB. Demo perplexity on the held-out text (bench/perplexity.ts): +0.98%
 * over float32 with the int8 head, +1.29% with the 4-bit head (the goal is +3%).
 */
enum class Quantization { None, Int8, Int4 };

/** "none" | "int8" | "int4" → Quantization. @throws Error (errors.h) naming the option for anything else. */
Quantization parseQuantization(const std::string& s);
const char* quantizationName(Quantization q);

/**
 * The weight of one nn.Linear, [out, in]: packed for the float kernels (cpu::PackedMatrix: F32,
 * or BF16 when the checkpoint tensor was BF16, whose widening back to float32 is exact), or
 * quantized (cpu::QuantMatrix: Q8 or Q4). Exactly one of `w` and `q` is non-empty.
 */
struct Linear {
  int64_t out = 0, in = 0;
  cpu::PackedMatrix w;  // float storage, or empty
  cpu::QuantMatrix q;   // quantized storage, or empty

  bool quantized() const { return !q.empty(); }
  /** Quantized int8 per row (cpu::QuantFormat::Q8): rawQ8Row / q8Scale apply. */
  bool q8() const { return quantized() && q.format() == cpu::QuantFormat::Q8; }
  /** Bytes of weight storage (padding and scales included). */
  int64_t bytes() const { return w.bytes() + q.bytes(); }
  /** Row r as float32 (dequantized when quantized) into dst[in]. */
  void row(int64_t r, float* dst) const;
  /** [out, in] row-major float32, dequantized when quantized. */
  std::vector<float> rowMajor() const;
  /** Q8 only: row r's raw int8 values into dst[in], and its scale (w = scale * q). */
  void rawQ8Row(int64_t r, int8_t* dst) const;
  float q8Scale(int64_t r) const;
};

/**
 * Build a Linear from W [out, in] read through `read` (at most 16 rows at a time: a checkpoint
 * tensor is never widened whole): quantized as `quant` asks (see Quantization), else
 * bfloat16 when source is BF16 (exact), else float32.
 */
Linear makeLinear(const cpu::PackedMatrix::RowReader& read, int64_t out, int64_t in, Quantization quant, DType source);
/** As above from a float32 row-major [out, in] vector. */
Linear makeLinear(const std::vector<float>& w, int64_t out, int64_t in, Quantization quant, DType source = DType::F32);

/**
 * y = x W^T (+ y when accumulate). @param x [m, in] (row stride ldx); @param y [m, out] (row stride ldy).
 * @param bf16Activations BF16 weights only: x rounded to bfloat16 first (cpu::gemmPacked; the
 *   engine's activationDtype "bfloat16"). Quantized and float32 weights ignore it.
 */
void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m,
            bool accumulate = false, bool bf16Activations = false);

/** One product of linearMulti: y = x w^T into y [m, w->out] with row stride ldy. */
struct LinearOutput {
  const Linear* w = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

/**
 * The products of one x [m, in] (row stride ldx) with several weights of the same width (a
 * layer's q/k/v, or gate/up) in one parallel region (cpu::gemmPackedMulti / cpu::gemmQuantMulti):
 * each y as linear() gives it, bit for bit. Weights stored alike (all float-packed, or all
 * quantized) run as one job; a mix runs one product after another.
 * @throws std::invalid_argument when the widths differ.
 */
void linearMulti(cpu::ThreadPool& pool, const float* x, int64_t ldx, const LinearOutput* outs, int count, int64_t m,
                 bool bf16Activations = false);

}  // namespace openlora
