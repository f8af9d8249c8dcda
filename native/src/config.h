// Model hyper-parameters from a Hugging Face config.json (Llama, Mistral, Qwen2, Qwen3, Gemma 2,
// Gemma 3 text, Phi-3; Gemma3ForConditionalGeneration's language model).
#pragma once

#include <string>
#include <vector>

namespace openlora {

/** RoPE frequency scaling (HF `rope_scaling`, modeling_rope_utils.py). */
struct RopeScaling {
  enum class Kind { None, Linear, Llama3, Yarn, LongRope, Dynamic };
  Kind kind = Kind::None;
  double factor = 1.0;
  // llama3 (HF _compute_llama3_parameters):
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  double originalMaxPositionEmbeddings = 8192;  // llama3, yarn, longrope
  // yarn (HF _compute_yarn_parameters):
  double betaFast = 32, betaSlow = 1;
  bool truncate = true;
  /** cos/sin multiplier (HF attention_scaling): yarn mscale, longrope sqrt(1 + ln f / ln L0); 1 otherwise. */
  double attentionFactor = 1.0;
  // longrope / su (HF _compute_longrope_parameters): per-frequency divisors, [rotary dim / 2] each.
  std::vector<double> shortFactor, longFactor;
};

/** Activation of the gated MLP: act(gate) * up. */
enum class Activation { Silu, GeluTanh };

/** The architectures parseModelConfig accepts, for messages ("LlamaForCausalLM, ..."). */
extern const char* const kSupportedArchitectures;
/** The same, one name per entry (ModelInfo.supportedArchitectures, /v1/models). */
std::vector<std::string> supportedArchitectureList();

/** Everything the forward pass needs to know about the architecture. */
struct ModelConfig {
  std::string modelType;  // "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "gemma3_text" | "phi3" (the text model's)
  std::string architecture;  // architectures[0] ("Qwen3ForCausalLM", ...), or the one model_type implies
  /**
   * Gemma3ForConditionalGeneration (model_type "gemma3"): the fields come from its text_config
   * (modelType "gemma3_text", Gemma3TextConfig defaults where absent) and the weights are its
   * language model's (hf::kMultimodalLegacy / hf::kMultimodal names); the vision tower is never
   * loaded, so only text input is served.
   */
  bool multimodalText = false;
  int vocabSize = 0;
  int hiddenSize = 0;
  int intermediateSize = 0;
  int numHiddenLayers = 0;
  int numAttentionHeads = 0;
  int numKeyValueHeads = 0;  // default = numAttentionHeads
  int headDim = 0;           // default = hiddenSize / numAttentionHeads
  int rotaryDim = 0;         // dims RoPE rotates: int(headDim * partial_rotary_factor) (Phi-4-mini 0.75), else headDim
  int maxPositionEmbeddings = 0;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  double rmsNormEps = 1e-6;
  bool tieWordEmbeddings = false;
  bool qkvBias = false;  // q/k/v projections have a bias (attention_bias, implied for qwen2)
  bool oBias = false;    // o_proj has a bias (attention_bias on llama/mistral; never on qwen2)
  bool mlpBias = false;  // gate/up/down have a bias

