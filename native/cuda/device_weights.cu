// See device_weights.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cublas_loader.cuh"
#include "device_memory.cuh"
#include "device_weights.cuh"
#include "gemm.cuh"
#include "quant_int8.cuh"

namespace openlora::cuda {

DeviceWeights::~DeviceWeights() {
  for (void* p : allocs_) (void)cudaFree(p);
}

void* DeviceWeights::alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), what);
  allocs_.push_back(p);
  return p;
}

void* DeviceWeights::uploadBf16(std::initializer_list<const std::vector<float>*> parts, const char* what) {
  size_t n = 0;
  for (const auto* v : parts) n += v->size();
  std::vector<uint16_t> h(n);
  size_t o = 0;
  for (const auto* v : parts) {
    for (float f : *v) h[o++] = floatToBf16(f);
  }
  void* d = alloc(n * 2, what);
  check(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice), what);
  return d;
}

float* DeviceWeights::uploadF32(const std::vector<float>& v, const char* what) {
  float* d = static_cast<float*>(alloc(v.size() * sizeof(float), what));
  check(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), what);
  return d;
}

void* DeviceWeights::uploadLinearBf16(const Linear& l, const char* what) {
  std::vector<uint16_t> h(size_t(l.out * l.in));
  std::vector<float> row(static_cast<size_t>(l.in));
  for (int64_t r = 0; r < l.out; r++) {
    l.row(r, row.data());
    for (int64_t i = 0; i < l.in; i++) h[size_t(r * l.in + i)] = floatToBf16(row[size_t(i)]);
  }
  void* d = alloc(h.size() * 2, what);
  check(cudaMemcpy(d, h.data(), h.size() * 2, cudaMemcpyHostToDevice), what);
  return d;
}

DevLinear DeviceWeights::uploadLinear(std::initializer_list<const Linear*> parts, const char* what) {
  DevLinear d;
  d.in = int((*parts.begin())->in);
  d.q8 = (*parts.begin())->q8();  // int8 per row stays int8; 4-bit is dequantized to bf16
  for (const Linear* p : parts) {
    if (p->in != d.in || p->q8() != d.q8) throw std::logic_error(std::string("CUDA forward: ") + what + ": parts differ");
    d.out += int(p->out);
  }
  if (!d.q8) {
    std::vector<uint16_t> h;
    for (const Linear* p : parts) {
      for (float f : p->rowMajor()) h.push_back(floatToBf16(f));
    }
    const size_t n = h.size();
    d.w = alloc(n * 2, what);
    check(cudaMemcpy(d.w, h.data(), n * 2, cudaMemcpyHostToDevice), what);
    return d;
  }
  std::vector<int8_t> q;
  std::vector<float> s;
  for (const Linear* p : parts) {
    const size_t at = q.size();
    q.resize(at + size_t(p->out * p->in));
    for (int64_t r = 0; r < p->out; r++) {
      p->rawQ8Row(r, q.data() + at + size_t(r * p->in));
      s.push_back(p->q8Scale(r));
    }
  }
  d.w = alloc(q.size(), what);
  check(cudaMemcpy(d.w, q.data(), q.size(), cudaMemcpyHostToDevice), what);
  d.scale = uploadF32(s, what);
  return d;
}

void DeviceWeights::upload(const Model& m) {
  if (uploaded_) return;
  const ModelConfig& c = m.config();
  const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  embed = uploadLinearBf16(m.embedding(), "embed_tokens");
  layers.resize(size_t(c.numHiddenLayers));
  for (int l = 0; l < c.numHiddenLayers; l++) {
    const LayerWeights& w = m.layer(l);
    DevLayer& d = layers[size_t(l)];
    d.inputNorm = uploadBf16({&w.inputNorm}, "input_layernorm");
    d.postNorm = uploadBf16({&w.postNorm}, "post_attention_layernorm");
    if (!w.qNorm.empty()) d.qNorm = uploadBf16({&w.qNorm}, "q_norm");
    if (!w.kNorm.empty()) d.kNorm = uploadBf16({&w.kNorm}, "k_norm");
    if (!w.preFfnNorm.empty()) d.preFfnNorm = uploadBf16({&w.preFfnNorm}, "pre_feedforward_layernorm");
    if (!w.postFfnNorm.empty()) d.postFfnNorm = uploadBf16({&w.postFfnNorm}, "post_feedforward_layernorm");
    bytes_ += 2 * int64_t(w.qNorm.size() + w.kNorm.size() + w.preFfnNorm.size() + w.postFfnNorm.size());
    d.qkv = uploadLinear({&w.wq, &w.wk, &w.wv}, "q/k/v_proj");
    d.o = uploadLinear({&w.wo}, "o_proj");
    d.gateUp = uploadLinear({&w.wGate, &w.wUp}, "gate/up_proj");
    d.down = uploadLinear({&w.wDown}, "down_proj");
    if (!w.bq.empty()) d.bqkv = uploadBf16({&w.bq, &w.bk, &w.bv}, "q/k/v_proj bias");
    if (!w.bo.empty()) d.bo = uploadBf16({&w.bo}, "o_proj bias");
    if (!w.bGate.empty()) d.bGateUp = uploadBf16({&w.bGate, &w.bUp}, "gate/up_proj bias");
    if (!w.bDown.empty()) d.bDown = uploadBf16({&w.bDown}, "down_proj bias");
    bytes_ += 2 * (2 * H) + d.qkv.bytes() + d.o.bytes() + d.gateUp.bytes() + d.down.bytes();
    if (d.bqkv) bytes_ += 2 * int64_t(c.qDim() + 2 * c.kvDim());
    if (d.bo) bytes_ += 2 * H;
    if (d.bGateUp) bytes_ += 2 * 2 * I;
    if (d.bDown) bytes_ += 2 * H;
  }
  finalNorm = uploadBf16({&m.finalNorm()}, "model.norm");
  // lm_head: the embedding when tied.
  if (m.tiedHead()) {
    lmHead = embed;
  } else {
    lmHead = uploadLinearBf16(m.head(), "lm_head");
  }
  bytes_ += 2 * H + 2 * V * H;
  // The global layers' tables (default, longrope's long factors, dynamic NTK) go with each
  // step's staging (staging.cuh); the local layers' one is fixed.
  invFreqLocal = uploadF32(m.ropeLocalInvFreq(), "rope local inv_freq");
  uploaded_ = true;
}

void linearForward(void* y, int64_t ldY, const void* x, int64_t ldX, const DevLinear& lin, int m, cudaStream_t stream,
                   const char* what) {
  if (lin.q8) {
    checkLaunch(launch_gemm_w8(y, ldY, x, ldX, static_cast<const int8_t*>(lin.w), lin.scale, m, lin.out, lin.in, 1.0f, false,
                               DType::BF16, stream),
                what);
  } else {
    checkLaunch(launch_gemm_best(y, ldY, DType::BF16, x, ldX, lin.w, lin.in, m, lin.out, lin.in, 1.0f, 0.0f, DType::BF16, stream),
                what);
  }
}

}  // namespace openlora::cuda
