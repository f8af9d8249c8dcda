// See engine.h.
#include "engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "engine_sequence.h"
#include "token_mask.h"

namespace openlora {

namespace {

/** An invalid_argument Error about SequenceParams.<field>. */
[[noreturn]] void invalid(const std::string& field, const std::string& msg) { invalidArgument("SequenceParams." + field, msg); }

void checkTokens(const std::vector<int32_t>& ids, int vocab, const char* field) {
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      const std::string f = std::string(field) + "[" + std::to_string(i) + "]";
      invalid(f, f + " = " + std::to_string(ids[i]) + " is out of range [0, " + std::to_string(vocab) + ")");
    }
  }
}

}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options, EventSink sink,
               std::unique_ptr<ForwardBackend> backend)
    : model_(std::move(model)),
      options_(options),
      sink_(std::move(sink)),
      slots_(options.maxLoras, options.maxLoraRank),
      backend_(backend ? std::move(backend) : makeCpuForward(model_, options.threads)) {
  const ModelConfig& c = model_->config();
  EngineOptions& o = options_;
  checkEngineOptions(o);
  const int64_t perBlock = KvCache::bytesPerBlock(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, o.blockSize, o.kvCacheDtype);
  if (o.maxModelLen > c.maxModelLen) {
    invalidArgument("EngineOptions.maxModelLen", "EngineOptions.maxModelLen (" + std::to_string(o.maxModelLen) + ") is above the model's context (" +
                                                     std::to_string(c.maxModelLen) + ", from config.json)");
  }
  const bool lenGiven = o.maxModelLen > 0;
  int64_t context = lenGiven ? o.maxModelLen : c.maxModelLen;
  const int64_t blocksPerSeq = (context + o.blockSize - 1) / o.blockSize;
  int64_t blocks = o.numKvBlocks;
  if (blocks <= 0) {
    int64_t bytes = o.kvCacheBytes;
    if (bytes <= 0) {
      // NOTE(why): like vLLM's gpu_memory_utilization, the default takes a fraction of the memory
      // the backend has left once the weights are in (one 8192-token sequence, the old floor for
      // big models, made 64 streams preempt each other); no more than every allowed sequence at
      // full context needs. A budget below one full-length sequence serves a shorter context
      // (below) rather than reserving more than the budget (an 8B model's 128k context in float32
      // is ~34 GB); with maxModelLen given, one sequence of it is the floor.
      const int64_t avail = backend_->memoryAvailableBytes();
      const int64_t budget = avail > 0 ? int64_t(o.kvCacheMemoryFraction * double(avail)) : engine_defaults::kAutoKvCacheCapBytes;
      bytes = std::min(int64_t(o.maxNumSeqs) * blocksPerSeq * perBlock, budget);
      if (lenGiven) bytes = std::max(bytes, blocksPerSeq * perBlock);
      bytes = std::max(bytes, perBlock);
    }
    blocks = bytes / perBlock;
    if (blocks < 1) {
      invalidArgument("EngineOptions.kvCacheBytes", "EngineOptions.kvCacheBytes (" + std::to_string(bytes) + ") is smaller than one KV block (" + std::to_string(perBlock) +
              " bytes: blockSize " + std::to_string(o.blockSize) + " x " + std::to_string(c.numHiddenLayers) + " layers x K,V x " +
              std::to_string(c.kvDim()) + (o.kvCacheDtype == DType::BF16 ? " bfloat16 values)" : " floats)"));
    }
  }
  if (blocks > engine_defaults::kNumKvBlocks.max) invalidArgument("EngineOptions.kvCacheBytes", "the KV cache would have " + std::to_string(blocks) + " blocks; at most 2^30 are supported");
  o.numKvBlocks = int(blocks);
  o.kvCacheBytes = blocks * perBlock;
  // The context served is at most what the whole KV pool holds (a longer sequence could never run).
  // With a sliding window on every layer a sequence holds at most its window plus one step's chunk
  // (blocksNeeded): a pool of that many blocks serves the whole context.
  const int window = c.kvWindow();
  const int64_t windowBlocks = window > 0 ? (int64_t(window) + o.maxNumBatchedTokens) / o.blockSize + 2 : std::numeric_limits<int64_t>::max();
  const int64_t capacity = blocks >= windowBlocks ? context : blocks * o.blockSize;
  if (capacity < context) {
    if (lenGiven) {
      invalidArgument("EngineOptions.maxModelLen", "EngineOptions.maxModelLen (" + std::to_string(context) + " tokens) needs " + std::to_string(blocksPerSeq) +
                                                       " KV blocks but the KV cache has " + std::to_string(blocks) + "; raise kvCacheBytes / numKvBlocks or lower maxModelLen");
    }
    context = capacity;
  }
  maxModelLen_ = int(context);
  o.maxModelLen = maxModelLen_;
  kv_ = std::make_unique<KvCache>(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, o.numKvBlocks, o.blockSize, o.enablePrefixCaching,
                                  o.kvCacheDtype);
  backend_->reserveAdapters(o.maxLoras, o.maxLoraRank);
  backend_->attachKv(*kv_);
  publishStats();
  thread_ = std::thread([this] { threadMain(); });
}

