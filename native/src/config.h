// Model hyper-parameters from a Hugging Face config.json (Llama, Mistral, Qwen2).
#pragma once

#include <string>
#include <vector>

namespace openlora {

/** RoPE frequency scaling (HF `rope_scaling`). */
struct RopeScaling {
  enum class Kind { None, Linear, Llama3 };
  Kind kind = Kind::None;
  double factor = 1.0;
  // llama3 only (HF _compute_llama3_parameters):
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  double originalMaxPositionEmbeddings = 8192;
};

/** Everything the forward pass needs to know about the architecture. */
struct ModelConfig {
  std::string modelType;  // "llama" | "mistral" | "qwen2"
  int vocabSize = 0;
  int hiddenSize = 0;
  int intermediateSize = 0;
  int numHiddenLayers = 0;
  int numAttentionHeads = 0;
  int numKeyValueHeads = 0;  // default = numAttentionHeads
  int headDim = 0;           // default = hiddenSize / numAttentionHeads
  int maxPositionEmbeddings = 0;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  double rmsNormEps = 1e-6;
  bool tieWordEmbeddings = false;
  bool qkvBias = false;  // q/k/v projections have a bias (attention_bias, implied for qwen2)
  bool oBias = false;    // o_proj has a bias (attention_bias on llama/mistral; never on qwen2)
  bool mlpBias = false;  // gate/up/down have a bias

  int qDim() const { return numAttentionHeads * headDim; }
  int kvDim() const { return numKeyValueHeads * headDim; }

  /**
   * RoPE inverse frequencies, [headDim / 2], float32 as HF computes them
   * (`1 / theta^(2j/d)`, then the rope_scaling rule).
   */
  std::vector<float> ropeInvFreq() const;
};

/**
 * Parse and validate config.json text.
 * @param path used in messages.
 * @throws Error (errors.h) "<path>: <field> ..." for a missing/invalid field, an unsupported
 *   architecture, hidden_act other than silu, or an unsupported rope_scaling type.
 */
ModelConfig parseModelConfig(const std::string& text, const std::string& path);

}  // namespace openlora
