// Weights of one linear layer: float32, or int8 weight-only quantized (per-output-channel
// symmetric scales), and the matching product y = x W^T.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/thread_pool.h"

namespace openlora {

/** Base-weight storage chosen at load (EngineOptions.quantization). */
enum class Quantization { None, Int8 };

/** "none" | "int8" → Quantization. @throws std::runtime_error naming the option for anything else. */
Quantization parseQuantization(const std::string& s);
const char* quantizationName(Quantization q);

/** The weight of one nn.Linear, [out, in], in one of the two storages. */
struct Linear {
  int64_t out = 0, in = 0;
  std::vector<float> w;       // [out, in] float32; empty when quantized
  std::vector<int8_t> q;      // [out, in] int8 round(w / scale), in [-127, 127]; empty for float32
  std::vector<float> scale;   // [out] max_j |w[o, j]| / 127 (1 for an all-zero row)

  bool quantized() const { return !q.empty(); }
  /** Bytes of weight storage. */
  int64_t bytes() const { return int64_t(w.size() * 4 + q.size() + scale.size() * 4); }
};

/** Take a float32 [out, in] weight; quantize it to int8 (and drop the float copy) when asked. */
Linear makeLinear(std::vector<float> w, int64_t out, int64_t in, Quantization quant);

/**
 * y = x W^T (+ y when accumulate). @param x [m, in] (row stride ldx); @param y [m, out] (row stride ldy).
 */
void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m,
            bool accumulate = false);

}  // namespace openlora