Engine::~Engine() {
  shutdown(nullptr);
  join();
}

void Engine::validate(const SequenceRequest& r) const {
  const ModelConfig& c = model_->config();
  if (r.prompt.empty()) invalid("promptIds", "promptIds must not be empty");
  checkTokens(r.prompt, c.vocabSize, "promptIds");
  if (int64_t(r.prompt.size()) >= maxModelLen_) {
    invalid("promptIds", "the prompt has " + std::to_string(r.prompt.size()) + " tokens; the model's context (max_model_len) is " +
            std::to_string(maxModelLen_) + ", which leaves no room to generate");
  }
  if (r.maxTokens < 1) invalid("maxTokens", "maxTokens must be >= 1, got " + std::to_string(r.maxTokens));
  if (r.sampling.minTokens < 0) invalid("minTokens", "minTokens must be >= 0, got " + std::to_string(r.sampling.minTokens));
  const SamplingParams& s = r.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0) invalid("temperature", "temperature must be a finite number >= 0");
  if (!(s.topP > 0 && s.topP <= 1)) invalid("topP", "topP must be in (0, 1]");
  if (s.topK < -1) invalid("topK", "topK must be >= -1 (0 or -1 disable it)");
  if (!std::isfinite(s.presencePenalty) || !std::isfinite(s.frequencyPenalty)) invalid(std::isfinite(s.presencePenalty) ? "frequencyPenalty" : "presencePenalty", "penalties must be finite");
  if (!(std::isfinite(s.repetitionPenalty) && s.repetitionPenalty > 0)) invalid("repetitionPenalty", "repetitionPenalty must be a finite number > 0");
  if (!(s.minP >= 0 && s.minP <= 1)) invalid("minP", "minP must be in [0, 1]");
  for (const auto& [tok, bias] : s.logitBias) {
    if (tok < 0 || tok >= c.vocabSize) invalid("logitBias", "logitBias token " + std::to_string(tok) + " is out of range [0, " + std::to_string(c.vocabSize) + ")");
    if (!std::isfinite(bias)) invalid("logitBias", "logitBias for token " + std::to_string(tok) + " must be finite");
  }
  for (int tok : r.stopTokenIds) {
    if (tok < 0 || tok >= c.vocabSize) invalid("stopTokenIds", "stopTokenIds entry " + std::to_string(tok) + " is out of range [0, " + std::to_string(c.vocabSize) + ")");
  }
  if (r.logprobs < -1 || r.logprobs > engine_defaults::kMaxLogprobs) {
    invalid("logprobs", "logprobs must be in [-1, " + std::to_string(engine_defaults::kMaxLogprobs) + "], got " + std::to_string(r.logprobs));
  }
  if (!r.tokenMask.empty() || r.constrained) {
    if (!r.constrained) invalid("tokenMask", "tokenMask is only accepted with constrained: true");
    if (!r.tokenMask.empty()) checkTokenMask(r.tokenMask, c.vocabSize, "SequenceParams.tokenMask");
  }
  if (!r.hasEnsemble) return;
  const int n = int(r.ensemble.size());
  if (!r.adapters.empty()) invalid("adapters", "adapters must be empty when ensemble is set (each ensemble member has its own adapters)");
  if (n < engine_defaults::kMinEnsembleMembers || n > engine_defaults::kMaxEnsembleMembers) {
    invalid("ensemble", "ensemble must have " + std::to_string(engine_defaults::kMinEnsembleMembers) + " to " +
                            std::to_string(engine_defaults::kMaxEnsembleMembers) + " members, got " + std::to_string(n));
  }
  if (n > options_.maxNumSeqs) {
    invalid("ensemble", "ensemble has " + std::to_string(n) + " members but the engine decodes at most " + std::to_string(options_.maxNumSeqs) +
            " sequences per step (maxNumSeqs)");
  }
  for (int i = 0; i < n; i++) {
    const float w = r.ensemble[size_t(i)].weight;
    if (!std::isfinite(w) || w <= 0) invalid("ensemble[" + std::to_string(i) + "].weight", "ensemble[" + std::to_string(i) + "].weight must be a finite number > 0, got " + std::to_string(w));
  }
}