  // --- What the newer families change (defaults: the Llama block).
  Activation hiddenAct = Activation::Silu;  // hidden_act / hidden_activation
  bool qkNorm = false;          // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3: q_norm, k_norm)
  bool gemmaNorms = false;      // Gemma: RMSNorm scales by (1 + w) (load() stores 1 + w), embeddings
                                // times sqrt(hidden_size), post-attention and pre/post-feedforward norms
  float embedScale = 1.0f;      // sqrt(hidden_size) in float32 for Gemma, else 1
  float attnScale = 0.0f;       // q.k scale: head_dim^-0.5, Gemma query_pre_attn_scalar^-0.5
  float attnSoftcap = 0.0f;     // Gemma 2 attn_logit_softcapping: s = cap tanh(s / cap); 0 = none
  float finalSoftcap = 0.0f;    // Gemma 2 final_logit_softcapping on the logits; 0 = none
  bool fusedQkv = false;        // Phi-3: one qkv_proj [q | k | v] and one gate_up_proj [gate | up] on disk
  /** Per layer: 0 = global attention, W > 0 = keys (pos - W, pos] only (sliding window). */
  std::vector<int> layerWindow;
  /** Per layer: true where Gemma 3 uses its local RoPE (rope_local_base_freq, no scaling). */
  std::vector<bool> layerLocalRope;
  double ropeLocalTheta = 10000.0;  // Gemma 3 rope_local_base_freq
  /**
   * Longest sequence served: vLLM's derived max_model_len (config/model_arch_config: the
   * smallest of max_position_embeddings and its aliases, times rope_scaling.factor for rope types
   * other than llama3 / longrope / su, except on Gemma 3, whose max_position_embeddings already
   * counts it; yarn starts from original_max_position_embeddings).
   */
  int maxModelLen = 0;

  int qDim() const { return numAttentionHeads * headDim; }
  /**
   * Fill the derived fields a hand-built config leaves unset (random-weight models of
   * openlora-cli): rotaryDim = headDim, attnScale = headDim^-0.5, every layer global with the
   * model's RoPE, maxModelLen = maxPositionEmbeddings, architecture from modelType. Idempotent.
   */
  void completeDefaults();
  /** Largest sliding window of any layer, 0 when some layer is global (then no KV block can be dropped). */
  int kvWindow() const;
  int kvDim() const { return numKeyValueHeads * headDim; }

  /**
   * RoPE inverse frequencies, [rotaryDim / 2], float32 as HF computes them
   * (`1 / theta^(2j/d)`, then the rope_scaling rule).
   */
  std::vector<float> ropeInvFreq() const;
  /** Gemma 3's local-layer inverse frequencies: rope_local_base_freq, no scaling, [headDim / 2]. */
  std::vector<float> ropeLocalInvFreq() const;
  /**
   * longrope: the inverse frequencies HF uses once a sequence is longer than
   * original_max_position_embeddings (long_factor; dynamic_rope_update); ropeInvFreq() holds the
   * short_factor ones. Empty for other rope types.
   */
  std::vector<float> ropeLongInvFreq() const;
  /**
   * dynamic (NTK): the inverse frequencies HF uses for a forward whose sequence reaches
   * `seqLen` positions (_compute_dynamic_ntk_parameters: base * (factor seqLen / L - (factor - 1))
   * ^ (d / (d - 2)) once seqLen > L = max_position_embeddings; ropeInvFreq() below that).
   */
  std::vector<float> ropeDynamicInvFreq(int seqLen) const;
  /**
   * What length-dependent RoPE scaling (HF dynamic_rope_update) picks for a forward whose sequence
   * length is `seqLen`: 0 = the fixed tables; 1 = longrope's long_factor (past
   * original_max_position_embeddings); seqLen = dynamic NTK's own base (past max_position_embeddings:
   * ropeDynamicInvFreq(seqLen)). Equal values rotate alike (the prefix cache keys on it).
   */
  int ropeLengthChoice(int seqLen) const;
};

/**
 * Parse and validate config.json text.
 * @param path used in messages.
 * Gemma3ForConditionalGeneration: the text_config is parsed (messages say "<path>: text_config:
 *   ..."), and the result is its language model's (multimodalText).
 * @throws Error (errors.h) "<path>: <field> ..." for a missing/invalid field, an unsupported
 *   architecture (MoE, multimodal other than Gemma3ForConditionalGeneration: the message lists
 *   kSupportedArchitectures), a Gemma3ForConditionalGeneration config without text_config, an
 *   activation the family does not use, or an unsupported rope_scaling type.
 */
ModelConfig parseModelConfig(const std::string& text, const std::string& path);

}  // namespace openlora
