// Weights of one linear layer: float32 or bfloat16 (the checkpoint's own precision), or int8
// weight-only quantized (per-output-channel symmetric scales), and the matching product y = x W^T.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/gemm_packed.h"
#include "../cpu/thread_pool.h"
#include "dtype.h"

namespace openlora {

/** Base-weight storage chosen at load (EngineOptions.quantization). */
enum class Quantization { None, Int8 };

/** "none" | "int8" → Quantization. @throws Error (errors.h) naming the option for anything else. */
Quantization parseQuantization(const std::string& s);
const char* quantizationName(Quantization q);

/**
 * The weight of one nn.Linear, [out, in], packed for the CPU kernels (cpu::PackedMatrix).
 * Storage: int8 when quantized; else bfloat16 when the checkpoint tensor was BF16 (widening back
 * to float32 is exact, so results equal a float32 copy's and the weights take half the bytes);
 * else float32 (F32 and F16 checkpoints).
 */
struct Linear {
  int64_t out = 0, in = 0;
  cpu::PackedMatrix w;        // [out, in] packed; type F32, BF16 or I8
  std::vector<float> scale;   // [out] int8 only: max_j |W[o, j]| / 127 (1 for an all-zero row)

  bool quantized() const { return w.type() == DType::I8; }
  /** Bytes of weight storage (packing pads out to a multiple of 16 rows). */
  int64_t bytes() const { return w.bytes() + int64_t(scale.size() * 4); }
  /** [out, in] row-major float32: the weights (float32/bf16), or the raw int8 values (quantized; see scale). */
  std::vector<float> rowMajor() const { return w.unpack(); }
};

/**
 * Take a float32 [out, in] weight read from a tensor of dtype `source`: quantize it to int8 when
 * asked, else keep it as bfloat16 when source is BF16 (exact), else float32.
 */
Linear makeLinear(const std::vector<float>& w, int64_t out, int64_t in, Quantization quant, DType source = DType::F32);

/**
 * y = x W^T (+ y when accumulate). @param x [m, in] (row stride ldx); @param y [m, out] (row stride ldy).
 * @param prefetch memory brought into cache while the product runs (cpu::gemmPacked), or nullptr.
 */
void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m,
            bool accumulate = false, const cpu::PrefetchRanges* prefetch = nullptr);

}  // namespace openlora