std::vector<Engine::Member> Engine::acquireMembers(const SequenceRequest& req) {
  std::vector<Member> members;
  if (!req.hasEnsemble) {
    members.emplace_back();
    members.back().loras = slots_.acquire(req.adapters);  // throws for unknown slots; pins the rest
    return members;
  }
  for (size_t i = 0; i < req.ensemble.size(); i++) {
    try {
      Member m;
      m.loras = slots_.acquire(req.ensemble[i].adapters);
      members.push_back(std::move(m));
    } catch (const std::exception& ex) {
      releaseMembers(members);
      raise(errorCodeOf(ex), "ensemble[" + std::to_string(i) + "].adapters: " + ex.what(), "SequenceParams.ensemble[" + std::to_string(i) + "].adapters");
    }
  }
  return members;
}

void Engine::releaseMembers(std::vector<Member>& members) {
  for (Member& m : members) {
    slots_.release(m.loras);
    m.loras.clear();
    m.kv.reset();  // frees the KV cache now, not when the Sequence object goes
  }
}

int64_t Engine::addSequence(SequenceRequest req) {
  validate(req);
  auto seq = std::make_unique<Sequence>();
  seq->members = acquireMembers(req);
  if (req.hasEnsemble) {
    double total = 0;
    for (const auto& m : req.ensemble) total += double(m.weight);
    for (const auto& m : req.ensemble) seq->weights.push_back(double(m.weight) / total);
  } else {
    seq->weights = {1.0};
  }
  seq->hasMask = !req.tokenMask.empty();
  seq->mask = std::move(req.tokenMask);
  seq->req = std::move(req);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    releaseMembers(seq->members);
    raise(ErrorCode::Disposed, "the engine is disposed");
  }
  seq->id = nextId_++;
  const int64_t id = seq->id;
  inbox_.push_back(std::move(seq));
  waitingCount_++;
  cv_.notify_one();
  return id;
}

void Engine::cancel(int64_t seqId) {
  std::lock_guard<std::mutex> lock(mu_);
  ends_.emplace(seqId, "cancelled");  // the first of cancel / stop wins
  cv_.notify_one();
}

void Engine::stop(int64_t seqId) {
  std::lock_guard<std::mutex> lock(mu_);
  ends_.emplace(seqId, "stop");
  cv_.notify_one();
}

void Engine::forward(std::vector<int32_t> prompt, const std::vector<std::pair<int, float>>& adapters,
                     std::function<void(ForwardOutput&&)> done, int promptTopN, int64_t cancelId, int nextTopN) {
  const ModelConfig& c = model_->config();
  if (prompt.empty()) invalid("promptIds", "promptIds must not be empty");
  if (promptTopN > engine_defaults::kMaxLogprobs) {
    invalid("promptTopN", "promptTopN must be at most " + std::to_string(engine_defaults::kMaxLogprobs) + ", got " + std::to_string(promptTopN));
  }
  if (nextTopN < 0 || nextTopN > engine_defaults::kMaxLogprobs || (nextTopN > 0 && promptTopN < 0)) {
    invalid("nextTopN", "nextTopN must be in 0.." + std::to_string(engine_defaults::kMaxLogprobs) + " and needs promptTopN >= 0, got " + std::to_string(nextTopN));
  }
  checkTokens(prompt, c.vocabSize, "promptIds");
  if (int64_t(prompt.size()) > maxModelLen_) {
    invalid("promptIds", "the prompt has " + std::to_string(prompt.size()) + " tokens; the context (max_model_len) is " + std::to_string(maxModelLen_));
  }
  auto job = std::make_unique<ForwardJob>();
  job->loras = slots_.acquire(adapters);
  job->prompt = std::move(prompt);
  job->done = std::move(done);
  job->promptTopN = std::max(-1, promptTopN);
  job->nextTopN = nextTopN;
  job->cancelId = cancelId;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    slots_.release(job->loras);
    raise(ErrorCode::Disposed, "the engine is disposed");
  }
  forwards_.push_back(std::move(job));
  cv_.notify_one();
}

