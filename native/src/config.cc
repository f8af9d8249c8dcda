// See config.h. Field semantics follow transformers' LlamaConfig / MistralConfig / Qwen2Config /
// Qwen3Config / Gemma2Config / Gemma3TextConfig / Phi3Config.
#include "config.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "errors.h"
#include "json.h"

namespace openlora {

namespace {

/** A bad_file Error about config.json. */
[[noreturn]] void fail(const std::string& path, const std::string& msg) { raise(ErrorCode::BadFile, path + ": " + msg); }

/** An unsupported_model Error: a valid config this engine cannot run. */
[[noreturn]] void unsupported(const std::string& path, const std::string& msg) { raise(ErrorCode::UnsupportedModel, path + ": " + msg); }

int requireInt(const JsonValue& cfg, const char* key, const std::string& path, int minValue = 1) {
  const JsonValue* v = cfg.find(key);
  if (!v || v->isNull()) fail(path, std::string("missing field ") + key);
  if (!v->isNumber() || std::floor(v->asNumber()) != v->asNumber()) {
    fail(path, std::string("field ") + key + " must be an integer, got " + v->typeName());
  }
  double d = v->asNumber();
  if (d < minValue || d > 1e9) fail(path, std::string("field ") + key + " = " + std::to_string(d) + " is out of range");
  return int(d);
}

int optionalInt(const JsonValue& cfg, const char* key, int def, const std::string& path) {
  const JsonValue* v = cfg.find(key);
  if (!v || v->isNull()) return def;
  return requireInt(cfg, key, path);
}

double optionalNumber(const JsonValue& obj, const char* key, double def, const std::string& path, const std::string& prefix = "") {
  const JsonValue* v = obj.find(key);
  if (!v || v->isNull()) return def;
  if (!v->isNumber() || !std::isfinite(v->asNumber())) fail(path, "field " + prefix + key + " must be a finite number");
  return v->asNumber();
}

bool optionalBool(const JsonValue& cfg, const char* key, bool def, const std::string& path) {
  const JsonValue* v = cfg.find(key);
  if (!v || v->isNull()) return def;
  if (!v->isBool()) fail(path, std::string("field ") + key + " must be a boolean, got " + v->typeName());
  return v->asBool();
}

RopeScaling parseRopeScaling(const JsonValue& cfg, const std::string& path) {
  RopeScaling rs;
  const JsonValue* v = cfg.find("rope_scaling");
  if (!v || v->isNull()) return rs;
  if (!v->isObject()) fail(path, "field rope_scaling must be an object or null");
  const JsonValue* type = v->find("rope_type");
  if (!type) type = v->find("type");  // older configs spell it `type`
  if (!type || !type->isString()) fail(path, "field rope_scaling.rope_type is missing");
  const std::string& t = type->asString();
  if (t == "default") return rs;
  if (t == "linear") {
    rs.kind = RopeScaling::Kind::Linear;
    rs.factor = optionalNumber(*v, "factor", 1.0, path, "rope_scaling.");
  } else if (t == "llama3") {
    rs.kind = RopeScaling::Kind::Llama3;
    rs.factor = optionalNumber(*v, "factor", 8.0, path, "rope_scaling.");
    rs.lowFreqFactor = optionalNumber(*v, "low_freq_factor", 1.0, path, "rope_scaling.");
    rs.highFreqFactor = optionalNumber(*v, "high_freq_factor", 4.0, path, "rope_scaling.");
    rs.originalMaxPositionEmbeddings = optionalNumber(*v, "original_max_position_embeddings", 8192, path, "rope_scaling.");
    if (rs.highFreqFactor <= rs.lowFreqFactor) {
      fail(path, "field rope_scaling.high_freq_factor must be greater than low_freq_factor");
    }
  } else if (t == "dynamic") {
    rs.kind = RopeScaling::Kind::Dynamic;
    rs.factor = optionalNumber(*v, "factor", 1.0, path, "rope_scaling.");
  } else if (t == "yarn") {
    rs.kind = RopeScaling::Kind::Yarn;
    rs.factor = optionalNumber(*v, "factor", 1.0, path, "rope_scaling.");
    rs.originalMaxPositionEmbeddings =
        optionalNumber(*v, "original_max_position_embeddings", optionalInt(cfg, "max_position_embeddings", 2048, path), path, "rope_scaling.");
    rs.betaFast = optionalNumber(*v, "beta_fast", 32, path, "rope_scaling.");
    rs.betaSlow = optionalNumber(*v, "beta_slow", 1, path, "rope_scaling.");
    const JsonValue* tr = v->find("truncate");
    rs.truncate = !(tr && tr->isBool() && !tr->asBool());
    // get_mscale(scale, mscale) = 0.1 mscale ln(scale) + 1 (1 when scale <= 1).
    auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    const double af = optionalNumber(*v, "attention_factor", 0, path, "rope_scaling.");
    const double ms = optionalNumber(*v, "mscale", 0, path, "rope_scaling.");
    const double msAll = optionalNumber(*v, "mscale_all_dim", 0, path, "rope_scaling.");
    rs.attentionFactor = af > 0 ? af : (ms != 0 && msAll != 0) ? mscale(rs.factor, ms) / mscale(rs.factor, msAll) : mscale(rs.factor, 1);
  } else if (t == "longrope" || t == "su") {
    rs.kind = RopeScaling::Kind::LongRope;
    const JsonValue* orig = v->find("original_max_position_embeddings");
    rs.originalMaxPositionEmbeddings = orig && orig->isNumber() ? orig->asNumber()
                                                                : optionalInt(cfg, "original_max_position_embeddings", 0, path);
    if (!(rs.originalMaxPositionEmbeddings > 0)) fail(path, "longrope needs original_max_position_embeddings");
    const double maxPos = optionalInt(cfg, "max_position_embeddings", 2048, path);
    rs.factor = maxPos / rs.originalMaxPositionEmbeddings;  // HF: factor derived from the two lengths
    const double af = optionalNumber(*v, "attention_factor", 0, path, "rope_scaling.");
    rs.attentionFactor = af > 0 ? af : rs.factor <= 1 ? 1.0 : std::sqrt(1 + std::log(rs.factor) / std::log(rs.originalMaxPositionEmbeddings));
    for (const char* key : {"short_factor", "long_factor"}) {
      const JsonValue* f = v->find(key);
      if (!f || !f->isArray()) fail(path, std::string("field rope_scaling.") + key + " must be an array of numbers");
      std::vector<double>& out = std::string(key) == "short_factor" ? rs.shortFactor : rs.longFactor;
      for (const JsonValue& x : f->items()) {
        if (!x.isNumber() || !(x.asNumber() > 0)) fail(path, std::string("field rope_scaling.") + key + " must hold positive numbers");
        out.push_back(x.asNumber());
      }
    }
    const int rot = optionalInt(cfg, "head_dim", requireInt(cfg, "hidden_size", path) / requireInt(cfg, "num_attention_heads", path), path);
    const int half = int(rot * optionalNumber(cfg, "partial_rotary_factor", 1.0, path)) / 2;
    if (int(rs.shortFactor.size()) != half || int(rs.longFactor.size()) != half) {
      fail(path, "fields rope_scaling.short_factor / long_factor must have rotary dim / 2 = " + std::to_string(half) + " entries");
    }
    return rs;
  } else {
    unsupported(path, "field rope_scaling.rope_type \"" + t + "\" is not supported (supported: default, linear, llama3, yarn, dynamic, longrope)");
  }
  if (!(rs.factor > 0)) fail(path, "field rope_scaling.factor must be > 0");
  return rs;
}

}  // namespace

namespace {

/** HF's default inverse frequencies: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), float32. */
std::vector<float> defaultInvFreq(double theta, int dim) {
  std::vector<float> inv(size_t(dim / 2));
  for (int j = 0; j < dim / 2; j++) inv[size_t(j)] = 1.0f / std::pow(float(theta), float(2 * j) / float(dim));
  return inv;
}

/** HF _compute_longrope_parameters: 1 / (ext_factors * base ** (arange(0, dim, 2) / dim)), float32. */
std::vector<float> longropeInvFreq(double theta, int dim, const std::vector<double>& factors) {
  std::vector<float> inv(size_t(dim / 2));
  for (int j = 0; j < dim / 2; j++) inv[size_t(j)] = 1.0f / (float(factors[size_t(j)]) * std::pow(float(theta), float(2 * j) / float(dim)));
  return inv;
}

}  // namespace

std::vector<float> ModelConfig::ropeLocalInvFreq() const { return defaultInvFreq(ropeLocalTheta, rotaryDim); }

std::vector<float> ModelConfig::ropeLongInvFreq() const {
  if (ropeScaling.kind != RopeScaling::Kind::LongRope) return {};
  return longropeInvFreq(ropeTheta, rotaryDim, ropeScaling.longFactor);
}

int ModelConfig::ropeLengthChoice(int seqLen) const {
  if (ropeScaling.kind == RopeScaling::Kind::LongRope && seqLen > ropeScaling.originalMaxPositionEmbeddings) return 1;
  if (ropeScaling.kind == RopeScaling::Kind::Dynamic && seqLen > maxPositionEmbeddings) return seqLen;
  return 0;
}

std::vector<float> ModelConfig::ropeDynamicInvFreq(int seqLen) const {
  const double L = maxPositionEmbeddings, f = ropeScaling.factor, d = rotaryDim;
  const double n = std::max<double>(seqLen, L);
  return defaultInvFreq(ropeTheta * std::pow(f * n / L - (f - 1), d / (d - 2)), rotaryDim);
}

std::vector<float> ModelConfig::ropeInvFreq() const {
  std::vector<float> inv = defaultInvFreq(ropeTheta, rotaryDim);
  if (ropeScaling.kind == RopeScaling::Kind::LongRope) return longropeInvFreq(ropeTheta, rotaryDim, ropeScaling.shortFactor);
  if (ropeScaling.kind == RopeScaling::Kind::Yarn) {
    // HF _compute_yarn_parameters: blend interpolated (inv / factor) and extrapolated (inv)
    // frequencies with a linear ramp between the correction dims of beta_fast and beta_slow.
    const RopeScaling& rs = ropeScaling;
    const double dim = rotaryDim, base = ropeTheta, orig = rs.originalMaxPositionEmbeddings;
    auto corrDim = [&](double rot) { return (dim * std::log(orig / (rot * 2 * M_PI))) / (2 * std::log(base)); };
    double low = corrDim(rs.betaFast), high = corrDim(rs.betaSlow);
    if (rs.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    if (low == high) high += 0.001;
    for (size_t j = 0; j < inv.size(); j++) {
      const float posFreq = std::pow(float(base), float(2 * j) / float(dim));
      const float extra = 1.0f / posFreq, inter = 1.0f / (float(rs.factor) * posFreq);
      const float ramp = std::min(1.0f, std::max(0.0f, (float(j) - float(low)) / (float(high) - float(low))));
      const float extraFactor = 1.0f - ramp;
      inv[j] = inter * (1 - extraFactor) + extra * extraFactor;
    }
    return inv;
  }
  if (ropeScaling.kind == RopeScaling::Kind::Linear) {
    // HF _compute_linear_scaling_rope_parameters: inv_freq / factor (== positions / factor).
    for (float& f : inv) f = float(f / ropeScaling.factor);
  } else if (ropeScaling.kind == RopeScaling::Kind::Llama3) {
    // HF _compute_llama3_parameters.
    const double oldCtx = ropeScaling.originalMaxPositionEmbeddings;
    const double lowWavelen = oldCtx / ropeScaling.lowFreqFactor;
    const double highWavelen = oldCtx / ropeScaling.highFreqFactor;
    for (float& f : inv) {
      const double wavelen = 2 * M_PI / f;
      double scaled = wavelen > lowWavelen ? f / ropeScaling.factor : f;
      if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) {  // medium band: interpolate
        double smooth = (oldCtx / wavelen - ropeScaling.lowFreqFactor) / (ropeScaling.highFreqFactor - ropeScaling.lowFreqFactor);
        scaled = (1 - smooth) * scaled / ropeScaling.factor + smooth * scaled;
      }
      f = float(scaled);
    }
  }
  return inv;
}

namespace {

/** Gemma 3 4B / 12B / 27B (image-text-to-text): served as its text model (config.h multimodalText). */
constexpr const char* kGemma3Multimodal = "Gemma3ForConditionalGeneration";

/** architectures[0] -> model_type, for configs without model_type. */
const std::pair<const char*, const char*> kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},   {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},   {"Gemma2ForCausalLM", "gemma2"},   {"Gemma3ForCausalLM", "gemma3_text"},
    {"Phi3ForCausalLM", "phi3"},     {"Gemma3ForConditionalGeneration", "gemma3"},
};

