// See step_plan.h.
#include "step_plan.h"

#include <algorithm>
#include <string>

#include "errors.h"

namespace openlora {

void StepPlan::build(const std::vector<BatchEntry>& batch, const ModelConfig& c) {
  const size_t E = batch.size();
  const int numLayers = c.numHiddenLayers, vocab = c.vocabSize;
  numLayers_ = numLayers;
  ropeHalf_ = c.rotaryDim / 2;
  ropeTables_.clear();
  dynamicInvFreq_.clear();
  tokens_.clear();
  positions_.clear();
  logitRows_.clear();
  slotMapping_.clear();
  entryRows_.assign(1, 0);
  contextLens_.clear();
  maxBlocks_ = 1;
  anyLora_ = false;
  for (const BatchEntry& e : batch) {
    if (!e.kv || e.numTokens < 1 || !e.tokens) raise(ErrorCode::Internal, "step plan: a batch entry has no tokens or no KV");
    const int ctx = e.startPos + e.numTokens;
    const int bs = e.kv->blockSize();
    const int need = (ctx + bs - 1) / bs;
    if (e.kv->numBlocks() < need) {
      raise(ErrorCode::Internal, "step plan: block table of " + std::to_string(e.kv->numBlocks()) + " blocks does not cover " +
                                     std::to_string(ctx) + " positions");
    }
    maxBlocks_ = std::max(maxBlocks_, need);
    const int32_t* table = e.kv->blockTable();
    const int row0 = int(tokens_.size());
    for (int i = 0; i < e.numTokens; i++) {
      const int32_t id = e.tokens[i];
      if (id < 0 || id >= vocab) raise(ErrorCode::Internal, "step plan: token id " + std::to_string(id) + " outside the vocabulary");
      const int p = e.startPos + i;
      tokens_.push_back(id);
      positions_.push_back(p);
      slotMapping_.push_back(int64_t(table[p / bs]) * bs + p % bs);
    }
    for (int i = e.allLogits ? 0 : e.numTokens - 1; i < e.numTokens; i++) logitRows_.push_back(row0 + i);
    entryRows_.push_back(row0 + e.numTokens);
    contextLens_.push_back(ctx);
    // HF dynamic_rope_update: longrope switches to long_factor once the sequence is longer than
    // original_max_position_embeddings; dynamic NTK recomputes the base past max_position_embeddings.
    // The length is the forward's last position + 1, or the whole prompt's for a prefill chunk
    // (BatchEntry::ropeLen: what one HF forward over the prompt picks).
    const int choice = c.ropeLengthChoice(std::max(ctx, e.ropeLen));
    if (choice == 0) {
      ropeTables_.push_back(kRopeDefault);
    } else if (c.ropeScaling.kind == RopeScaling::Kind::LongRope) {
      ropeTables_.push_back(kRopeLong);
    } else {  // dynamic NTK: choice is the sequence length its base is computed for
      ropeTables_.push_back(kRopeDynamic + int32_t(dynamicInvFreq_.size() / size_t(ropeHalf_)));
      const std::vector<float> inv = c.ropeDynamicInvFreq(choice);
      dynamicInvFreq_.insert(dynamicInvFreq_.end(), inv.begin(), inv.end());
    }
    anyLora_ = anyLora_ || (e.loras && !e.loras->empty());
  }
  blockTables_.assign(E * size_t(maxBlocks_), -1);
  for (size_t s = 0; s < E; s++) {
    const BatchEntry& e = batch[s];
    const int need = (contextLens_[s] + e.kv->blockSize() - 1) / e.kv->blockSize();
    std::copy_n(e.kv->blockTable(), need, blockTables_.begin() + int64_t(s) * maxBlocks_);
  }
  // LoRA spans of every (layer, module): PEFT y += B(A(x)) * scaling, times the adapter's
  // weight in the set (cat semantics); an adapter that does not target a module has no span.
  spans_.clear();
  spanStart_.assign(size_t(numLayers) * kNumLoraModules + 1, 0);
  for (int l = 0; anyLora_ && l < numLayers; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      for (size_t s = 0; s < E; s++) {
        const BatchEntry& e = batch[s];
        if (!e.loras) continue;
        for (const ActiveLora& al : *e.loras) {
          const LoraPair* p = al.adapter ? al.adapter->get(l, LoraModule(m)) : nullptr;
          if (!p) continue;
          spans_.push_back(LoraSpan{entryRows_[s], entryRows_[s + 1], al.slot, p, al.weight * p->scaling});
        }
      }
      spanStart_[index(l, LoraModule(m)) + 1] = int32_t(spans_.size());
    }
  }
}

}  // namespace openlora