void Engine::cancelForward(int64_t cancelId) {
  if (cancelId <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  cancelledForwards_.insert(cancelId);
  cv_.notify_one();
}

void Engine::shutdown(std::function<void()> done) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  onStopped_ = std::move(done);
  cv_.notify_one();
}

void Engine::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.running = runningCount_.load();
  s.scoring = scoringCount_.load();
  s.waiting = waitingCount_.load();
  s.slotsUsed = slots_.used();
  s.steps = steps_.load();
  s.kvBlocksTotal = options_.numKvBlocks;
  s.kvBlocksFree = kvFree_.load();
  s.kvBlocksCached = kvCached_.load();
  s.prefixHitTokens = prefixHitTokens_.load();
  s.preemptions = preemptions_.load();
  s.weightBytes = model_->residentBytes();
  s.kvCacheBytes = options_.kvCacheBytes;
  s.kvUsedBytes = options_.numKvBlocks > 0 ? options_.kvCacheBytes / options_.numKvBlocks * (int64_t(options_.numKvBlocks) - s.kvBlocksFree) : 0;
  s.adapterBytes = slots_.loadedBytes();
  return s;
}

void Engine::publishStats() {
  kvFree_ = kv_->allocator().numFree();
  kvCached_ = kv_->allocator().numCached();
}

SequenceEvent Engine::finish(Sequence& seq, const char* reason, const std::string& error) {
  SequenceEvent ev;
  ev.seqId = seq.id;
  ev.finishReason = reason;
  ev.error = error;
  ev.promptTokens = int(seq.req.prompt.size());
  ev.completionTokens = int(seq.generated.size());
  releaseMembers(seq.members);
  return ev;
}

bool Engine::step(std::vector<SequenceEvent>* events) {
  const ModelConfig& c = model_->config();
  std::vector<PlanItem> plan;
  schedule(&plan, events);
  if (plan.empty()) return false;
  std::vector<BatchEntry> batch;
  std::vector<std::vector<int>> rowOf(plan.size());  // [plan][members] logits row, -1 when not in the batch
  for (size_t p = 0; p < plan.size(); p++) {
    Sequence& s = *plan[p].seq;
    rowOf[p].assign(s.members.size(), -1);
    for (size_t m = 0; m < s.members.size(); m++) {
      if (plan[p].chunk[m] == 0) continue;
      SequenceKv* kv = s.members[m].kv.get();
      BatchEntry e;
      e.kv = kv;
      e.loras = &s.members[m].loras;
      e.startPos = kv->length();
      e.tokens = s.tokens.data() + kv->length();
      e.numTokens = plan[p].chunk[m];
      e.ropeLen = int(s.tokens.size() - s.generated.size());  // the prompt's length (batch.h)
      rowOf[p][m] = int(batch.size());
      batch.push_back(e);
    }
  }
  try {
    backend_->forward(batch, &logits_);
  } catch (const std::exception& ex) {
    for (auto& s : running_) events->push_back(finish(*s, "error", std::string("forward failed: ") + ex.what()));
    running_.clear();
    return true;
  }
  steps_++;
  if (kv_->allocator().prefixCaching()) {
    for (const PlanItem& item : plan) {
      for (Member& m : item.seq->members) registerFullBlocks(*item.seq, m);
    }
  }
  // Sliding window on every layer: blocks no later query reads go back to the pool, so the KV a
  // sequence holds stays bounded however long it runs.
  for (const PlanItem& item : plan) {
    for (Member& m : item.seq->members) m.kv->dropOutsideWindow();
  }
  const int V = c.vocabSize;
  // NOTE(why): masks sent while this step's forward ran (for tokens of the previous step) are
  // taken now, so a constrained sequence whose JS matcher keeps up never misses a step.
  if (std::any_of(plan.begin(), plan.end(), [](const PlanItem& p) { return p.sample && p.seq->req.constrained && !p.seq->hasMask; })) {
    takeMasks(plan);
  }
  std::set<const Sequence*> finished;
  std::vector<const float*> rows;  // [members] last-position logits [vocab] of one sequence
  for (size_t p = 0; p < plan.size(); p++) {
    if (!plan[p].sample) continue;
    Sequence& s = *plan[p].seq;
    rows.clear();
    for (size_t m = 0; m < s.members.size(); m++) rows.push_back(logits_.data() + size_t(rowOf[p][m]) * size_t(V));
    if (s.req.constrained && !s.hasMask) {  // hold: keep the logits until the mask arrives (sampleHeld)
      s.heldLogits.resize(s.members.size() * size_t(V));
      for (size_t m = 0; m < rows.size(); m++) std::copy(rows[m], rows[m] + V, s.heldLogits.data() + m * size_t(V));
      s.held = true;
      continue;
    }
    if (sampleAndEmit(s, rows, events)) finished.insert(&s);
  }
  if (!finished.empty()) {
    running_.erase(std::remove_if(running_.begin(), running_.end(), [&](const std::unique_ptr<Sequence>& s) { return finished.count(s.get()) > 0; }),
                   running_.end());
  }
  return true;
}