/** Layer types as each family's config class derives them (HF `layer_types`): true = sliding. */
std::vector<bool> slidingLayers(const JsonValue& cfg, const ModelConfig& c, int window, const std::string& path) {
  const int n = c.numHiddenLayers;
  std::vector<bool> sliding(size_t(n), false);
  const JsonValue* lt = cfg.find("layer_types");
  if (lt && !lt->isNull()) {
    if (!lt->isArray() || int(lt->items().size()) != n) {
      fail(path, "field layer_types must be an array of num_hidden_layers (" + std::to_string(n) + ") strings");
    }
    for (int i = 0; i < n; i++) {
      const JsonValue& t = lt->items()[size_t(i)];
      if (!t.isString() || (t.asString() != "sliding_attention" && t.asString() != "full_attention")) {
        fail(path, "field layer_types[" + std::to_string(i) + "] must be \"sliding_attention\" or \"full_attention\"");
      }
      sliding[size_t(i)] = t.asString() == "sliding_attention";
    }
    return sliding;
  }
  if (window <= 0) return sliding;
  const std::string& mt = c.modelType;
  for (int i = 0; i < n; i++) {
    if (mt == "mistral" || mt == "phi3") sliding[size_t(i)] = true;  // MistralAttention / Phi3Attention: every layer
    else if (mt == "qwen2" || mt == "qwen3") sliding[size_t(i)] = i >= optionalInt(cfg, "max_window_layers", n, path);
    else if (mt == "gemma2") sliding[size_t(i)] = (i + 1) % 2 != 0;  // Gemma2Config: even layers slide
    else if (mt == "gemma3_text") sliding[size_t(i)] = (i + 1) % optionalInt(cfg, "sliding_window_pattern", 6, path) != 0;
  }
  return sliding;
}

