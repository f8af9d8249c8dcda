// See model.h. The forward pass follows HF modeling_llama.py (LlamaDecoderLayer) step by step, with
// the changes of modeling_qwen3.py, modeling_gemma2.py / modeling_gemma3.py and modeling_phi3.py
// where the config asks for them (config.h).
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

/** Rows [r0, r0 + n) of a row-major [rows, cols] matrix (the q | k | v and gate | up parts of Phi-3's fused weights). */
std::vector<float> rowSlice(const std::vector<float>& w, int64_t cols, int64_t r0, int64_t n) {
  return std::vector<float>(w.begin() + r0 * cols, w.begin() + (r0 + n) * cols);
}

}  // namespace

void Model::build(const WeightSource& src, Quantization quant) {
  const ModelConfig& c = config_;
  invFreq_ = c.ropeInvFreq();
  invFreqLocal_ = c.ropeLocalInvFreq();
  invFreqLong_ = c.ropeLongInvFreq();
  quant_ = quant;
  const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, Q = c.qDim(), KV = c.kvDim(), D = c.headDim;
  const std::string hs = "hidden_size " + std::to_string(H);
  const std::string qs = "num_attention_heads * head_dim = " + std::to_string(Q);
  const std::string kvs = "num_key_value_heads * head_dim = " + std::to_string(KV);
  const std::string is = "intermediate_size " + std::to_string(I);
  const std::string ds = "head_dim " + std::to_string(D);
  auto lin = [&](const std::string& name, int64_t out, int64_t in, const std::string& why) {
    return makeLinear(src.get(name, {out, in}, why), out, in, quant, src.dtype(name));
  };
  // Gemma's RMSNorm multiplies by (1 + w), computed in float32 (Gemma2RMSNorm): stored that way.
  auto norm = [&](const std::string& name, int64_t n, const std::string& why) {
    std::vector<float> w = src.get(name, {n}, why);
    if (c.gemmaNorms) {
      for (float& x : w) x = 1.0f + x;
    }
    return w;
  };
  auto bias = [&](const std::string& name, bool expected, int64_t n, const std::string& why) {
    return expected ? src.get(name, {n}, why) : std::vector<float>{};
  };
  embed_ = src.get("model.embed_tokens.weight", {V, H}, "vocab_size " + std::to_string(V) + ", " + hs);
  layers_.resize(size_t(c.numHiddenLayers));
  for (int l = 0; l < c.numHiddenLayers; l++) {
    LayerWeights& w = layers_[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.inputNorm = norm(p + "input_layernorm.weight", H, hs);
    if (c.fusedQkv) {
      // Phi3Attention: qkv_proj rows are q | k | v; splitting them is exact.
      const std::string name = p + "self_attn.qkv_proj.weight";
      const std::vector<float> qkv = src.get(name, {Q + 2 * KV, H}, qs + " + 2 * " + kvs + ", " + hs);
      const DType dt = src.dtype(name);
      w.wq = makeLinear(rowSlice(qkv, H, 0, Q), Q, H, quant, dt);
      w.wk = makeLinear(rowSlice(qkv, H, Q, KV), KV, H, quant, dt);
      w.wv = makeLinear(rowSlice(qkv, H, Q + KV, KV), KV, H, quant, dt);
    } else {
      w.wq = lin(p + "self_attn.q_proj.weight", Q, H, qs + ", " + hs);
      w.wk = lin(p + "self_attn.k_proj.weight", KV, H, kvs + ", " + hs);
      w.wv = lin(p + "self_attn.v_proj.weight", KV, H, kvs + ", " + hs);
    }
    w.wo = lin(p + "self_attn.o_proj.weight", H, Q, hs + ", " + qs);
    w.bq = bias(p + "self_attn.q_proj.bias", c.qkvBias, Q, qs);
    w.bk = bias(p + "self_attn.k_proj.bias", c.qkvBias, KV, kvs);
    w.bv = bias(p + "self_attn.v_proj.bias", c.qkvBias, KV, kvs);
    w.bo = bias(p + "self_attn.o_proj.bias", c.oBias, H, hs);
    if (c.qkNorm) {
      w.qNorm = norm(p + "self_attn.q_norm.weight", D, ds);
      w.kNorm = norm(p + "self_attn.k_norm.weight", D, ds);
    }
    w.postNorm = norm(p + "post_attention_layernorm.weight", H, hs);
    if (c.gemmaNorms) {
      w.preFfnNorm = norm(p + "pre_feedforward_layernorm.weight", H, hs);
      w.postFfnNorm = norm(p + "post_feedforward_layernorm.weight", H, hs);
    }
    if (c.fusedQkv) {
      // Phi3MLP: gate_up_proj rows are gate | up (up_states.chunk(2, dim=-1)).
      const std::string name = p + "mlp.gate_up_proj.weight";
      const std::vector<float> gu = src.get(name, {2 * I, H}, "2 * " + is + ", " + hs);
      w.wGate = makeLinear(rowSlice(gu, H, 0, I), I, H, quant, src.dtype(name));
      w.wUp = makeLinear(rowSlice(gu, H, I, I), I, H, quant, src.dtype(name));
    } else {
      w.wGate = lin(p + "mlp.gate_proj.weight", I, H, is + ", " + hs);
      w.wUp = lin(p + "mlp.up_proj.weight", I, H, is + ", " + hs);
    }
    w.wDown = lin(p + "mlp.down_proj.weight", H, I, hs + ", " + is);
    w.bGate = bias(p + "mlp.gate_proj.bias", c.mlpBias, I, is);
    w.bUp = bias(p + "mlp.up_proj.bias", c.mlpBias, I, is);
    w.bDown = bias(p + "mlp.down_proj.bias", c.mlpBias, H, hs);
  }
  finalNorm_ = norm("model.norm.weight", H, hs);
  // HF ties lm_head to embed_tokens when tie_word_embeddings; some tied checkpoints omit it.
  tiedHead_ = c.tieWordEmbeddings || !src.has("lm_head.weight");
  if (tiedHead_) {
    head_ = makeLinear(embed_, V, H, Quantization::None, src.dtype("model.embed_tokens.weight"));
  } else {
    // lm_head is never quantized.
    head_ = makeLinear(src.get("lm_head.weight", {V, H}, "vocab_size " + std::to_string(V) + ", " + hs), V, H, Quantization::None,
                       src.dtype("lm_head.weight"));
  }
}

std::shared_ptr<Model> Model::load(const std::string& dir, Quantization quant) {
  auto model = std::make_shared<Model>();
  const std::string cfgPath = dir + "/config.json";
  model->config_ = parseModelConfig(readFile(cfgPath, "is this a Hugging Face model folder?"), cfgPath);
  auto store = TensorStore::openDir(dir);
  model->dtype_ = store->dominantDType();
  WeightSource src;
  src.get = [&](const std::string& name, std::vector<int64_t> shape, const std::string& why) {
    return loadWeight(*store, name, std::move(shape), why);
  };
  src.dtype = [&](const std::string& name) { return store->get(name).dtype; };
  src.has = [&](const std::string& name) { return store->find(name) != nullptr; };
  model->build(src, quant);
  return model;
}

std::shared_ptr<Model> Model::fromWeights(const ModelConfig& config, const WeightFiller& fill, Quantization quant,
                                          const std::string& dtype) {
  auto model = std::make_shared<Model>();
  model->config_ = config;
  model->config_.completeDefaults();
  model->dtype_ = dtype;
  DType source = DType::F32;
  if (!parseDType(dtype, &source)) invalidArgument("dtype", "Model::fromWeights: unsupported dtype \"" + dtype + "\"");
  WeightSource src;
  src.get = [&](const std::string& name, std::vector<int64_t> shape, const std::string&) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    fill(name, v.data(), n);
    return v;
  };
  src.dtype = [&](const std::string&) { return source; };
  src.has = [&](const std::string& name) { return name != "lm_head.weight" || !config.tieWordEmbeddings; };
  model->build(src, quant);
  return model;
}