bool Engine::sampleAndEmit(Sequence& s, const std::vector<const float*>& rows, std::vector<SequenceEvent>* events) {
  const ModelConfig& c = model_->config();
  const int V = c.vocabSize;
  const bool mixed = s.members.size() > 1;
  const uint32_t* mask = s.req.constrained ? s.mask.data() : nullptr;
  const int token = mixed ? s.sampler->sampleMixture(rows, s.weights, mask) : s.sampler->sample(rows[0], mask);
  s.hasMask = false;  // one mask per sampled token
  s.held = false;
  s.sampler->observe(token);
  s.generated.push_back(token);
  s.tokens.push_back(token);
  SequenceEvent ev;
  ev.seqId = s.id;
  ev.token = token;
  if (s.req.logprobs >= 0) {  // the model's own (unmasked, unprocessed) distribution
    ev.hasLogprob = true;
    ev.hasTop = s.req.logprobs > 0;
    std::vector<TokenLogprob>* top = ev.hasTop ? &ev.top : nullptr;
    ev.logprob = mixed ? mixtureLogprobs(rows, s.weights, V, token, s.req.logprobs, top)
                       : computeLogprobs(rows[0], V, token, s.req.logprobs, top);
  }
  const char* reason = nullptr;
  const int total = int(s.tokens.size());
  if (std::find(s.req.stopTokenIds.begin(), s.req.stopTokenIds.end(), token) != s.req.stopTokenIds.end()) reason = "stop";
  else if (int(s.generated.size()) >= s.req.maxTokens) reason = "length";
  else if (total >= maxModelLen_) reason = "length";
  if (reason) {
    SequenceEvent fin = finish(s, reason);
    ev.finishReason = fin.finishReason;
    ev.promptTokens = fin.promptTokens;
    ev.completionTokens = fin.completionTokens;
  }
  events->push_back(std::move(ev));
  return reason != nullptr;
}

void Engine::runForward(ForwardJob& job) {
  ForwardOutput out;
  try {
    const ModelConfig& c = model_->config();
    // NOTE(why): a private pool sized for this prompt, so a one-shot forward never competes
    // with (or preempts) the running sequences for blocks.
    const int bs = options_.blockSize;
    KvCache cache(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, int((job.prompt.size() + bs - 1) / bs), bs, false,
                  options_.kvCacheDtype);
    backend_->attachKv(cache);
    struct Detach {  // the backend's storage for this pool goes with it, even on a throw
      ForwardBackend& b;
      KvCache& c;
      ~Detach() { b.detachKv(c); }
    } detach{*backend_, cache};
    SequenceKv kv(&cache, maxModelLen_, c.kvWindow());
    if (!kv.grow(int(job.prompt.size()))) throw std::logic_error("private KV pool too small");
    BatchEntry e;
    e.tokens = job.prompt.data();
    e.numTokens = int(job.prompt.size());
    e.kv = &kv;
    e.loras = &job.loras;
    e.allLogits = true;
    backend_->forward({e}, &out.logits);
    out.numTokens = e.numTokens;
    out.vocab = c.vocabSize;
  } catch (const std::exception& ex) {
    out = ForwardOutput();
    out.error = std::string("forward failed: ") + ex.what();
    out.errorCode = errorCodeOf(ex);
  }
  slots_.release(job.loras);
  job.done(std::move(out));
}

