// The backend-neutral plan of one forward step, built once per step from the engine's batch
// (batch.h) and read by every backend's forward (cpu/forward.cc, cuda/forward.cu): the step's
// rows (token ids, positions, which rows need logits), each entry's context and block table,
// vLLM's slot mapping, which RoPE frequencies each entry uses, and per (layer, module) the LoRA spans (which rows use which adapter pair
// with which factor). The grouping of LoRA terms that each backend's kernels want (cpu::LoraBatch
// groups by pair; the CUDA staging sorts terms by slot) starts from these spans.
#pragma once

#include <cstdint>
#include <vector>

#include "batch.h"
#include "config.h"
#include "hf_names.h"

namespace openlora {

/**
 * Rows [rowBegin, rowEnd) of the step use one adapter pair for one (layer, module):
 * y[row] += scale * B (A x[row]), scale = the adapter's weight in the set * PEFT scaling
 * (lora_alpha / r, or / sqrt(r) for rsLoRA).
 */
struct LoraSpan {
  int rowBegin = 0, rowEnd = 0;
  int slot = -1;                  // ActiveLora::slot (device backends index their slot pools by it)
  const LoraPair* pair = nullptr; // host A [rank, in] / B^T [rank, out] (the CPU reads these)
  float scale = 0.0f;
};

/** One step's plan. build() once per step; the vectors keep their capacity across steps. */
class StepPlan {
 public:
  /** RopeTable of an entry: the model's ropeInvFreq(); longrope's long_factor table; 2 + j: dynamicInvFreq(j). */
  static constexpr int kRopeDefault = 0, kRopeLong = 1, kRopeDynamic = 2;

  /**
   * Fill the plan from `batch` for a model of config `c` (layers, vocabulary, RoPE scaling).
   * Entry e covers rows [entryRow(e), entryRow(e + 1)); its rows are positions startPos ..
   * startPos + numTokens - 1.
   * @throws Error (errors.h, internal: the engine built a bad batch) for an entry without tokens or KV, a token id
   *   outside [0, vocab), or a block table that does not cover the entry's positions.
   */
  void build(const std::vector<BatchEntry>& batch, const ModelConfig& c);

  int numEntries() const { return int(contextLens_.size()); }
  /** Layers of the model the plan was built for (the range of spans()). */
  int numLayers() const { return numLayers_; }
  /** T: rows (tokens) of the step. */
  int numRows() const { return int(tokens_.size()); }
  /** R: rows that need logits (every row of an allLogits entry, else its last). */
  int numLogitRows() const { return int(logitRows_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }       // [T] token ids
  const std::vector<int32_t>& positions() const { return positions_; } // [T] absolute positions
  const std::vector<int32_t>& entryRows() const { return entryRows_; } // [E + 1] first row of each entry, then T
  const std::vector<int32_t>& contextLens() const { return contextLens_; }  // [E] startPos + numTokens
  const std::vector<int32_t>& logitRows() const { return logitRows_; }      // [R] rows whose logits are returned, in order
  /** [T] int64 slot of each row's key/value in its pool: block_id * blockSize + position % blockSize. */
  const std::vector<int64_t>& slotMapping() const { return slotMapping_; }
  /** Blocks the longest entry's context needs: the row length of blockTables(). */
  int maxBlocks() const { return maxBlocks_; }
  /**
   * [E, maxBlocks()] int32 block ids, each entry's table padded with -1. Ids stay -1 where the
   * sequence dropped a block wholly outside every layer's sliding window (kv_cache.h).
   */
  const std::vector<int32_t>& blockTables() const { return blockTables_; }
  /**
   * [E] which inverse frequencies the entry's global (non-local) layers rotate with: HF
   * dynamic_rope_update with seq_len = max(the entry's last position + 1, BatchEntry::ropeLen).
   * longrope: long_factor once
   * seq_len > original_max_position_embeddings (kRopeLong); dynamic NTK: a base recomputed from
   * seq_len once it passes max_position_embeddings (kRopeDynamic + j); else kRopeDefault. Gemma 3's
   * local layers always use the model's ropeLocalInvFreq() with mscale 1.
   */
  const std::vector<int32_t>& ropeTables() const { return ropeTables_; }
  /** Dynamic-NTK table j, [rotaryDim / 2] float32 (ModelConfig::ropeDynamicInvFreq of its entry's seq_len). */
  const float* dynamicInvFreq(int j) const { return dynamicInvFreq_.data() + size_t(j) * size_t(ropeHalf_); }
  /** Dynamic-NTK tables of this step, [count, rotaryDim / 2] float32. */
  const std::vector<float>& dynamicInvFreqs() const { return dynamicInvFreq_; }
  /** Whether any entry has an adapter set (else every spans() is empty). */
  bool anyLora() const { return anyLora_; }
  /** The spans of (layer, module), in entry order, then the order of each entry's adapter set. */
  const LoraSpan* spansBegin(int layer, LoraModule m) const { return spans_.data() + spanStart_[index(layer, m)]; }
  const LoraSpan* spansEnd(int layer, LoraModule m) const { return spans_.data() + spanStart_[index(layer, m) + 1]; }
  /** Spans of (layer, module). */
  int numSpans(int layer, LoraModule m) const { return spanStart_[index(layer, m) + 1] - spanStart_[index(layer, m)]; }

 private:
  static size_t index(int layer, LoraModule m) { return size_t(layer) * kNumLoraModules + size_t(m); }

  std::vector<int32_t> tokens_, positions_, entryRows_, contextLens_, logitRows_, blockTables_, ropeTables_;
  std::vector<float> dynamicInvFreq_;
  int ropeHalf_ = 0;
  std::vector<int64_t> slotMapping_;
  int maxBlocks_ = 1, numLayers_ = 0;
  bool anyLora_ = false;
  std::vector<LoraSpan> spans_;
  std::vector<int32_t> spanStart_;  // [layers * 7 + 1] CSR over spans_
};

}  // namespace openlora
