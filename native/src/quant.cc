// See quant.h. Per-output-channel symmetric int8 (the "absmax" scheme of LLM.int8() /
// bitsandbytes' weight-only path, without outlier decomposition): scale_o = max|W[o, :]| / 127,
// q = round(W / scale_o). Dequantization is exact in float32: W' = scale_o * q.
#include "quant.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "errors.h"


namespace openlora {

Quantization parseQuantization(const std::string& s) {
  if (s == "none" || s.empty()) return Quantization::None;
  if (s == "int8") return Quantization::Int8;
  invalidArgument("EngineOptions.quantization", "EngineOptions.quantization must be \"none\" or \"int8\", got \"" + s + "\"");
}

const char* quantizationName(Quantization q) { return q == Quantization::Int8 ? "int8" : "none"; }

Linear makeLinear(const std::vector<float>& w, int64_t out, int64_t in, Quantization quant, DType source) {
  Linear l;
  l.out = out;
  l.in = in;
  if (quant == Quantization::None) {
    const auto storage = source == DType::BF16 ? DType::BF16 : DType::F32;
    l.w = cpu::PackedMatrix::fromF32(w.data(), out, in, storage);
    return l;
  }
  std::vector<int8_t> q(size_t(out * in));
  l.scale.resize(size_t(out));
  for (int64_t o = 0; o < out; o++) {
    const float* row = w.data() + o * in;
    float amax = 0;
    for (int64_t j = 0; j < in; j++) amax = std::max(amax, std::fabs(row[j]));
    const float scale = amax > 0 ? amax / 127.0f : 1.0f;
    l.scale[size_t(o)] = scale;
    int8_t* qrow = q.data() + o * in;
    for (int64_t j = 0; j < in; j++) {
      const float v = std::nearbyint(row[j] / scale);
      qrow[j] = int8_t(std::max(-127.0f, std::min(127.0f, v)));
    }
  }
  l.w = cpu::PackedMatrix::fromI8(q.data(), out, in);
  return l;
}

void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m, bool accumulate,
            const cpu::PrefetchRanges* prefetch) {
  cpu::gemmPacked(pool, x, ldx, w.w, w.quantized() ? w.scale.data() : nullptr, y, ldy, m, 1.0f, accumulate, prefetch);
}

}  // namespace openlora