void Engine::processCommands(std::deque<std::unique_ptr<ForwardJob>>& forwards, const std::map<int64_t, const char*>& ends,
                             const std::set<int64_t>& cancelledForwards, bool stopping, std::vector<SequenceEvent>* events) {
  auto reasonFor = [&](const Sequence& s) -> const char* {
    if (stopping) return "cancelled";
    auto it = ends.find(s.id);
    return it == ends.end() ? nullptr : it->second;
  };
  auto dropCancelled = [&](auto& list) {
    for (auto it = list.begin(); it != list.end();) {
      if (const char* reason = reasonFor(**it)) {
        events->push_back(finish(**it, reason));
        it = list.erase(it);
      } else {
        ++it;
      }
    }
  };
  dropCancelled(waiting_);
  dropCancelled(running_);
  dropCancelledScoring(cancelledForwards);
  while (!forwards.empty()) {
    std::unique_ptr<ForwardJob> job = std::move(forwards.front());
    forwards.pop_front();
    if (job->cancelId > 0 && cancelledForwards.count(job->cancelId)) {
      slots_.release(job->loras);
      ForwardOutput out;
      out.error = "cancelled";
      job->done(std::move(out));
    } else if (stopping) {
      slots_.release(job->loras);
      ForwardOutput out;
      out.error = "the engine was disposed before the forward pass ran";
      out.errorCode = ErrorCode::Disposed;
      job->done(std::move(out));
    } else if (job->promptTopN >= 0) {
      startScoring(std::move(job));
    } else {
      runForward(*job);
    }
  }
  if (stopping) failScoring("the engine was disposed before the prompt was scored", ErrorCode::Disposed);
}

void Engine::failAll(const std::string& error, std::deque<std::unique_ptr<ForwardJob>>* forwards,
                     std::vector<SequenceEvent>* events) {
  for (auto& job : *forwards) {
    slots_.release(job->loras);
    ForwardOutput out;
    out.error = error;
    job->done(std::move(out));
  }
  forwards->clear();
  failScoring(error, ErrorCode::Internal);
  for (auto& s : running_) events->push_back(finish(*s, "error", error));
  for (auto& s : waiting_) events->push_back(finish(*s, "error", error));
  running_.clear();
  waiting_.clear();
}

void Engine::threadMain() {
  cpu::lowerThreadPriority(options_.threadNice);
  for (;;) {
    std::deque<std::unique_ptr<ForwardJob>> forwards;
    std::map<int64_t, const char*> ends;
    std::set<int64_t> cancelledForwards;
    std::vector<std::pair<int64_t, std::vector<uint32_t>>> masks;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !inbox_.empty() || !forwards_.empty() || !ends_.empty() || !maskInbox_.empty() || !scoring_.empty() ||
               !cancelledForwards_.empty() ||
               (!idle_ && (!running_.empty() || !waiting_.empty()));
      });
      while (!inbox_.empty()) {
        waiting_.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      forwards.swap(forwards_);
      ends.swap(ends_);
      cancelledForwards.swap(cancelledForwards_);
      masks.swap(maskInbox_);
      stopping = stopping_;
    }
    std::vector<SequenceEvent> events;
    try {
      processCommands(forwards, ends, cancelledForwards, stopping, &events);
      idle_ = true;
      if (!stopping) {
        scoreChunk();  // one chunk of rows of a prompt being scored, then a step: neither waits long for the other
        applyMasks(masks, &events);
        sampleHeld(&events);
        if (!running_.empty() || !waiting_.empty()) idle_ = !step(&events);
      }
    } catch (const std::exception& ex) {
      // NOTE(why): an escaping exception would std::terminate the whole process; fail the
      // affected sequences instead and keep the loop alive.
      failAll(std::string("engine step failed: ") + ex.what(), &forwards, &events);
    } catch (...) {
      failAll("engine step failed: unknown error", &forwards, &events);
    }
    runningCount_ = int(running_.size());
    scoringCount_ = int(scoring_.size());
    publishStats();
    {
      std::lock_guard<std::mutex> lock(mu_);
      waitingCount_ = int(waiting_.size() + inbox_.size());
    }
    if (!events.empty() && sink_) sink_(std::move(events));
    if (stopping) {
      std::function<void()> done;
      {
        std::lock_guard<std::mutex> lock(mu_);
        done = std::move(onStopped_);
        // Sequences added between the swap and here were refused (stopping_ was set).
      }
      if (done) done();
      return;
    }
  }
}

}  // namespace openlora
