// See quant.h. The formats themselves (scales, rounding, layouts) are cpu/gemm_quant.h's.
#include "quant.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "errors.h"

namespace openlora {

Quantization parseQuantization(const std::string& s) {
  if (s == "none" || s.empty()) return Quantization::None;
  if (s == "int8") return Quantization::Int8;
  if (s == "int4") return Quantization::Int4;
  invalidArgument("EngineOptions.quantization",
                  "EngineOptions.quantization must be \"none\", \"int8\" or \"int4\", got \"" + s + "\"");
}

const char* quantizationName(Quantization q) {
  switch (q) {
    case Quantization::Int8: return "int8";
    case Quantization::Int4: return "int4";
    default: return "none";
  }
}

void Linear::row(int64_t r, float* dst) const {
  if (quantized()) q.row(r, dst);
  else w.row(r, dst);
}

std::vector<float> Linear::rowMajor() const {
  std::vector<float> out(size_t(this->out * in));
  for (int64_t r = 0; r < this->out; r++) row(r, out.data() + r * in);
  return out;
}

void Linear::rawQ8Row(int64_t r, int8_t* dst) const {
  if (!q8()) throw std::logic_error("Linear::rawQ8Row: not an int8 matrix");
  const float s = q8Scale(r);
  std::vector<float> f(static_cast<size_t>(in));
  q.row(r, f.data());
  for (int64_t i = 0; i < in; i++) dst[i] = int8_t(std::lround(f[size_t(i)] / s));  // f = s * q rounded, |q| <= 127: q is the nearest integer
}

float Linear::q8Scale(int64_t r) const {
  float s;
  std::memcpy(&s, q.scales() + r * 4, 4);
  return s;
}

Linear makeLinear(const cpu::PackedMatrix::RowReader& read, int64_t out, int64_t in, Quantization quant, DType source) {
  Linear l;
  l.out = out;
  l.in = in;
  if (quant == Quantization::None) {
    l.w = cpu::PackedMatrix::fromRows(out, in, source == DType::BF16 ? DType::BF16 : DType::F32, read);
  } else {
    const cpu::QuantFormat f = quant == Quantization::Int4 ? cpu::QuantFormat::Q4 : cpu::QuantFormat::Q8;
    l.q = cpu::QuantMatrix::quantize(f, out, in, read);
  }
  return l;
}

Linear makeLinear(const std::vector<float>& w, int64_t out, int64_t in, Quantization quant, DType source) {
  return makeLinear([&](int64_t r0, int64_t count, float* dst) { std::memcpy(dst, w.data() + r0 * in, size_t(count * in) * 4); },
                    out, in, quant, source);
}

void linear(cpu::ThreadPool& pool, const float* x, int64_t ldx, const Linear& w, float* y, int64_t ldy, int64_t m, bool accumulate,
            bool bf16Activations) {
  if (w.quantized()) cpu::gemmQuant(pool, x, ldx, w.q, y, ldy, m, 1.0f, accumulate);
  else cpu::gemmPacked(pool, x, ldx, w.w, nullptr, y, ldy, m, 1.0f, accumulate, bf16Activations);
}

void linearMulti(cpu::ThreadPool& pool, const float* x, int64_t ldx, const LinearOutput* outs, int count, int64_t m, bool bf16Activations) {
  if (count <= 0) return;
  cpu::requireSameWidth("linearMulti", count, [&](int j) { return outs[j].w->in; });
  bool allQuantized = true, allPacked = true;
  for (int j = 0; j < count; j++) {
    allQuantized = allQuantized && outs[j].w->quantized();
    allPacked = allPacked && !outs[j].w->quantized();
  }
  if (allQuantized) {
    std::vector<cpu::QuantProduct> ps;
    for (int j = 0; j < count; j++) ps.push_back({&outs[j].w->q, outs[j].y, outs[j].ldy});
    cpu::gemmQuantMulti(pool, x, ldx, ps.data(), count, m);
  } else if (allPacked) {
    std::vector<cpu::PackedProduct> ps;
    for (int j = 0; j < count; j++) ps.push_back({&outs[j].w->w, nullptr, outs[j].y, outs[j].ldy});
    cpu::gemmPackedMulti(pool, x, ldx, ps.data(), count, m, bf16Activations);
  } else {
    for (int j = 0; j < count; j++) linear(pool, x, ldx, *outs[j].w, outs[j].y, outs[j].ldy, m, false, bf16Activations);
  }
}

}  // namespace openlora
