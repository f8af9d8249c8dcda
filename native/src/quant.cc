// See quant.h. Per-output-channel symmetric int8 (the "absmax" scheme of LLM.int8() /
// bitsandbytes' weight-only path, without outlier decomposition): scale_o = max|W[o, :]| / 127,
// q = round(W / scale_o). Dequantization is exact in float32: W' = scale_o * q.
#include "quant.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "../cpu/gemm.h"

namespace openlora {

Quantization parseQuantization(const std::string& s) {
  if (s == "none" || s.empty()) return Quantization::None;
  if (s == "int8") return Quantization::Int8;
  throw std::runtime_error("EngineOptions.quantization must be \"none\" or \"int8\", got \"" + s + "\"");
}

const char* quantizationName(Quantization q) { return q == Quantization::Int8 ? "int8" : "none"; }

Linear makeLinear(std::vector<float> w, int64_t out, int64_t in, Quantization quant) {
  Linear l;
  l.out = out;
  l.in = in;
  if (quant == Quantization::None) {
    l.w = std::move(w);
    return l;
  }
  l.q.resize(size_t(out * in));
  l.scale.resize(size_t(out));
  for (int64_t o = 0; o < out; o++) {
    const float* row = w.data() + o * in;
    float amax = 0;
    for (int64_t j = 0; j < in; j++) amax = std::max(amax, std::fabs(row[j]));
    const float scale = amax > 0 ? amax / 127.0f : 1.0f;
    l.scale[size_t(o)] = scale;
    int8_t* qrow = l.q.data() + o * in;
    for (int64_t j = 0; j < in; j++) {
      const float v = std::nearbyint(row[j] / scale);
      qrow[j] = int8_t(std::max(-127.0f, std::min(127.0f, v)));
    }
  }
  return l;
}

void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m, bool accumulate) {
  if (w.quantized()) {
    cpu::gemmNTQ8(pool, x, ldx, w.q.data(), w.scale.data(), y, ldy, m, w.out, w.in, 1.0f, accumulate);
  } else {
    cpu::gemmNT(pool, x, ldx, w.w.data(), y, ldy, m, w.out, w.in, 1.0f, accumulate);
  }
}

}  // namespace openlora
