// The weights of the supported families' decoder (HF modeling_llama.py and its relatives: Mistral,
// Qwen2, Qwen3, Gemma 2, Gemma 3 text, Phi-3; config.h says what each changes): loading and the
// immutable weights only. The forwards over them live with their backend (cpu/forward.*, cuda/).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "hf_names.h"
#include "quant.h"

namespace openlora {

/**
 * Weights of one decoder layer. The seven linear layers are float32 or int8 (Linear, quant.h);
 * norms and biases stay float32. Bias vectors are empty when the config has none. Phi-3's fused
 * qkv_proj / gate_up_proj are stored split (exact). Gemma norms hold 1 + w (Gemma2RMSNorm).
 */
struct LayerWeights {
  std::vector<float> inputNorm;  // [hidden]
  Linear wq;                     // [qDim, hidden]
  std::vector<float> bq;         // [qDim] or empty
  Linear wk;                     // [kvDim, hidden]
  std::vector<float> bk;         // [kvDim] or empty
  Linear wv;                     // [kvDim, hidden]
  std::vector<float> bv;         // [kvDim] or empty
  Linear wo;                     // [hidden, qDim]
  std::vector<float> bo;         // [hidden] or empty
  std::vector<float> qNorm;      // [headDim] q_norm (Qwen3, Gemma 3) or empty
  std::vector<float> kNorm;      // [headDim] k_norm (Qwen3, Gemma 3) or empty
  std::vector<float> postNorm;   // [hidden] post_attention_layernorm: MLP input (Llama), attention output (Gemma)
  std::vector<float> preFfnNorm;   // [hidden] Gemma pre_feedforward_layernorm or empty
  std::vector<float> postFfnNorm;  // [hidden] Gemma post_feedforward_layernorm or empty
  Linear wGate;                  // [intermediate, hidden]
  std::vector<float> bGate;      // [intermediate] or empty
  Linear wUp;                    // [intermediate, hidden]
  std::vector<float> bUp;        // [intermediate] or empty
  Linear wDown;                  // [hidden, intermediate]
  std::vector<float> bDown;      // [hidden] or empty
};

/** A loaded model; immutable after load, so many threads may read it. */
class Model {
 public:
  /**
   * Load config.json and the safetensors weights of a Hugging Face model folder, checking every
   * shape against the config. A Gemma3ForConditionalGeneration checkpoint loads its language
   * model only (either textLayout(), found from the index / headers); its vision tower's tensors
   * stay unread in the mapped files. Linear layers, lm_head and the embedding keep BF16 checkpoints'
   * precision as bfloat16 (exact), anything else becomes float32 (quant.h makeLinear).
   * Memory: tensors are read from the mapped files 16 rows at a time straight into their packed
   * form, and each tensor's file pages are dropped from this process once packed, so the peak
   * resident set stays near the packed weights' size; a tied head and the embedding are one
   * matrix (embedding rows are gathered from it).
   * @param quant Int8 / Int4: storage of the linear layers, lm_head and embedding (quant.h
   *   Quantization); norms and biases stay float32.
   * @throws Error (errors.h) naming the file and field/tensor.
   */
  static std::shared_ptr<Model> load(const std::string& dir, Quantization quant = Quantization::None);

  /**
   * Fills `n` float32 values of the tensor with Hugging Face name `name` (e.g.
   * "model.layers.3.self_attn.q_proj.weight"), row-major in HF's shape.
   */
  using WeightFiller = std::function<void(const std::string& name, float* dst, int64_t n)>;
  /**
   * Build a model from a config and a filler instead of files (random-weight models of a given
   * shape for checks and benchmarks: openlora-cli bench --random-*). Same tensors as load();
   * lm_head is filled unless tieWordEmbeddings; biases only where the config has them.
   */
  static std::shared_ptr<Model> fromWeights(const ModelConfig& config, const WeightFiller& fill,
                                            Quantization quant = Quantization::None, const std::string& dtype = "F32");

