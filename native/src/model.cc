// See model.h. The forward pass follows HF modeling_llama.py (LlamaDecoderLayer) step by step.
#include "model.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "errors.h"
#include "files.h"
#include "../cpu/ops.h"
#include "../cpu/paged_attention.h"
#include "safetensors.h"

namespace openlora {

namespace {

/** Load a tensor that must have exactly `shape`, as float32. */
std::vector<float> loadWeight(const TensorStore& store, const std::string& name, std::vector<int64_t> shape,
                              const std::string& why) {
  const TensorView& t = store.get(name);
  if (t.shape != shape) {
    TensorView expect;
    expect.shape = shape;
    raise(ErrorCode::BadFile, t.file + ": tensor " + name + " has shape " + t.shapeString() + ", expected " +
              expect.shapeString() + " (" + why + ")");
  }
  return t.toF32();
}

/** Load a linear weight [out, in] into its packed storage (quant.h makeLinear: BF16 stays bf16). */
Linear loadLinear(const TensorStore& store, const std::string& name, int64_t out, int64_t in, const std::string& why,
                  Quantization quant) {
  return makeLinear(loadWeight(store, name, {out, in}, why), out, in, quant, store.get(name).dtype);
}

/** A bias vector [n] when the config says the layer has one; empty otherwise (a stray bias tensor is ignored). */
std::vector<float> loadBias(const TensorStore& store, const std::string& name, bool expected, int64_t n, const std::string& why) {
  if (!expected) return {};
  return loadWeight(store, name, {n}, why);
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& dir, Quantization quant) {
  auto model = std::make_shared<Model>();
  const std::string cfgPath = dir + "/config.json";
  model->config_ = parseModelConfig(readFile(cfgPath, "is this a Hugging Face model folder?"), cfgPath);
  const ModelConfig& c = model->config_;
  auto store = TensorStore::openDir(dir);
  model->dtype_ = store->dominantDType();
  model->invFreq_ = c.ropeInvFreq();
  model->quant_ = quant;

  const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, Q = c.qDim(), KV = c.kvDim();
  const std::string hs = "hidden_size " + std::to_string(H);
  const std::string qs = "num_attention_heads * head_dim = " + std::to_string(Q);
  const std::string kvs = "num_key_value_heads * head_dim = " + std::to_string(KV);
  const std::string is = "intermediate_size " + std::to_string(I);
  model->embed_ = loadWeight(*store, hf::kEmbedTokens, {V, H}, "vocab_size " + std::to_string(V) + ", " + hs);
  model->layers_.resize(size_t(c.numHiddenLayers));
  for (int l = 0; l < c.numHiddenLayers; l++) {
    LayerWeights& w = model->layers_[size_t(l)];
    w.inputNorm = loadWeight(*store, hf::inputNorm(l), {H}, hs);
    w.wq = loadLinear(*store, hf::linearWeight(l, LoraModule::Q), Q, H, qs + ", " + hs, quant);
    w.wk = loadLinear(*store, hf::linearWeight(l, LoraModule::K), KV, H, kvs + ", " + hs, quant);
    w.wv = loadLinear(*store, hf::linearWeight(l, LoraModule::V), KV, H, kvs + ", " + hs, quant);
    w.wo = loadLinear(*store, hf::linearWeight(l, LoraModule::O), H, Q, hs + ", " + qs, quant);
    w.bq = loadBias(*store, hf::linearBias(l, LoraModule::Q), c.qkvBias, Q, qs);
    w.bk = loadBias(*store, hf::linearBias(l, LoraModule::K), c.qkvBias, KV, kvs);
    w.bv = loadBias(*store, hf::linearBias(l, LoraModule::V), c.qkvBias, KV, kvs);
    w.bo = loadBias(*store, hf::linearBias(l, LoraModule::O), c.oBias, H, hs);
    w.postNorm = loadWeight(*store, hf::postAttentionNorm(l), {H}, hs);
    w.wGate = loadLinear(*store, hf::linearWeight(l, LoraModule::Gate), I, H, is + ", " + hs, quant);
    w.wUp = loadLinear(*store, hf::linearWeight(l, LoraModule::Up), I, H, is + ", " + hs, quant);
    w.wDown = loadLinear(*store, hf::linearWeight(l, LoraModule::Down), H, I, hs + ", " + is, quant);
    w.bGate = loadBias(*store, hf::linearBias(l, LoraModule::Gate), c.mlpBias, I, is);
    w.bUp = loadBias(*store, hf::linearBias(l, LoraModule::Up), c.mlpBias, I, is);
    w.bDown = loadBias(*store, hf::linearBias(l, LoraModule::Down), c.mlpBias, H, hs);
  }
  model->finalNorm_ = loadWeight(*store, hf::kFinalNorm, {H}, hs);
  // HF ties lm_head to embed_tokens when tie_word_embeddings; some tied checkpoints omit it.
  model->tiedHead_ = c.tieWordEmbeddings || !store->find(hf::kLmHead);
  if (model->tiedHead_) {
    model->head_ = makeLinear(model->embed_, V, H, Quantization::None, store->get(hf::kEmbedTokens).dtype);
  } else {
    model->head_ = loadLinear(*store, hf::kLmHead, V, H, "vocab_size " + std::to_string(V) + ", " + hs, Quantization::None);
  }
  return model;
}

std::shared_ptr<Model> Model::fromWeights(const ModelConfig& config, const WeightFiller& fill, Quantization quant,
                                          const std::string& dtype) {
  auto model = std::make_shared<Model>();
  model->config_ = config;
  const ModelConfig& c = model->config_;
  model->dtype_ = dtype;
  model->invFreq_ = c.ropeInvFreq();
  model->quant_ = quant;
  auto get = [&](const std::string& name, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    fill(name, v.data(), n);
    return v;
  };
  const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, Q = c.qDim(), KV = c.kvDim();
  DType source = DType::F32;
  if (!parseDType(dtype, &source)) invalidArgument("dtype", "Model::fromWeights: unsupported dtype \"" + dtype + "\"");
  auto lin = [&](const std::string& name, int64_t out, int64_t in) { return makeLinear(get(name, out * in), out, in, quant, source); };
  model->embed_ = get(hf::kEmbedTokens, V * H);
  model->layers_.resize(size_t(c.numHiddenLayers));
  for (int l = 0; l < c.numHiddenLayers; l++) {
    LayerWeights& w = model->layers_[size_t(l)];
    w.inputNorm = get(hf::inputNorm(l), H);
    w.wq = lin(hf::linearWeight(l, LoraModule::Q), Q, H);
    w.wk = lin(hf::linearWeight(l, LoraModule::K), KV, H);
    w.wv = lin(hf::linearWeight(l, LoraModule::V), KV, H);
    w.wo = lin(hf::linearWeight(l, LoraModule::O), H, Q);
    if (c.qkvBias) {
      w.bq = get(hf::linearBias(l, LoraModule::Q), Q);
      w.bk = get(hf::linearBias(l, LoraModule::K), KV);
      w.bv = get(hf::linearBias(l, LoraModule::V), KV);
    }
    if (c.oBias) w.bo = get(hf::linearBias(l, LoraModule::O), H);
    w.postNorm = get(hf::postAttentionNorm(l), H);
    w.wGate = lin(hf::linearWeight(l, LoraModule::Gate), I, H);
    w.wUp = lin(hf::linearWeight(l, LoraModule::Up), I, H);
    w.wDown = lin(hf::linearWeight(l, LoraModule::Down), H, I);
    if (c.mlpBias) {
      w.bGate = get(hf::linearBias(l, LoraModule::Gate), I);
      w.bUp = get(hf::linearBias(l, LoraModule::Up), I);
      w.bDown = get(hf::linearBias(l, LoraModule::Down), H);
    }
  }
  model->finalNorm_ = get(hf::kFinalNorm, H);
  model->tiedHead_ = c.tieWordEmbeddings;
  model->head_ = c.tieWordEmbeddings ? makeLinear(model->embed_, V, H, Quantization::None, source)
                                     : makeLinear(get(hf::kLmHead, V * H), V, H, Quantization::None, source);
  return model;
}

int64_t Model::weightBytes() const {
  auto f = [](const std::vector<float>& v) { return int64_t(v.size() * sizeof(float)); };
  int64_t b = f(finalNorm_) + head_.bytes();
  for (const LayerWeights& w : layers_) {
    b += f(w.inputNorm) + f(w.postNorm) + f(w.bq) + f(w.bk) + f(w.bv) + f(w.bo) + f(w.bGate) + f(w.bUp) + f(w.bDown);
    b += w.wq.bytes() + w.wk.bytes() + w.wv.bytes() + w.wo.bytes() + w.wGate.bytes() + w.wUp.bytes() + w.wDown.bytes();
  }
  return b;
}

void Model::applyLora(const std::vector<BatchEntry>& batch, int layer, LoraModule m, const float* in, float* out,
                      cpu::ThreadPool& pool, Workspace& ws) const {
  const int64_t inDim = loraModuleIn(config_, m), outDim = loraModuleOut(config_, m);
  cpu::LoraBatch& lb = ws.loraBatch;
  lb.clear();
  int64_t row = 0;
  for (const BatchEntry& e : batch) {
    if (e.loras) {
      for (const ActiveLora& al : *e.loras) {
        const LoraPair* p = al.adapter->get(layer, m);
        if (!p) continue;  // this adapter does not target this module
        // PEFT: y += B(A(x)) * scaling, times the adapter's weight in the set (cat semantics).
        lb.add(p->a.data(), p->bT.data(), p->rank, row, row + e.numTokens, al.weight * p->scaling);
      }
    }
    row += e.numTokens;
  }
  if (lb.empty()) return;  // a batch without adapters costs nothing here
  lb.finalize();
  cpu::sgmv(pool, in, inDim, inDim, out, outDim, outDim, lb, ws.loraTmp);
}

void Model::forward(const std::vector<BatchEntry>& batch, cpu::ThreadPool& pool, Workspace& ws, std::vector<float>* logits) const {
  const ModelConfig& c = config_;
  const int64_t H = c.hiddenSize, I = c.intermediateSize, Q = c.qDim(), KV = c.kvDim(), V = c.vocabSize;
  int64_t T = 0, R = 0;
  for (const BatchEntry& e : batch) {
    T += e.numTokens;
    R += e.allLogits ? e.numTokens : 1;
    e.kv->reserve(e.startPos + e.numTokens);
  }
  ws.x.resize(size_t(T * H));
  ws.xn.resize(size_t(T * H));
  ws.q.resize(size_t(T * Q));
  ws.k.resize(size_t(T * KV));
  ws.v.resize(size_t(T * KV));
  ws.attn.resize(size_t(T * Q));
  ws.proj.resize(size_t(T * H));
  ws.gate.resize(size_t(T * I));
  ws.up.resize(size_t(T * I));
  ws.pos.resize(size_t(T));

  // Embedding lookup and positions.
  {
    int64_t row = 0;
    for (const BatchEntry& e : batch) {
      for (int i = 0; i < e.numTokens; i++, row++) {
        std::copy_n(embed_.data() + int64_t(e.tokens[i]) * H, H, ws.x.data() + row * H);
        ws.pos[size_t(row)] = e.startPos + i;
      }
    }
  }
  std::vector<cpu::PagedAttentionRow> rows(static_cast<size_t>(T));  // [T] per-row block-table view

  for (int l = 0; l < c.numHiddenLayers; l++) {
    const LayerWeights& w = layers_[size_t(l)];
    // --- self-attention block: h = h + o_proj(attn(input_layernorm(h)))
    cpu::rmsNorm(ws.x.data(), w.inputNorm.data(), float(c.rmsNormEps), ws.xn.data(), T, H);
    linear(pool, ws.xn.data(), H, w.wq, ws.q.data(), Q, T);
    linear(pool, ws.xn.data(), H, w.wk, ws.k.data(), KV, T);
    linear(pool, ws.xn.data(), H, w.wv, ws.v.data(), KV, T);
    if (!w.bq.empty()) {
      cpu::addBias(ws.q.data(), Q, w.bq.data(), T, Q);
      cpu::addBias(ws.k.data(), KV, w.bk.data(), T, KV);
      cpu::addBias(ws.v.data(), KV, w.bv.data(), T, KV);
    }
    applyLora(batch, l, LoraModule::Q, ws.xn.data(), ws.q.data(), pool, ws);
    applyLora(batch, l, LoraModule::K, ws.xn.data(), ws.k.data(), pool, ws);
    applyLora(batch, l, LoraModule::V, ws.xn.data(), ws.v.data(), pool, ws);
    cpu::applyRope(ws.q.data(), Q, ws.pos.data(), invFreq_.data(), T, c.numAttentionHeads, c.headDim);
    cpu::applyRope(ws.k.data(), KV, ws.pos.data(), invFreq_.data(), T, c.numKeyValueHeads, c.headDim);
    // Append this step's keys/values into each sequence's blocks, then point every row at its
    // own block table (paged attention, prefill and decode alike).
    {
      int64_t row = 0;
      for (const BatchEntry& e : batch) {
        KvCache& cache = e.kv->cache();
        for (int i = 0; i < e.numTokens; i++, row++) {
          const int p = e.startPos + i;
          e.kv->write(l, p, ws.k.data() + row * KV, ws.v.data() + row * KV);
          rows[size_t(row)] =
              cpu::PagedAttentionRow{cache.keys(l), cache.values(l), e.kv->blockTable(), cache.blockSize(), p + 1, cache.dtype()};
        }
      }
    }
    cpu::pagedAttention(pool, ws.q.data(), Q, rows.data(), ws.attn.data(), Q, T, c.numAttentionHeads, c.numKeyValueHeads, c.headDim);
    linear(pool, ws.attn.data(), Q, w.wo, ws.proj.data(), H, T);
    if (!w.bo.empty()) cpu::addBias(ws.proj.data(), H, w.bo.data(), T, H);
    applyLora(batch, l, LoraModule::O, ws.attn.data(), ws.proj.data(), pool, ws);
    for (int64_t i = 0; i < T * H; i++) ws.x[size_t(i)] += ws.proj[size_t(i)];

    // --- MLP block: h = h + down_proj(silu(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    cpu::rmsNorm(ws.x.data(), w.postNorm.data(), float(c.rmsNormEps), ws.xn.data(), T, H);
    linear(pool, ws.xn.data(), H, w.wGate, ws.gate.data(), I, T);
    linear(pool, ws.xn.data(), H, w.wUp, ws.up.data(), I, T);
    if (!w.bGate.empty()) {
      cpu::addBias(ws.gate.data(), I, w.bGate.data(), T, I);
      cpu::addBias(ws.up.data(), I, w.bUp.data(), T, I);
    }
    applyLora(batch, l, LoraModule::Gate, ws.xn.data(), ws.gate.data(), pool, ws);
    applyLora(batch, l, LoraModule::Up, ws.xn.data(), ws.up.data(), pool, ws);
    cpu::siluMul(ws.gate.data(), ws.up.data(), T * I);
    linear(pool, ws.gate.data(), I, w.wDown, ws.proj.data(), H, T);
    if (!w.bDown.empty()) cpu::addBias(ws.proj.data(), H, w.bDown.data(), T, H);
    applyLora(batch, l, LoraModule::Down, ws.gate.data(), ws.proj.data(), pool, ws);
    for (int64_t i = 0; i < T * H; i++) ws.x[size_t(i)] += ws.proj[size_t(i)];
  }
  for (const BatchEntry& e : batch) e.kv->setLength(e.startPos + e.numTokens);

  // Final norm and lm_head only on the rows that need logits.
  ws.sel.resize(size_t(R * H));
  {
    int64_t row = 0, out = 0;
    for (const BatchEntry& e : batch) {
      const int first = e.allLogits ? 0 : e.numTokens - 1;
      for (int i = first; i < e.numTokens; i++, out++) {
        std::copy_n(ws.x.data() + (row + i) * H, H, ws.sel.data() + out * H);
      }
      row += e.numTokens;
    }
  }
  cpu::rmsNorm(ws.sel.data(), finalNorm_.data(), float(c.rmsNormEps), ws.sel.data(), R, H);
  logits->resize(size_t(R * V));
  linear(pool, ws.sel.data(), H, head_, logits->data(), V, R);
}

}  // namespace openlora