int64_t Model::weightBytes() const {
  auto f = [](const std::vector<float>& v) { return int64_t(v.size() * sizeof(float)); };
  int64_t b = f(finalNorm_) + head_.bytes();
  for (const LayerWeights& w : layers_) {
    b += f(w.qNorm) + f(w.kNorm) + f(w.preFfnNorm) + f(w.postFfnNorm);
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
        float* xr = ws.x.data() + row * H;
        std::copy_n(embed_.data() + int64_t(e.tokens[i]) * H, H, xr);
        if (c.embedScale != 1.0f) {  // Gemma: hidden_states * normalizer (sqrt(hidden_size), float32)
          for (int64_t j = 0; j < H; j++) xr[j] *= c.embedScale;
        }
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
    if (c.qkNorm) {  // Qwen3Attention / Gemma3Attention: q_norm, k_norm over each head's head_dim, before RoPE
      cpu::rmsNorm(ws.q.data(), w.qNorm.data(), float(c.rmsNormEps), ws.q.data(), T * c.numAttentionHeads, c.headDim);
      cpu::rmsNorm(ws.k.data(), w.kNorm.data(), float(c.rmsNormEps), ws.k.data(), T * c.numKeyValueHeads, c.headDim);
    }
    {
      // Per entry: longrope switches to long_factor once the sequence is longer than
      // original_max_position_embeddings (HF dynamic_rope_update, seq_len = its last position + 1).
      const float mscale = float(c.ropeScaling.attentionFactor);
      int64_t row = 0;
      for (const BatchEntry& e : batch) {
        const int seqLen = e.startPos + e.numTokens;
        const bool longRope = !invFreqLong_.empty() && seqLen > c.ropeScaling.originalMaxPositionEmbeddings;
        // dynamic NTK: HF recomputes the base from the forward's sequence length past max_position_embeddings.
        const bool dynamic = c.ropeScaling.kind == RopeScaling::Kind::Dynamic && seqLen > c.maxPositionEmbeddings;
        if (dynamic) ws.invDynamic = c.ropeDynamicInvFreq(seqLen);
        const std::vector<float>& inv =
            c.layerLocalRope[size_t(l)] ? invFreqLocal_ : longRope ? invFreqLong_ : dynamic ? ws.invDynamic : invFreq_;
        const float ms = c.layerLocalRope[size_t(l)] ? 1.0f : mscale;
        cpu::applyRope(ws.q.data() + row * Q, Q, ws.pos.data() + row, inv.data(), e.numTokens, c.numAttentionHeads, c.headDim,
                       c.rotaryDim, ms);
        cpu::applyRope(ws.k.data() + row * KV, KV, ws.pos.data() + row, inv.data(), e.numTokens, c.numKeyValueHeads, c.headDim,
                       c.rotaryDim, ms);
        row += e.numTokens;
      }
    }
    const int window = c.layerWindow[size_t(l)];  // 0: global; else keys (p - window, p] (HF sliding_window_overlay)
    // Append this step's keys/values into each sequence's blocks, then point every row at its
    // own block table (paged attention, prefill and decode alike).
    {
      int64_t row = 0;
      for (const BatchEntry& e : batch) {
        KvCache& cache = e.kv->cache();
        for (int i = 0; i < e.numTokens; i++, row++) {
          const int p = e.startPos + i;
          e.kv->write(l, p, ws.k.data() + row * KV, ws.v.data() + row * KV);
          rows[size_t(row)] = cpu::PagedAttentionRow{cache.keys(l), cache.values(l), e.kv->blockTable(), cache.blockSize(), p + 1,
                                                     cache.dtype(), window > 0 ? std::max(0, p + 1 - window) : 0};
        }
      }
    }
    cpu::pagedAttention(pool, ws.q.data(), Q, rows.data(), ws.attn.data(), Q, T, c.numAttentionHeads, c.numKeyValueHeads, c.headDim,
                        cpu::AttentionScores{c.attnScale, c.attnSoftcap});
    linear(pool, ws.attn.data(), Q, w.wo, ws.proj.data(), H, T);
    if (!w.bo.empty()) cpu::addBias(ws.proj.data(), H, w.bo.data(), T, H);
    applyLora(batch, l, LoraModule::O, ws.attn.data(), ws.proj.data(), pool, ws);
    // Gemma2DecoderLayer: h = h + post_attention_layernorm(attn(...)).
    if (c.gemmaNorms) cpu::rmsNorm(ws.proj.data(), w.postNorm.data(), float(c.rmsNormEps), ws.proj.data(), T, H);
    for (int64_t i = 0; i < T * H; i++) ws.x[size_t(i)] += ws.proj[size_t(i)];

    // --- MLP block: h = h + down_proj(act(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    // (Gemma: x = pre_feedforward_layernorm(h), and post_feedforward_layernorm on the MLP output).
    cpu::rmsNorm(ws.x.data(), (c.gemmaNorms ? w.preFfnNorm : w.postNorm).data(), float(c.rmsNormEps), ws.xn.data(), T, H);
    linear(pool, ws.xn.data(), H, w.wGate, ws.gate.data(), I, T);
    linear(pool, ws.xn.data(), H, w.wUp, ws.up.data(), I, T);
    if (!w.bGate.empty()) {
      cpu::addBias(ws.gate.data(), I, w.bGate.data(), T, I);
      cpu::addBias(ws.up.data(), I, w.bUp.data(), T, I);
    }
    applyLora(batch, l, LoraModule::Gate, ws.xn.data(), ws.gate.data(), pool, ws);
    applyLora(batch, l, LoraModule::Up, ws.xn.data(), ws.up.data(), pool, ws);
    if (c.hiddenAct == Activation::GeluTanh) cpu::geluTanhMul(ws.gate.data(), ws.up.data(), T * I);
    else cpu::siluMul(ws.gate.data(), ws.up.data(), T * I);
    linear(pool, ws.gate.data(), I, w.wDown, ws.proj.data(), H, T);
    if (!w.bDown.empty()) cpu::addBias(ws.proj.data(), H, w.bDown.data(), T, H);
    applyLora(batch, l, LoraModule::Down, ws.gate.data(), ws.proj.data(), pool, ws);
    if (c.gemmaNorms) cpu::rmsNorm(ws.proj.data(), w.postFfnNorm.data(), float(c.rmsNormEps), ws.proj.data(), T, H);
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
  if (c.finalSoftcap > 0) cpu::softcap(logits->data(), R * V, c.finalSoftcap);  // Gemma 2 final_logit_softcapping
}

}  // namespace openlora