/** The config's activation for the gated MLP, checked against what the family uses. */
Activation parseActivation(const JsonValue& cfg, bool gemma, const std::string& path) {
  // Gemma configs carry hidden_activation (HF Gemma2MLP / Gemma3MLP read it); hidden_act elsewhere.
  const char* key = gemma && cfg.find("hidden_activation") && !cfg.find("hidden_activation")->isNull() ? "hidden_activation" : "hidden_act";
  const JsonValue* act = cfg.find(key);
  if (!act || act->isNull()) return gemma ? Activation::GeluTanh : Activation::Silu;
  const std::string a = act->isString() ? act->asString() : std::string(act->typeName());
  if (!gemma && a == "silu") return Activation::Silu;
  if (gemma && (a == "gelu_pytorch_tanh" || a == "gelu_tanh")) return Activation::GeluTanh;
  unsupported(path, std::string("field ") + key + " must be \"" + (gemma ? "gelu_pytorch_tanh" : "silu") + "\", got " +
                 (act->isString() ? "\"" + a + "\"" : a));
}

/** vLLM's derived max_model_len (see ModelConfig::maxModelLen). */
int deriveMaxModelLen(const JsonValue& cfg, const ModelConfig& c, const std::string& path) {
  double len = 0;
  for (const char* key : {"max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length", "max_seq_length", "seq_len"}) {
    const JsonValue* v = cfg.find(key);
    if (v && v->isNumber() && v->asNumber() > 0) len = len == 0 ? v->asNumber() : std::min(len, v->asNumber());
  }
  if (len == 0) len = c.maxPositionEmbeddings;
  const RopeScaling& rs = c.ropeScaling;
  // NOTE(why): vLLM leaves Gemma 3 out ("gemma3" model types): its max_position_embeddings (128K)
  // already counts the linear scaling of its global layers.
  const bool scaled = c.modelType != "gemma3_text";
  if (scaled && rs.kind != RopeScaling::Kind::None && rs.kind != RopeScaling::Kind::Llama3 && rs.kind != RopeScaling::Kind::LongRope) {
    if (rs.kind == RopeScaling::Kind::Yarn) len = rs.originalMaxPositionEmbeddings;
    len *= rs.factor;
  }
  if (!(len >= 1 && len <= 1e8)) fail(path, "derived context length " + std::to_string(len) + " is out of range");
  return int(len);
}

}  // namespace

