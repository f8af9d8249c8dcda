// The engine's side of constrained decoding (native/README.md "Constrained decoding"): JS
// advances its grammar matcher after each token event and sends the next allowed-token mask
// (setTokenMask); a constrained sequence never samples without the mask of its position. Its
// forward never waits: when its logits are ready before the mask, the sequence is *held* (its
// last-position logits kept, its KV and place untouched) and samples as soon as the mask
// arrives, before the next step's schedule. Unconstrained sequences are never delayed.
#include <algorithm>
#include <stdexcept>

#include "engine_sequence.h"
#include "token_mask.h"

namespace openlora {

void Engine::setTokenMask(int64_t seqId, std::vector<uint32_t> mask) {
  checkTokenMask(mask, model_->config().vocabSize, "tokenMask");
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;  // every sequence is finishing "cancelled"
  maskInbox_.emplace_back(seqId, std::move(mask));
  cv_.notify_one();
}

void Engine::takeMasks(const std::vector<PlanItem>& plan) {
  std::lock_guard<std::mutex> lock(mu_);
  if (maskInbox_.empty()) return;
  for (const PlanItem& p : plan) {
    Sequence& s = *p.seq;
    if (!p.sample || !s.req.constrained || s.hasMask) continue;
    int count = 0;
    auto hit = maskInbox_.end();
    for (auto it = maskInbox_.begin(); it != maskInbox_.end(); ++it) {
      if (it->first == s.id) {
        count++;
        hit = it;
      }
    }
    // NOTE(why): only exactly one mask is taken here; anything else (none yet, or two, a
    // protocol error) stays in the inbox for the loop's applyMasks, which may finish sequences
    // (this step's plan still points at them).
    if (count != 1) continue;
    s.mask = std::move(hit->second);
    s.hasMask = true;
    maskInbox_.erase(hit);
  }
}

void Engine::applyMasks(std::vector<std::pair<int64_t, std::vector<uint32_t>>>& masks, std::vector<SequenceEvent>* events) {
  auto find = [](auto& list, int64_t id) {
    return std::find_if(list.begin(), list.end(), [&](const std::unique_ptr<Sequence>& s) { return s->id == id; });
  };
  for (auto& [id, mask] : masks) {
    Sequence* s = nullptr;
    auto r = find(running_, id);
    auto w = find(waiting_, id);
    if (r != running_.end()) s = r->get();
    else if (w != waiting_.end()) s = w->get();
    if (!s) continue;  // finished (or cancelled) meanwhile: nothing to constrain
    std::string error;
    if (!s->req.constrained) {
      error = "setTokenMask: sequence " + std::to_string(id) + " was not added with constrained: true";
    } else if (s->hasMask) {
      error = "setTokenMask: sequence " + std::to_string(id) + " got a second mask before its next token was sampled (one mask per token)";
    }
    if (error.empty()) {
      s->mask = std::move(mask);
      s->hasMask = true;
      continue;
    }
    events->push_back(finish(*s, "error", error));
    if (r != running_.end()) running_.erase(r);
    else waiting_.erase(w);
  }
}

void Engine::sampleHeld(std::vector<SequenceEvent>* events) {
  const int V = model_->config().vocabSize;
  std::vector<const float*> rows;
  auto sampleList = [&](auto& list) {
    for (auto it = list.begin(); it != list.end();) {
      Sequence& s = **it;
      if (!s.held || !s.hasMask) {
        ++it;
        continue;
      }
      rows.clear();
      for (size_t m = 0; m < s.members.size(); m++) rows.push_back(s.heldLogits.data() + m * size_t(V));
      if (sampleAndEmit(s, rows, events)) {
        it = list.erase(it);
      } else {
        ++it;
      }
    }
  };
  sampleList(running_);
  sampleList(waiting_);  // held, then preempted: its KV is recomputed on readmission
}

}  // namespace openlora