  /** Storage of the decoder's linear layers. */
  Quantization quantization() const { return quant_; }
  /**
   * Where the checkpoint kept the text decoder (hf::TextLayout: "model" for ...ForCausalLM,
   * "language_model.model" or "model.language_model" for Gemma3ForConditionalGeneration); PEFT
   * adapters of this base name their modules under the same path. hf::kCausalLM for fromWeights.
   */
  const hf::TextLayout& textLayout() const { return layout_; }

  const ModelConfig& config() const { return config_; }
  /** Storage dtype of most weights on disk ("BF16", ...). */
  const std::string& storageDType() const { return dtype_; }

  // Read-only weight access for the backends' forwards (cpu/forward.cc, cuda/).
  /** embed_tokens [vocab, hidden]: lm_head itself when tiedHead(). */
  const Linear& embedding() const { return tiedHead_ ? head_ : embed_; }
  /** Embedding row of `token` widened (dequantized) to float32 into dst[hidden]. */
  void embedRow(int32_t token, float* dst) const { embedding().row(token, dst); }
  const LayerWeights& layer(int l) const { return layers_[size_t(l)]; }
  const std::vector<float>& finalNorm() const { return finalNorm_; }         // [hidden]
  /** lm_head [vocab, hidden], packed (also the embedding when tied). */
  const Linear& head() const { return head_; }
  /** Whether lm_head is embed_tokens (tie_word_embeddings, or a tied checkpoint without lm_head). */
  bool tiedHead() const { return tiedHead_; }
  const std::vector<float>& ropeInvFreq() const { return invFreq_; }         // [headDim / 2]
  /** Gemma 3 local layers' inverse frequencies, [headDim / 2] (config.h ropeLocalInvFreq). */
  const std::vector<float>& ropeLocalInvFreq() const { return invFreqLocal_; }
  /** longrope long_factor inverse frequencies, [headDim / 2], or empty (config.h ropeLongInvFreq). */
  const std::vector<float>& ropeLongInvFreq() const { return invFreqLong_; }
  /** Bytes of weights one forward step reads as stored here (embedding rows excluded). */
  int64_t weightBytes() const;
  /** Bytes of every weight held (weightBytes() plus an untied embedding). */
  int64_t residentBytes() const { return weightBytes() + embed_.bytes(); }

 private:
  /** Tensors by Hugging Face name: a checkpoint (shape-checked) or a WeightFiller. */
  struct WeightSource {
    /** The whole tensor as float32 (norms and biases: small). */
    std::function<std::vector<float>(const std::string& name, std::vector<int64_t> shape, const std::string& why)> get;
    /** A reader of the tensor's rows (checked against `shape` first), for the big matrices. */
    std::function<cpu::PackedMatrix::RowReader(const std::string& name, std::vector<int64_t> shape, const std::string& why)> rows;
    /** Called once a tensor is packed: its bytes are not read again (the file pages may go). */
    std::function<void(const std::string& name)> done;
    std::function<DType(const std::string& name)> dtype;
    std::function<bool(const std::string& name)> has;
  };
  /** Fill every weight from `src` for config_ (shared by load and fromWeights). */
  void build(const WeightSource& src, Quantization quant);

  ModelConfig config_;
  hf::TextLayout layout_ = hf::kCausalLM;
  std::string dtype_;
  Quantization quant_ = Quantization::None;
  std::vector<float> invFreq_;     // [headDim / 2] RoPE inverse frequencies
  std::vector<float> invFreqLocal_;  // [headDim / 2] Gemma 3 local layers' RoPE
  std::vector<float> invFreqLong_;   // [headDim / 2] longrope long_factor frequencies, or empty
  Linear embed_;                   // embed_tokens [vocab, hidden] when not tied (else empty: head_ is it)
  std::vector<LayerWeights> layers_;
  std::vector<float> finalNorm_;   // [hidden]
  Linear head_;                    // lm_head [vocab, hidden], packed (quant.h)
  bool tiedHead_ = false;
};

}  // namespace openlora