const char* const kSupportedArchitectures =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM (text), "
    "Gemma3ForConditionalGeneration (text input only), Phi3ForCausalLM";

std::vector<std::string> supportedArchitectureList() {
  std::vector<std::string> out;
  for (const auto& [a, t] : kArchitectures) out.push_back(a);
  return out;
}

void ModelConfig::completeDefaults() {
  if (rotaryDim <= 0) rotaryDim = headDim;
  if (!(attnScale > 0)) attnScale = 1.0f / std::sqrt(float(headDim));
  if (int(layerWindow.size()) != numHiddenLayers) layerWindow.assign(size_t(numHiddenLayers), 0);
  if (int(layerLocalRope.size()) != numHiddenLayers) layerLocalRope.assign(size_t(numHiddenLayers), false);
  if (maxModelLen <= 0) maxModelLen = maxPositionEmbeddings;
  if (architecture.empty()) {
    for (const auto& [a, t] : kArchitectures) {
      if (modelType == t) architecture = a;
    }
  }
}

int ModelConfig::kvWindow() const {
  int w = 0;
  for (int x : layerWindow) {
    if (x <= 0) return 0;
    w = std::max(w, x);
  }
  return w;
}

namespace {

/**
 * The language model's fields of a Gemma3ForConditionalGeneration config.json: its text_config
 * with transformers' Gemma3TextConfig defaults put where a field is absent (an explicit null
 * stays null), as transformers reads it.
 * @throws Error bad_file when text_config is missing or not an object; unsupported_model when its
 *   model_type is not "gemma3_text".
 */
JsonValue gemma3TextConfig(const JsonValue& cfg, const std::string& path) {
  const JsonValue* tc = cfg.find("text_config");
  if (!tc || tc->isNull()) {
    fail(path, std::string("field text_config is missing: ") + kGemma3Multimodal +
                   " keeps its language model's fields (hidden_size, num_hidden_layers, ...) there");
  }
  if (!tc->isObject()) fail(path, std::string("field text_config must be an object, got ") + tc->typeName());
  const JsonValue* mt = tc->find("model_type");
  if (mt && !mt->isNull() && !(mt->isString() && mt->asString() == "gemma3_text")) {
    unsupported(path, "field text_config.model_type must be \"gemma3_text\", got " + (mt->isString() ? "\"" + mt->asString() + "\"" : std::string(mt->typeName())));
  }
  // transformers' Gemma3TextConfig.__init__ defaults (models/gemma3/configuration_gemma3.py);
  // rope_scaling and both soft-caps default to None, which absence already means here.
  std::map<std::string, JsonValue> m = tc->members();
  const std::pair<const char*, double> numbers[] = {
      {"vocab_size", 262208},           {"hidden_size", 2304},         {"intermediate_size", 9216},
      {"num_hidden_layers", 26},        {"num_attention_heads", 8},    {"num_key_value_heads", 4},
      {"head_dim", 256},                {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6},
      {"rope_theta", 1000000.0},        {"query_pre_attn_scalar", 256}, {"sliding_window", 4096},
      {"rope_local_base_freq", 10000.0}, {"sliding_window_pattern", 6},
  };
  for (const auto& [k, v] : numbers) m.emplace(k, JsonValue::makeNumber(v));  // emplace keeps a present field
  m.emplace("hidden_activation", JsonValue::makeString("gelu_pytorch_tanh"));
  m.emplace("tie_word_embeddings", JsonValue::makeBool(true));
  m.emplace("attention_bias", JsonValue::makeBool(false));
  return JsonValue::makeObject(std::move(m));
}

/** Everything but the architecture: the decoder's fields of `cfg` (the top level, or Gemma 3's text_config). */
void parseTextFields(const JsonValue& cfg, const std::string& path, ModelConfig& c) {
  const bool gemma = c.modelType == "gemma2" || c.modelType == "gemma3_text";
  c.hiddenAct = parseActivation(cfg, gemma, path);

  c.vocabSize = requireInt(cfg, "vocab_size", path);
  c.hiddenSize = requireInt(cfg, "hidden_size", path);
  c.intermediateSize = requireInt(cfg, "intermediate_size", path);
  c.numHiddenLayers = requireInt(cfg, "num_hidden_layers", path);
  c.numAttentionHeads = requireInt(cfg, "num_attention_heads", path);
  c.numKeyValueHeads = optionalInt(cfg, "num_key_value_heads", c.numAttentionHeads, path);
  c.headDim = optionalInt(cfg, "head_dim", c.hiddenSize / c.numAttentionHeads, path);
  c.maxPositionEmbeddings = optionalInt(cfg, "max_position_embeddings", 2048, path);
  c.ropeTheta = optionalNumber(cfg, "rope_theta", 10000.0, path);
  c.ropeScaling = parseRopeScaling(cfg, path);
  c.rmsNormEps = optionalNumber(cfg, "rms_norm_eps", 1e-6, path);
  c.tieWordEmbeddings = optionalBool(cfg, "tie_word_embeddings", gemma, path);  // Gemma configs default to tied
  c.mlpBias = optionalBool(cfg, "mlp_bias", false, path);
  c.attnScale = 1.0f / std::sqrt(float(c.headDim));
  // Phi-3 family (Phi-4-mini: 0.75): RoPE on the first int(head_dim * partial_rotary_factor) dims.
  const double prf = optionalNumber(cfg, "partial_rotary_factor", 1.0, path);
  if (!(prf > 0 && prf <= 1)) fail(path, "field partial_rotary_factor must be in (0, 1]");
  c.rotaryDim = int(c.headDim * prf);
  if (c.modelType == "qwen2") {
    c.qkvBias = true;  // Qwen2Attention: q/k/v have bias=True, o_proj bias=False
    c.oBias = false;
  } else if (c.modelType == "phi3") {
    c.qkvBias = c.oBias = false;  // Phi3Attention: no biases
    c.fusedQkv = true;
  } else {
    bool ab = optionalBool(cfg, "attention_bias", false, path);
    c.qkvBias = c.oBias = ab;
  }
  c.qkNorm = c.modelType == "qwen3" || c.modelType == "gemma3_text";
  if (gemma) {
    c.gemmaNorms = true;
    c.embedScale = float(std::sqrt(double(c.hiddenSize)));  // torch.tensor(hidden_size**0.5) in float32
    // Gemma2Config / Gemma3TextConfig defaults where a field is absent; null means "none".
    const bool g2 = c.modelType == "gemma2";
    const double qpas = optionalNumber(cfg, "query_pre_attn_scalar", 256, path);
    if (!(qpas > 0)) fail(path, "field query_pre_attn_scalar must be > 0");
    c.attnScale = float(std::pow(qpas, -0.5));
    auto cap = [&](const char* key, double def) {
      const JsonValue* v = cfg.find(key);
      return float(!v ? def : optionalNumber(cfg, key, 0.0, path));
    };
    c.attnSoftcap = cap("attn_logit_softcapping", g2 ? 50.0 : 0.0);
    c.finalSoftcap = cap("final_logit_softcapping", g2 ? 30.0 : 0.0);
    if (c.attnSoftcap < 0 || c.finalSoftcap < 0) fail(path, "fields attn_logit_softcapping / final_logit_softcapping must be >= 0");
    if (c.modelType == "gemma3_text") c.ropeLocalTheta = optionalNumber(cfg, "rope_local_base_freq", 10000.0, path);
  }

  // Sliding window: Mistral (every layer), Qwen2/Qwen3 (use_sliding_window, layers >= max_window_layers),
  // Gemma (alternating), Phi-3 (every layer). HF ignores sliding_window unless the family uses it.
  int window = optionalInt(cfg, "sliding_window", gemma && !cfg.find("sliding_window") ? 4096 : 0, path);  // Gemma configs default to 4096
  if ((c.modelType == "qwen2" || c.modelType == "qwen3") && !optionalBool(cfg, "use_sliding_window", false, path)) window = 0;
  if (c.modelType == "llama") window = 0;
  const std::vector<bool> sliding = slidingLayers(cfg, c, window, path);
  c.layerWindow.assign(size_t(c.numHiddenLayers), 0);
  c.layerLocalRope.assign(size_t(c.numHiddenLayers), false);
  for (int i = 0; i < c.numHiddenLayers; i++) {
    if (sliding[size_t(i)] && window <= 0) fail(path, "field layer_types names a sliding layer but sliding_window is not set");
    if (sliding[size_t(i)]) c.layerWindow[size_t(i)] = window;
    c.layerLocalRope[size_t(i)] = c.modelType == "gemma3_text" && sliding[size_t(i)];
  }

  if (c.numAttentionHeads % c.numKeyValueHeads != 0) {
    fail(path, "num_attention_heads (" + std::to_string(c.numAttentionHeads) + ") must be a multiple of num_key_value_heads (" +
                   std::to_string(c.numKeyValueHeads) + ")");
  }
  if (c.headDim % 2 != 0) fail(path, "head_dim (" + std::to_string(c.headDim) + ") must be even for RoPE");
  if (c.rotaryDim % 2 != 0 || c.rotaryDim < 2) {
    fail(path, "head_dim * partial_rotary_factor = " + std::to_string(c.rotaryDim) + " must be even and >= 2 for RoPE");
  }
  if (!(c.rmsNormEps > 0)) fail(path, "field rms_norm_eps must be > 0");
  if (!(c.ropeTheta > 0)) fail(path, "field rope_theta must be > 0");
  c.maxModelLen = deriveMaxModelLen(cfg, c, path);
}

}  // namespace

