// The engine's scheduler: continuous batching with chunked prefill over the paged KV cache,
// prefix caching and preemption by recompute. Follows vLLM V1 (vllm/v1/core/sched/scheduler.py,
// kv_cache_manager.py): one token budget per step (maxNumBatchedTokens), running sequences
// first (decodes, then unfinished prefill chunks), then waiting sequences first come first
// served; when blocks run out the newest running sequence is preempted: its blocks are freed and
// it goes back to the front of the waiting queue to recompute prompt + generated tokens later
// (its sampler, hence its RNG state, and its emitted tokens are kept). Ensemble members are
// scheduled together and sample in the same step. Engine thread only.
#include <algorithm>
#include <cstring>
#include <string>

#include "engine_sequence.h"

namespace openlora {

uint64_t Engine::adapterKey(const std::vector<ActiveLora>& loras) {
  uint64_t key = hashKvBlock(0x6f70656e6c6f7261ULL, nullptr, 0);  // the base model ("openlora")
  for (const ActiveLora& al : loras) {
    auto it = adapterGen_.find(al.adapter.get());
    uint64_t gen;
    if (it != adapterGen_.end() && !it->second.first.expired()) {
      gen = it->second.second;
    } else {
      // A new load (possibly at the address of a freed adapter): a new generation.
      if (adapterGen_.size() > size_t(4 * options_.maxLoras + 64)) {
        for (auto g = adapterGen_.begin(); g != adapterGen_.end();) g = g->second.first.expired() ? adapterGen_.erase(g) : std::next(g);
      }
      gen = ++nextAdapterGen_;
      adapterGen_[al.adapter.get()] = {al.adapter, gen};
    }
    uint32_t wbits;
    static_assert(sizeof(wbits) == sizeof(al.weight), "float is 32 bits");
    std::memcpy(&wbits, &al.weight, sizeof(wbits));
    const int32_t words[4] = {al.slot, int32_t(uint32_t(gen)), int32_t(uint32_t(gen >> 32)), int32_t(wbits)};
    key = hashKvBlock(key, words, 4);
  }
  return key;
}

uint64_t Engine::prefixSeed(const std::vector<ActiveLora>& loras, int promptLen) {
  const uint64_t key = adapterKey(loras);
  const int32_t choice = model_->config().ropeLengthChoice(promptLen);  // 0: the prompt's length changes nothing
  return choice == 0 ? key : hashKvBlock(key, &choice, 1);
}

int Engine::blocksNeeded(const Sequence& seq) const {
  const int bs = options_.blockSize;
  int perMember = (int(seq.tokens.size()) + bs - 1) / bs;
  // Sliding window on every layer: at most the window plus one step's chunk is held at a time.
  const int w = model_->config().kvWindow();
  if (w > 0) perMember = std::min(perMember, (w + options_.maxNumBatchedTokens) / bs + 2);
  return int(seq.members.size()) * perMember;
}

int Engine::lookupPrefix(Sequence& seq, Member& m) {
  SequenceKv& kv = *m.kv;
  BlockAllocator& alloc = kv_->allocator();
  if (!alloc.prefixCaching() || kv.numBlocks() > 0) return 0;
  const int bs = options_.blockSize;
  // NOTE(why): at least the last token is always computed, for its logits (vLLM caps hits at
  // num_tokens - 1 the same way).
  const int maxHits = (int(seq.tokens.size()) - 1) / bs;
  uint64_t parent = m.adapterKey;
  for (int b = 0; b < maxHits; b++) {
    const int32_t* toks = seq.tokens.data() + int64_t(b) * bs;
    const uint64_t h = hashKvBlock(parent, toks, bs);
    const int block = alloc.lookup(h, parent, toks);
    if (block < 0) break;
    kv.appendBlock(block);
    kv.blockHashes().push_back(h);
    parent = h;
  }
  kv.setLength(kv.numBlocks() * bs);
  return kv.length();
}

void Engine::registerFullBlocks(Sequence& seq, Member& m) {
  SequenceKv& kv = *m.kv;
  const int bs = options_.blockSize;
  std::vector<uint64_t>& hashes = kv.blockHashes();
  const size_t full = size_t(kv.length() / bs);
  while (hashes.size() < full) {
    const size_t i = hashes.size();
    const uint64_t parent = i == 0 ? m.adapterKey : hashes[i - 1];
    const int32_t* toks = seq.tokens.data() + int64_t(i) * bs;
    const uint64_t h = hashKvBlock(parent, toks, bs);
    kv_->allocator().registerFull(kv.blockTable()[i], h, parent, toks);
    hashes.push_back(h);
  }
}

void Engine::preempt(Sequence* seq, std::vector<PlanItem>* plan, int* budget) {
  for (Member& m : seq->members) m.kv->releaseAll();
  for (auto it = plan->begin(); it != plan->end(); ++it) {
    if (it->seq != seq) continue;
    for (int n : it->chunk) *budget += n;
    plan->erase(it);
    break;
  }
  auto it = std::find_if(running_.begin(), running_.end(), [&](const std::unique_ptr<Sequence>& s) { return s.get() == seq; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  preemptions_++;
}

void Engine::schedule(std::vector<PlanItem>* plan, std::vector<SequenceEvent>* events) {
  int budget = options_.maxNumBatchedTokens;
  const int totalBlocks = options_.numKvBlocks;
  // Tokens member m still has to compute: [members] (always >= 1 for a live sequence).
  auto remaining = [](const Sequence& s) {
    std::vector<int> need(s.members.size());
    for (size_t m = 0; m < s.members.size(); m++) need[m] = int(s.tokens.size()) - s.members[m].kv->length();
    return need;
  };

  // This step's chunks for `s` within `budget`: everything left when it fits (then the sequence
  // samples), else as much as fits short of each member's last token (no sampling yet).
  auto chunkFor = [&](const Sequence& s, PlanItem* item) {
    std::vector<int> need = remaining(s);
    int sum = 0;
    for (int n : need) sum += n;
    item->seq = const_cast<Sequence*>(&s);
    item->sample = sum <= budget;
    item->chunk = need;
    if (!item->sample) {
      int left = budget;
      for (int& n : item->chunk) {
        n = std::max(0, std::min(n - 1, left));
        left -= n;
      }
    }
    int total = 0;
    for (int n : item->chunk) total += n;
    return total;
  };
  auto grow = [&](Sequence& s, const PlanItem& item) {
    for (size_t m = 0; m < s.members.size(); m++) {
      SequenceKv& kv = *s.members[m].kv;
      if (!kv.grow(kv.length() + item.chunk[m])) return false;
    }
    return true;
  };
  auto tooBig = [&](Sequence& s) {
    return "the sequence needs " + std::to_string(blocksNeeded(s)) + " KV blocks (" + std::to_string(s.tokens.size()) + " tokens x " +
           std::to_string(s.members.size()) + " member(s), blockSize " + std::to_string(options_.blockSize) +
           ") but the whole KV cache has " + std::to_string(totalBlocks) + "; raise EngineOptions.kvCacheBytes or numKvBlocks";
  };

  // 1. Running sequences: decodes first (every member has exactly one token left), then the
  //    rest (unfinished prefill chunks), oldest first.
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < running_.size(); i++) {
      Sequence& s = *running_[i];
      if (s.held) continue;  // constrained, logits ready, waiting for its mask (constrained.cc)
      if (std::any_of(plan->begin(), plan->end(), [&](const PlanItem& p) { return p.seq == &s; })) continue;
      const std::vector<int> need = remaining(s);
      const bool decode = std::all_of(need.begin(), need.end(), [](int n) { return n == 1; });
      if (decode != (pass == 0)) continue;
      if (blocksNeeded(s) > totalBlocks) {
        events->push_back(finish(s, "error", tooBig(s)));
        running_.erase(running_.begin() + int64_t(i));
        i--;
        continue;
      }
      PlanItem item;
      const int tokens = chunkFor(s, &item);
      if (tokens == 0) continue;
      bool selfPreempted = false;
      while (!grow(s, item)) {
        // Out of blocks: preempt the newest running sequence (possibly this one).
        Sequence* victim = running_.back().get();
        preempt(victim, plan, &budget);
        if (victim == &s) {
          selfPreempted = true;
          break;
        }
      }
      if (selfPreempted) break;  // s was the newest: nothing after it is left to schedule
      budget -= tokens;
      plan->push_back(std::move(item));
    }
  }

  // 2. Waiting sequences, first come first served, while budget, sequence slots and blocks last.
  //    NOTE(why): admission never preempts (vLLM does the same); a preempted sequence sits at
  //    the front of the queue and is resumed before anything newer.
  int rows = 0;  // batch entries of the running sequences
  for (const auto& s : running_) rows += int(s->members.size());
  const ModelConfig& c = model_->config();
  for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0;) {
    Sequence& s = **it;
    if (s.held) {  // preempted while waiting for its mask: admitted once it has sampled
      ++it;
      continue;
    }
    const int members = int(s.members.size());
    if (rows + members > options_.maxNumSeqs) break;
    if (!s.sampler) {  // first admission (a preempted sequence keeps its sampler and RNG state)
      SamplingParams sp = s.req.sampling;
      sp.suppressIds = s.req.stopTokenIds;  // min_tokens masks the stop ids (sampler.h)
      if (sp.repetitionPenalty != 1.0f) sp.promptIds = s.req.prompt;  // repetition_penalty covers the prompt
      s.sampler = std::make_unique<Sampler>(std::move(sp), c.vocabSize);
      s.tokens = s.req.prompt;
      for (Member& m : s.members) {
        m.adapterKey = prefixSeed(m.loras, int(s.req.prompt.size()));
        m.kv = std::make_unique<SequenceKv>(kv_.get(), maxModelLen_, c.kvWindow());
      }
    }
    if (blocksNeeded(s) > totalBlocks) {
      events->push_back(finish(s, "error", tooBig(s)));
      it = waiting_.erase(it);
      continue;
    }
    int hits = 0;
    for (Member& m : s.members) hits += lookupPrefix(s, m);
    PlanItem item;
    const int tokens = chunkFor(s, &item);
    if (tokens == 0 || !grow(s, item)) {
      for (Member& m : s.members) m.kv->releaseAll();  // give back the hits too: they stay cached
      break;
    }
    prefixHitTokens_ += hits;
    budget -= tokens;
    rows += members;
    plan->push_back(std::move(item));
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
  }
}

}  // namespace openlora
