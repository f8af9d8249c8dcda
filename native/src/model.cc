// See model.h. Loading only: the CPU forward over these weights is native/cpu/forward.cc.
#include "model.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "errors.h"
#include "files.h"
#include "hf_names.h"
#include "safetensors.h"

namespace openlora {

namespace {

/** The tensor `name`, which must have exactly `shape`. */
const TensorView& checkedTensor(const TensorStore& store, const std::string& name, const std::vector<int64_t>& shape,
                                const std::string& why) {
  const TensorView& t = store.get(name);
  if (t.shape != shape) {
    TensorView expect;
    expect.shape = shape;
    raise(ErrorCode::BadFile, t.file + ": tensor " + name + " has shape " + t.shapeString() + ", expected " +
              expect.shapeString() + " (" + why + ")");
  }
  return t;
}

/** Rows [r0, r0 + n) of a [rows, cols] matrix read through `read` (Phi-3's fused q | k | v and gate | up parts). */
cpu::PackedMatrix::RowReader rowSlice(cpu::PackedMatrix::RowReader read, int64_t r0) {
  return [read = std::move(read), r0](int64_t first, int64_t count, float* dst) { read(r0 + first, count, dst); };
}

/**
 * Where `store` keeps the text decoder: hf::kCausalLM for a ...ForCausalLM config; for
 * Gemma3ForConditionalGeneration (config.multimodalText) whichever of hf::kMultimodalLegacy
 * (transformers < 4.52) / hf::kMultimodal holds embed_tokens.
 * @throws Error BadFile naming the folder and the names looked for when neither does.
 */
hf::TextLayout detectTextLayout(const TensorStore& store, const ModelConfig& c) {
  if (!c.multimodalText) return hf::kCausalLM;
  for (const hf::TextLayout& t : {hf::kMultimodalLegacy, hf::kMultimodal}) {
    if (store.find(hf::embedTokens(t))) return t;
  }
  const std::string plain = store.find(hf::embedTokens(hf::kCausalLM))
                                ? " (it has " + hf::embedTokens(hf::kCausalLM) + ": a text-only checkpoint, whose config.json should say Gemma3ForCausalLM)"
                                : "";
  raise(ErrorCode::BadFile, store.where() + ": no language-model weights for " + c.architecture + ": expected tensor " +
                                hf::embedTokens(hf::kMultimodalLegacy) + " (transformers < 4.52) or " + hf::embedTokens(hf::kMultimodal) + plain);
}

}  // namespace

void Model::build(const WeightSource& src, Quantization quant) {
  const ModelConfig& c = config_;
  const hf::TextLayout& L = layout_;
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
    Linear l = makeLinear(src.rows(name, {out, in}, why), out, in, quant, src.dtype(name));
    src.done(name);
    return l;
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
  const std::string vs = "vocab_size " + std::to_string(V) + ", " + hs;
  // HF ties lm_head to embed_tokens when tie_word_embeddings; some tied checkpoints omit it.
  // Tied: one matrix is both (the embedding gathers its rows); untied: the embedding is stored
  // like a head (16-bit as in the file, or quantized as the head), never as float32.
  tiedHead_ = c.tieWordEmbeddings || !src.has(hf::lmHead(L));
  {
    const std::string name = hf::embedTokens(L);
    Linear e = makeLinear(src.rows(name, {V, H}, vs), V, H, quant, src.dtype(name));
    src.done(name);
    if (tiedHead_) head_ = std::move(e);
    else embed_ = std::move(e);
  }
  layers_.resize(size_t(c.numHiddenLayers));
  for (int l = 0; l < c.numHiddenLayers; l++) {
    LayerWeights& w = layers_[size_t(l)];
    w.inputNorm = norm(hf::inputNorm(L, l), H, hs);
    if (c.fusedQkv) {
      // Phi3Attention: qkv_proj rows are q | k | v; splitting them is exact.
      const std::string name = hf::fusedQkvWeight(L, l);
      const auto qkv = src.rows(name, {Q + 2 * KV, H}, qs + " + 2 * " + kvs + ", " + hs);
      const DType dt = src.dtype(name);
      w.wq = makeLinear(rowSlice(qkv, 0), Q, H, quant, dt);
      w.wk = makeLinear(rowSlice(qkv, Q), KV, H, quant, dt);
      w.wv = makeLinear(rowSlice(qkv, Q + KV), KV, H, quant, dt);
      src.done(name);
    } else {
      w.wq = lin(hf::linearWeight(L, l, LoraModule::Q), Q, H, qs + ", " + hs);
      w.wk = lin(hf::linearWeight(L, l, LoraModule::K), KV, H, kvs + ", " + hs);
      w.wv = lin(hf::linearWeight(L, l, LoraModule::V), KV, H, kvs + ", " + hs);
    }
    w.wo = lin(hf::linearWeight(L, l, LoraModule::O), H, Q, hs + ", " + qs);
    w.bq = bias(hf::linearBias(L, l, LoraModule::Q), c.qkvBias, Q, qs);
    w.bk = bias(hf::linearBias(L, l, LoraModule::K), c.qkvBias, KV, kvs);
    w.bv = bias(hf::linearBias(L, l, LoraModule::V), c.qkvBias, KV, kvs);
    w.bo = bias(hf::linearBias(L, l, LoraModule::O), c.oBias, H, hs);
    if (c.qkNorm) {
      w.qNorm = norm(hf::qNorm(L, l), D, ds);
      w.kNorm = norm(hf::kNorm(L, l), D, ds);
    }
    w.postNorm = norm(hf::postAttentionNorm(L, l), H, hs);
    if (c.gemmaNorms) {
      w.preFfnNorm = norm(hf::preFeedforwardNorm(L, l), H, hs);
      w.postFfnNorm = norm(hf::postFeedforwardNorm(L, l), H, hs);
    }
    if (c.fusedQkv) {
      // Phi3MLP: gate_up_proj rows are gate | up (up_states.chunk(2, dim=-1)).
      const std::string name = hf::fusedGateUpWeight(L, l);
      const auto gu = src.rows(name, {2 * I, H}, "2 * " + is + ", " + hs);
      w.wGate = makeLinear(rowSlice(gu, 0), I, H, quant, src.dtype(name));
      w.wUp = makeLinear(rowSlice(gu, I), I, H, quant, src.dtype(name));
      src.done(name);
    } else {
      w.wGate = lin(hf::linearWeight(L, l, LoraModule::Gate), I, H, is + ", " + hs);
      w.wUp = lin(hf::linearWeight(L, l, LoraModule::Up), I, H, is + ", " + hs);
    }
    w.wDown = lin(hf::linearWeight(L, l, LoraModule::Down), H, I, hs + ", " + is);
    w.bGate = bias(hf::linearBias(L, l, LoraModule::Gate), c.mlpBias, I, is);
    w.bUp = bias(hf::linearBias(L, l, LoraModule::Up), c.mlpBias, I, is);
    w.bDown = bias(hf::linearBias(L, l, LoraModule::Down), c.mlpBias, H, hs);
  }
  finalNorm_ = norm(hf::finalNorm(L), H, hs);
  if (!tiedHead_) head_ = lin(hf::lmHead(L), V, H, vs);
}

std::shared_ptr<Model> Model::load(const std::string& dir, Quantization quant) {
  auto model = std::make_shared<Model>();
  const std::string cfgPath = dir + "/config.json";
  model->config_ = parseModelConfig(readFile(cfgPath, "is this a Hugging Face model folder?"), cfgPath);
  auto store = TensorStore::openDir(dir);
  model->layout_ = detectTextLayout(*store, model->config_);
  model->dtype_ = store->dominantDType();
  WeightSource src;
  src.get = [&](const std::string& name, std::vector<int64_t> shape, const std::string& why) {
    std::vector<float> v = checkedTensor(*store, name, shape, why).toF32();
    store->release(name);
    return v;
  };
  src.rows = [&](const std::string& name, std::vector<int64_t> shape, const std::string& why) -> cpu::PackedMatrix::RowReader {
    const TensorView& t = checkedTensor(*store, name, shape, why);
    const int64_t cols = shape[1];
    return [&t, cols](int64_t r0, int64_t count, float* dst) {
      const uint8_t* p = t.data + r0 * cols * int64_t(dtypeSize(t.dtype));
      const size_t n = size_t(count * cols);
      convertToF32(t.dtype, p, n, dst);
      TensorStore::releaseBytes(p, n * dtypeSize(t.dtype));  // read once: the pages can go now
    };
  };
  src.done = [&](const std::string& name) { store->release(name); };
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
  // NOTE(why): a filler writes whole tensors, so a generated model holds one float32 tensor at a
  // time while packing (benchmarks and checks only; files go through load()).
  auto whole = std::make_shared<std::vector<float>>();
  src.rows = [&, whole](const std::string& name, std::vector<int64_t> shape, const std::string& why) -> cpu::PackedMatrix::RowReader {
    *whole = src.get(name, shape, why);
    const int64_t cols = shape[1];
    return [whole, cols](int64_t r0, int64_t count, float* dst) {
      std::copy_n(whole->data() + r0 * cols, count * cols, dst);
    };
  };
  src.done = [whole](const std::string&) { std::vector<float>().swap(*whole); };
  src.dtype = [&](const std::string&) { return source; };
  src.has = [&](const std::string& name) { return name != hf::lmHead(model->layout_) || !config.tieWordEmbeddings; };
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

}  // namespace openlora
