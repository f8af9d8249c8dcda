// The Hugging Face tensor names of a Llama-family checkpoint (transformers' LlamaForCausalLM
// state dict, or the language model inside Gemma3ForConditionalGeneration: TextLayout) and of a
// PEFT LoRA adapter on it: the one table the model loader, the random-weight generator and the
// PEFT reader share. Also the seven decoder linear modules LoRA can target.
#pragma once

#include <string>

namespace openlora {

/** The seven linear layers of a Llama decoder layer (the modules a LoRA may target). */
enum class LoraModule { Q, K, V, O, Gate, Up, Down };
constexpr int kNumLoraModules = 7;

namespace hf {

/** "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" (PEFT target_modules). */
inline const char* moduleName(LoraModule m) {
  static const char* const kNames[kNumLoraModules] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return kNames[int(m)];
}

/** Parse a module name; false when it is none of the seven. */
inline bool parseModuleName(const std::string& s, LoraModule* out) {
  for (int i = 0; i < kNumLoraModules; i++) {
    if (s == moduleName(LoraModule(i))) {
      *out = LoraModule(i);
      return true;
    }
  }
  return false;
}

/** The sub-block a module belongs to: "self_attn" (q, k, v, o) or "mlp" (gate, up, down). */
inline const char* moduleBlock(LoraModule m) { return int(m) <= int(LoraModule::O) ? "self_attn" : "mlp"; }

/**
 * Where a checkpoint keeps its text decoder: the module path of the decoder (embed_tokens,
 * layers, norm) and of lm_head, as in the state dict and in PEFT module names.
 * - ...ForCausalLM (every family): "model" / "lm_head" (hf::kCausalLM).
 * - Gemma3ForConditionalGeneration saved by transformers < 4.52: "language_model.model" /
 *   "language_model.lm_head" (hf::kMultimodalLegacy); by later versions: "model.language_model" /
 *   "lm_head" (hf::kMultimodal). Its vision tower (vision_tower.*, multi_modal_projector.*,
 *   under model. in the newer layout) has no name here: it is never read.
 */
struct TextLayout {
  const char* model;  // module path of the decoder, e.g. "model"
  const char* head;   // module path of lm_head, e.g. "lm_head"
};
inline constexpr TextLayout kCausalLM{"model", "lm_head"};
inline constexpr TextLayout kMultimodalLegacy{"language_model.model", "language_model.lm_head"};
inline constexpr TextLayout kMultimodal{"model.language_model", "lm_head"};

/** "{model}.embed_tokens.weight" [vocab, hidden]. */
inline std::string embedTokens(const TextLayout& t) { return std::string(t.model) + ".embed_tokens.weight"; }
/** "{model}.norm.weight" [hidden]. */
inline std::string finalNorm(const TextLayout& t) { return std::string(t.model) + ".norm.weight"; }
/** "{head}.weight" [vocab, hidden] (absent when tied). */
inline std::string lmHead(const TextLayout& t) { return std::string(t.head) + ".weight"; }

/** "{model}.layers.{layer}." */
inline std::string layerPrefix(const TextLayout& t, int layer) { return std::string(t.model) + ".layers." + std::to_string(layer) + "."; }
/** "{model}.layers.{layer}.input_layernorm.weight" [hidden]. */
inline std::string inputNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "input_layernorm.weight"; }
/** "{model}.layers.{layer}.post_attention_layernorm.weight" [hidden]. */
inline std::string postAttentionNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "post_attention_layernorm.weight"; }
/** "{model}.layers.{layer}.{self_attn|mlp}.{x}_proj.weight" [out, in]. */
inline std::string linearWeight(const TextLayout& t, int layer, LoraModule m) {
  return layerPrefix(t, layer) + moduleBlock(m) + "." + moduleName(m) + ".weight";
}
/** "{model}.layers.{layer}.{self_attn|mlp}.{x}_proj.bias" [out] (qwen2's q/k/v, attention_bias, mlp_bias). */
inline std::string linearBias(const TextLayout& t, int layer, LoraModule m) {
  return layerPrefix(t, layer) + moduleBlock(m) + "." + moduleName(m) + ".bias";
}
/** Phi-3's fused "{model}.layers.{layer}.self_attn.qkv_proj.weight" [qDim + 2 kvDim, hidden], rows q | k | v. */
inline std::string fusedQkvWeight(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "self_attn.qkv_proj.weight"; }
/** Phi-3's fused "{model}.layers.{layer}.mlp.gate_up_proj.weight" [2 intermediate, hidden], rows gate | up. */
inline std::string fusedGateUpWeight(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "mlp.gate_up_proj.weight"; }
/** "{model}.layers.{layer}.self_attn.q_norm.weight" [head_dim] (Qwen3, Gemma 3). */
inline std::string qNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "self_attn.q_norm.weight"; }
/** "{model}.layers.{layer}.self_attn.k_norm.weight" [head_dim] (Qwen3, Gemma 3). */
inline std::string kNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "self_attn.k_norm.weight"; }
/** "{model}.layers.{layer}.pre_feedforward_layernorm.weight" [hidden] (Gemma 2/3). */
inline std::string preFeedforwardNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "pre_feedforward_layernorm.weight"; }
/** "{model}.layers.{layer}.post_feedforward_layernorm.weight" [hidden] (Gemma 2/3). */
inline std::string postFeedforwardNorm(const TextLayout& t, int layer) { return layerPrefix(t, layer) + "post_feedforward_layernorm.weight"; }
/** PEFT: "base_model.model.{model}.layers.{layer}.{block}.{x}_proj.lora_{A|B}.weight" (A [r, in], B [out, r]). */
inline std::string peftLoraWeight(const TextLayout& t, int layer, LoraModule m, bool isB) {
  return "base_model.model." + layerPrefix(t, layer) + moduleBlock(m) + "." + moduleName(m) + (isB ? ".lora_B.weight" : ".lora_A.weight");
}

}  // namespace hf

}  // namespace openlora
