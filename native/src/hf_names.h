// The Hugging Face tensor names of a Llama-family checkpoint (transformers' LlamaForCausalLM
// state dict) and of a PEFT LoRA adapter on it: the one table the model loader, the random-weight
// generator and the PEFT reader share. Also the seven decoder linear modules LoRA can target.
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

inline const char* const kEmbedTokens = "model.embed_tokens.weight";  // [vocab, hidden]
inline const char* const kFinalNorm = "model.norm.weight";            // [hidden]
inline const char* const kLmHead = "lm_head.weight";                  // [vocab, hidden] (absent when tied)

/** "model.layers.{layer}." */
inline std::string layerPrefix(int layer) { return "model.layers." + std::to_string(layer) + "."; }
/** "model.layers.{layer}.input_layernorm.weight" [hidden]. */
inline std::string inputNorm(int layer) { return layerPrefix(layer) + "input_layernorm.weight"; }
/** "model.layers.{layer}.post_attention_layernorm.weight" [hidden]. */
inline std::string postAttentionNorm(int layer) { return layerPrefix(layer) + "post_attention_layernorm.weight"; }
/** "model.layers.{layer}.{self_attn|mlp}.{x}_proj.weight" [out, in]. */
inline std::string linearWeight(int layer, LoraModule m) {
  return layerPrefix(layer) + moduleBlock(m) + "." + moduleName(m) + ".weight";
}
/** "model.layers.{layer}.{self_attn|mlp}.{x}_proj.bias" [out] (qwen2's q/k/v, attention_bias, mlp_bias). */
inline std::string linearBias(int layer, LoraModule m) {
  return layerPrefix(layer) + moduleBlock(m) + "." + moduleName(m) + ".bias";
}
/** Phi-3's fused "model.layers.{layer}.self_attn.qkv_proj.weight" [qDim + 2 kvDim, hidden], rows q | k | v. */
inline std::string fusedQkvWeight(int layer) { return layerPrefix(layer) + "self_attn.qkv_proj.weight"; }
/** Phi-3's fused "model.layers.{layer}.mlp.gate_up_proj.weight" [2 intermediate, hidden], rows gate | up. */
inline std::string fusedGateUpWeight(int layer) { return layerPrefix(layer) + "mlp.gate_up_proj.weight"; }
/** "model.layers.{layer}.self_attn.q_norm.weight" [head_dim] (Qwen3, Gemma 3). */
inline std::string qNorm(int layer) { return layerPrefix(layer) + "self_attn.q_norm.weight"; }
/** "model.layers.{layer}.self_attn.k_norm.weight" [head_dim] (Qwen3, Gemma 3). */
inline std::string kNorm(int layer) { return layerPrefix(layer) + "self_attn.k_norm.weight"; }
/** "model.layers.{layer}.pre_feedforward_layernorm.weight" [hidden] (Gemma 2/3). */
inline std::string preFeedforwardNorm(int layer) { return layerPrefix(layer) + "pre_feedforward_layernorm.weight"; }
/** "model.layers.{layer}.post_feedforward_layernorm.weight" [hidden] (Gemma 2/3). */
inline std::string postFeedforwardNorm(int layer) { return layerPrefix(layer) + "post_feedforward_layernorm.weight"; }
/** PEFT: "base_model.model.model.layers.{layer}.{block}.{x}_proj.lora_{A|B}.weight". */
inline std::string peftLoraWeight(int layer, LoraModule m, bool isB) {
  return "base_model.model." + layerPrefix(layer) + moduleBlock(m) + "." + moduleName(m) + (isB ? ".lora_B.weight" : ".lora_A.weight");
}

}  // namespace hf

}  // namespace openlora
