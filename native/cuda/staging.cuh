// One step's inputs on the device (staging.cu): the StepPlan's (src/step_plan.h) token ids,
// positions, slot mapping, block tables, context lengths, cu_seqlens, logit-row gather list, the
// global layers' RoPE tables with each row's table index, and
// every (layer, module)'s LoRA term arrays, packed into one pinned host arena of 4-byte words and
// copied with one cudaMemcpyAsync. Plain host C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../src/step_plan.h"
#include "device_memory.cuh"

namespace openlora::cuda {

/**
 * Where one (layer, module)'s LoRA terms of this step sit in the arena (word offsets). A term is
 * one (row, slot, scale); terms are sorted by slot (stable), so runs of one slot are the SGMV
 * segments; rowPtr / rowTerms index the terms of each row (CSR) for the expand.
 */
struct LoraLaunch {
  int numTerms = 0, numSegs = 0, maxSegLen = 0;
  bool bgmv = false;  // decode-only step with at most one term per row
  size_t termRows = 0, termSlot = 0, termScale = 0, segStart = 0, segSlot = 0, rowPtr = 0, rowTerms = 0;
};

/** The staging arena of one step (engine thread; buffers grow on demand and are reused). */
class StepStaging {
 public:
  /**
   * Pack `plan` for a pool of `poolBlocks` blocks of `blockSize` positions and adapter slots
   * [0, loraSlots). `invFreq` / `invFreqLong` are the model's RoPE tables of the global layers
   * ([rotaryDim / 2]; invFreqLong empty without longrope); `maxWindow` is the widest sliding
   * window when every layer has one, else 0: only then may a table hold -1 (a block dropped
   * wholly before every query's window, kv_cache.h).
   * Rows [0, numDecode()) are the leading single-token entries (decode attention kernel); the
   * other entries go to the prefill kernel (cu_seqlens relative to row numDecode()).
   * @throws std::runtime_error for a block id outside the pool (or a dropped one a query still
   *   sees) or an adapter slot without a pool.
   */
  void build(const StepPlan& plan, int poolBlocks, int blockSize, int loraSlots, const std::vector<float>& invFreq,
             const std::vector<float>& invFreqLong, int maxWindow);
  /** Copy the arena to the device on `stream` (after the previous step's copy was consumed: one stream). */
  void upload(cudaStream_t stream);

  /** A device pointer to the arena word `wordOff` (valid after upload()). */
  template <typename U>
  U* dev(size_t wordOff) const {
    return reinterpret_cast<U*>(static_cast<uint32_t*>(dev_.p) + wordOff);
  }
  const LoraLaunch& lora(int layer, int module) const { return lora_[size_t(layer) * kNumLoraModules + size_t(module)]; }

  int numDecode() const { return numDecode_; }
  int maxContextDecode() const { return maxCtxDecode_; }
  int maxQueryLen() const { return maxQLen_; }
  /** The most LoRA terms of one (layer, module): rows of the shrink's fp32 scratch. */
  int maxTerms() const { return maxTerms_; }

  // Word offsets of the step arrays.
  size_t slots = 0;   // [T] int64 slot mapping (even word)
  size_t ids = 0;     // [T] int32
  size_t pos = 0;     // [T] int32
  size_t tables = 0;  // [E, maxBlocks] int32
  size_t ctx = 0;     // [E] int32
  size_t cuq = 0;     // [E - numDecode + 1] int32 cu_seqlens of the prefill entries
  size_t gather = 0;  // [R] int32 rows that need logits
  size_t ropeTables = 0;  // [2 + dynamic, rotaryDim / 2] fp32: invFreq, invFreqLong (or invFreq again), the plan's dynamic tables
  size_t ropeIndex = 0;   // [T] int32: each row's table (its entry's StepPlan::ropeTables())

 private:
  size_t reserveWords(size_t n, bool align8);

  std::vector<uint32_t> host_;     // the arena being built (words)
  std::vector<LoraLaunch> lora_;   // [layers * 7]
  PinnedBuf pinned_;
  DevBuf dev_;
  int numDecode_ = 0, maxCtxDecode_ = 1, maxQLen_ = 1, maxTerms_ = 0;
  // Scratch of the LoRA grouping.
  struct Term {
    int row, slot;
    float scale;
  };
  std::vector<Term> terms_;
  std::vector<int32_t> rowCount_, segStart_, segSlot_, fill_;
};

}  // namespace openlora::cuda
