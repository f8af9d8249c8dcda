// See config.h. Field semantics follow transformers' LlamaConfig / MistralConfig / Qwen2Config.
#include "config.h"

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
  } else {
    unsupported(path, "field rope_scaling.rope_type \"" + t + "\" is not supported (supported: default, linear, llama3)");
  }
  if (!(rs.factor > 0)) fail(path, "field rope_scaling.factor must be > 0");
  return rs;
}

}  // namespace

std::vector<float> ModelConfig::ropeInvFreq() const {
  const int half = headDim / 2;
  std::vector<float> inv(half);
  for (int j = 0; j < half; j++) {
    // HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in float32.
    float expo = float(2 * j) / float(headDim);
    inv[j] = 1.0f / std::pow(float(ropeTheta), expo);
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
    if (archName == "LlamaForCausalLM") c.modelType = "llama";
    else if (archName == "MistralForCausalLM") c.modelType = "mistral";
    else if (archName == "Qwen2ForCausalLM") c.modelType = "qwen2";
  }
  if (c.modelType != "llama" && c.modelType != "mistral" && c.modelType != "qwen2") {
    unsupported(path, "field model_type \"" + c.modelType + "\" (architectures[0] \"" + archName +
                   "\") is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  }
  const JsonValue* act = cfg.find("hidden_act");
  if (act && !(act->isString() && act->asString() == "silu")) {
    unsupported(path, "field hidden_act must be \"silu\", got " + (act->isString() ? "\"" + act->asString() + "\"" : std::string(act->typeName())));
  }

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
  c.tieWordEmbeddings = optionalBool(cfg, "tie_word_embeddings", false, path);
  c.mlpBias = optionalBool(cfg, "mlp_bias", false, path);
  if (c.modelType == "qwen2") {
    c.qkvBias = true;  // Qwen2Attention: q/k/v have bias=True, o_proj bias=False
    c.oBias = false;
    if (optionalBool(cfg, "use_sliding_window", false, path)) {
      unsupported(path, "field use_sliding_window = true is not supported (sliding-window attention)");
    }
  } else {
    bool ab = optionalBool(cfg, "attention_bias", false, path);
    c.qkvBias = c.oBias = ab;
  }
  if (c.modelType == "mistral") {
    int sw = optionalInt(cfg, "sliding_window", 0, path);
    if (sw > 0 && sw < c.maxPositionEmbeddings) {
      unsupported(path, "field sliding_window = " + std::to_string(sw) + " < max_position_embeddings is not supported (sliding-window attention)");
    }
  }

  if (c.numAttentionHeads % c.numKeyValueHeads != 0) {
    fail(path, "num_attention_heads (" + std::to_string(c.numAttentionHeads) + ") must be a multiple of num_key_value_heads (" +
                   std::to_string(c.numKeyValueHeads) + ")");
  }
  if (c.headDim % 2 != 0) fail(path, "head_dim (" + std::to_string(c.headDim) + ") must be even for RoPE");
  if (!(c.rmsNormEps > 0)) fail(path, "field rms_norm_eps must be > 0");
  if (!(c.ropeTheta > 0)) fail(path, "field rope_theta must be > 0");
  return c;
}

}  // namespace openlora