ModelConfig parseModelConfig(const std::string& text, const std::string& path) {
  JsonValue cfg = parseJson(text, path);
  if (!cfg.isObject()) fail(path, "must be a JSON object");
  ModelConfig c;

  const JsonValue* mt = cfg.find("model_type");
  const JsonValue* arch = cfg.find("architectures");
  std::string archName = arch && arch->isArray() && !arch->items().empty() && arch->items()[0].isString()
                             ? arch->items()[0].asString()
                             : "";
  c.modelType = mt && mt->isString() ? mt->asString() : "";
  if (c.modelType.empty()) {
    for (const auto& [a, t] : kArchitectures) {
      if (archName == a) c.modelType = t;
    }
  }
  // A Gemma3ForCausalLM checkpoint of the text model may say model_type "gemma3_text" or "gemma3"
  // with the text fields at the top level (no text_config / vision tower).
  if (c.modelType == "gemma3" && archName == "Gemma3ForCausalLM" && !cfg.find("vision_config")) c.modelType = "gemma3_text";
  bool known = false;
  for (const auto& [a, t] : kArchitectures) known = known || c.modelType == t;
  // model_type "gemma3" is Gemma3ForConditionalGeneration's only (Gemma3ForCausalLM with a vision tower is not a checkpoint we know).
  if (c.modelType == "gemma3" && !archName.empty() && archName != kGemma3Multimodal) known = false;
  if (!known) {
    std::string why;
    if (cfg.find("num_local_experts") || cfg.find("num_experts") || cfg.find("n_routed_experts")) why = " (mixture of experts)";
    else if (cfg.find("vision_config") || cfg.find("text_config") || cfg.find("audio_config")) why = " (multimodal)";
    unsupported(path, "field model_type \"" + c.modelType + "\" (architectures[0] \"" + archName + "\") is not supported" + why +
                   " (supported: " + kSupportedArchitectures + ")");
  }
  if (archName == kGemma3Multimodal && c.modelType != "gemma3") {
    unsupported(path, std::string("architectures[0] \"") + kGemma3Multimodal + "\" needs model_type \"gemma3\", got \"" + c.modelType + "\"");
  }
  c.architecture = archName;
  if (c.architecture.empty()) {
    for (const auto& [a, t] : kArchitectures) {
      if (c.modelType == t) c.architecture = a;
    }
  }
  if (c.modelType == "gemma3") {
    // Gemma3ForConditionalGeneration: serve its language model (a Gemma 3 text decoder) from
    // text_config; the vision tower is never loaded (only text is accepted as input).
    c.modelType = "gemma3_text";
    c.multimodalText = true;
    parseTextFields(gemma3TextConfig(cfg, path), path + ": text_config", c);
  } else {
    parseTextFields(cfg, path, c);
  }
  return c;
}

}  // namespace openlora
