// See engine.h.
#include "engine.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace openlora {

/** One forward-pass row group of a sequence: a plain sequence has one, an ensemble 2..16. */
struct Engine::Member {
  std::vector<ActiveLora> loras;      // pinned adapter slots
  std::unique_ptr<SequenceKv> kv;     // created at admission
};

/** A live sequence (engine thread, after leaving the inbox). */
struct Engine::Sequence {
  int64_t id = 0;
  SequenceRequest req;
  std::vector<Member> members;        // [members]; each is one BatchEntry of every step
  std::vector<double> weights;        // [members] normalised mixture weights (ensembles)
  std::unique_ptr<Sampler> sampler;
  std::vector<int32_t> generated;     // [completionTokens]
  bool prefilled = false;
};

/** A pending Engine::forward call. */
struct Engine::ForwardJob {
  std::vector<int32_t> prompt;  // [numTokens]
  std::vector<ActiveLora> loras;
  std::function<void(ForwardOutput&&)> done;
};

namespace {

[[noreturn]] void invalid(const std::string& msg) { throw std::runtime_error(msg); }

void checkTokens(const std::vector<int32_t>& ids, int vocab, const char* field) {
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      invalid(std::string(field) + "[" + std::to_string(i) + "] = " + std::to_string(ids[i]) + " is out of range [0, " +
              std::to_string(vocab) + ")");
    }
  }
}

}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options, EventSink sink)
    : model_(std::move(model)),
      options_(options),
      sink_(std::move(sink)),
      slots_(options.maxLoras, options.maxLoraRank),
      pool_(std::make_unique<cpu::ThreadPool>(options.threads)) {
  thread_ = std::thread([this] { threadMain(); });
}

Engine::~Engine() {
  shutdown(nullptr);
  join();
}

void Engine::validate(const SequenceRequest& r) const {
  const ModelConfig& c = model_->config();
  if (r.prompt.empty()) invalid("promptIds must not be empty");
  checkTokens(r.prompt, c.vocabSize, "promptIds");
  if (int64_t(r.prompt.size()) >= c.maxPositionEmbeddings) {
    invalid("the prompt has " + std::to_string(r.prompt.size()) + " tokens; the model's context (max_position_embeddings) is " +
            std::to_string(c.maxPositionEmbeddings) + ", which leaves no room to generate");
  }
  if (r.maxTokens < 1) invalid("maxTokens must be >= 1, got " + std::to_string(r.maxTokens));
  const SamplingParams& s = r.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0) invalid("temperature must be a finite number >= 0");
  if (!(s.topP > 0 && s.topP <= 1)) invalid("topP must be in (0, 1]");
  if (s.topK < -1) invalid("topK must be >= -1 (0 or -1 disable it)");
  if (!std::isfinite(s.presencePenalty) || !std::isfinite(s.frequencyPenalty)) invalid("penalties must be finite");
  for (const auto& [tok, bias] : s.logitBias) {
    if (tok < 0 || tok >= c.vocabSize) invalid("logitBias token " + std::to_string(tok) + " is out of range [0, " + std::to_string(c.vocabSize) + ")");
    if (!std::isfinite(bias)) invalid("logitBias for token " + std::to_string(tok) + " must be finite");
  }
  for (int tok : r.stopTokenIds) {
    if (tok < 0 || tok >= c.vocabSize) invalid("stopTokenIds entry " + std::to_string(tok) + " is out of range [0, " + std::to_string(c.vocabSize) + ")");
  }
  if (r.logprobs < -1 || r.logprobs > 20) invalid("logprobs must be in [-1, 20], got " + std::to_string(r.logprobs));
  if (!r.hasEnsemble) return;
  const int n = int(r.ensemble.size());
  if (!r.adapters.empty()) invalid("adapters must be empty when ensemble is set (each ensemble member has its own adapters)");
  if (n < 2 || n > 16) invalid("ensemble must have 2 to 16 members, got " + std::to_string(n));
  if (n > options_.maxNumSeqs) {
    invalid("ensemble has " + std::to_string(n) + " members but the engine decodes at most " + std::to_string(options_.maxNumSeqs) +
            " sequences per step (maxNumSeqs)");
  }
  for (int i = 0; i < n; i++) {
    const float w = r.ensemble[size_t(i)].weight;
    if (!std::isfinite(w) || w <= 0) invalid("ensemble[" + std::to_string(i) + "].weight must be a finite number > 0, got " + std::to_string(w));
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
      invalid("ensemble[" + std::to_string(i) + "].adapters: " + ex.what());
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
  seq->req = std::move(req);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    releaseMembers(seq->members);
    invalid("the engine is disposed");
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
  cancels_.insert(seqId);
  cv_.notify_one();
}

void Engine::forward(std::vector<int32_t> prompt, const std::vector<std::pair<int, float>>& adapters,
                     std::function<void(ForwardOutput&&)> done) {
  const ModelConfig& c = model_->config();
  if (prompt.empty()) invalid("promptIds must not be empty");
  checkTokens(prompt, c.vocabSize, "promptIds");
  if (int64_t(prompt.size()) > c.maxPositionEmbeddings) {
    invalid("the prompt has " + std::to_string(prompt.size()) + " tokens; max_position_embeddings is " + std::to_string(c.maxPositionEmbeddings));
  }
  auto job = std::make_unique<ForwardJob>();
  job->loras = slots_.acquire(adapters);
  job->prompt = std::move(prompt);
  job->done = std::move(done);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    slots_.release(job->loras);
    invalid("the engine is disposed");
  }
  forwards_.push_back(std::move(job));
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
  s.waiting = waitingCount_.load();
  s.slotsUsed = slots_.used();
  s.steps = steps_.load();
  return s;
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

void Engine::admit() {
  int rows = 0;  // batch entries (ensemble members count one each)
  for (const auto& s : running_) rows += int(s->members.size());
  int64_t tokens = rows;  // one decode token each
  bool admittedAny = false;
  while (!waiting_.empty()) {
    Sequence& s = *waiting_.front();
    const int members = int(s.members.size());
    // NOTE(why): all members of an ensemble are admitted together or not at all (validate()
    // keeps an ensemble within maxNumSeqs, so it always fits once the batch drains).
    if (rows + members > options_.maxNumSeqs) break;
    const int64_t need = int64_t(s.req.prompt.size()) * members;
    // NOTE(why): a step's prompt tokens are bounded so one huge batch cannot stall decodes for
    // long; a single prompt larger than the budget still runs (alone with the decodes).
    if (admittedAny && tokens + need > options_.maxBatchTokens) break;
    const ModelConfig& c = model_->config();
    for (Member& m : s.members) m.kv = std::make_unique<SequenceKv>(c.numHiddenLayers, c.kvDim(), c.maxPositionEmbeddings);
    s.sampler = std::make_unique<Sampler>(s.req.sampling, c.vocabSize);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    rows += members;
    tokens += need;
    admittedAny = true;
  }
}

void Engine::step(std::vector<SequenceEvent>* events) {
  const ModelConfig& c = model_->config();
  std::vector<BatchEntry> batch;
  batch.reserve(running_.size());
  for (auto& s : running_) {
    for (Member& m : s->members) {
      BatchEntry e;
      e.kv = m.kv.get();
      e.loras = &m.loras;
      e.startPos = m.kv->length();
      if (!s->prefilled) {
        e.tokens = s->req.prompt.data();
        e.numTokens = int(s->req.prompt.size());
      } else {
        e.tokens = &s->generated.back();
        e.numTokens = 1;
      }
      batch.push_back(e);
    }
  }
  try {
    model_->forward(batch, *pool_, ws_, &logits_);
  } catch (const std::exception& ex) {
    for (auto& s : running_) events->push_back(finish(*s, "error", std::string("forward failed: ") + ex.what()));
    running_.clear();
    return;
  }
  steps_++;
  const int V = c.vocabSize;
  std::vector<std::unique_ptr<Sequence>> still;
  std::vector<const float*> rows;  // [members] last-position logits [vocab] of one sequence
  size_t nextRow = 0;
  for (size_t i = 0; i < running_.size(); i++) {
    Sequence& s = *running_[i];
    rows.clear();
    for (size_t m = 0; m < s.members.size(); m++) rows.push_back(logits_.data() + (nextRow++) * size_t(V));
    const bool mixed = s.members.size() > 1;
    const int token = mixed ? s.sampler->sampleMixture(rows, s.weights) : s.sampler->sample(rows[0]);
    s.sampler->observe(token);
    s.generated.push_back(token);
    s.prefilled = true;
    SequenceEvent ev;
    ev.seqId = s.id;
    ev.token = token;
    if (s.req.logprobs >= 0) {
      ev.hasLogprob = true;
      ev.hasTop = s.req.logprobs > 0;
      std::vector<TokenLogprob>* top = ev.hasTop ? &ev.top : nullptr;
      ev.logprob = mixed ? mixtureLogprobs(rows, s.weights, V, token, s.req.logprobs, top)
                         : computeLogprobs(rows[0], V, token, s.req.logprobs, top);
    }
    const char* reason = nullptr;
    const int total = int(s.req.prompt.size() + s.generated.size());
    if (std::find(s.req.stopTokenIds.begin(), s.req.stopTokenIds.end(), token) != s.req.stopTokenIds.end()) reason = "stop";
    else if (int(s.generated.size()) >= s.req.maxTokens) reason = "length";
    else if (total >= c.maxPositionEmbeddings) reason = "length";
    if (reason) {
      SequenceEvent fin = finish(s, reason);
      ev.finishReason = fin.finishReason;
      ev.promptTokens = fin.promptTokens;
      ev.completionTokens = fin.completionTokens;
    } else {
      still.push_back(std::move(running_[i]));
    }
    events->push_back(std::move(ev));
  }
  running_ = std::move(still);
}

void Engine::runForward(ForwardJob& job) {
  ForwardOutput out;
  try {
    const ModelConfig& c = model_->config();
    SequenceKv kv(c.numHiddenLayers, c.kvDim(), c.maxPositionEmbeddings);
    BatchEntry e;
    e.tokens = job.prompt.data();
    e.numTokens = int(job.prompt.size());
    e.kv = &kv;
    e.loras = &job.loras;
    e.allLogits = true;
    model_->forward({e}, *pool_, ws_, &out.logits);
    out.numTokens = e.numTokens;
    out.vocab = c.vocabSize;
  } catch (const std::exception& ex) {
    out = ForwardOutput();
    out.error = std::string("forward failed: ") + ex.what();
  }
  slots_.release(job.loras);
  job.done(std::move(out));
}

void Engine::processCommands(std::deque<std::unique_ptr<ForwardJob>>& forwards, const std::set<int64_t>& cancels,
                             bool stopping, std::vector<SequenceEvent>* events) {
  auto cancelled = [&](const Sequence& s) { return stopping || cancels.count(s.id) > 0; };
  auto dropCancelled = [&](auto& list) {
    for (auto it = list.begin(); it != list.end();) {
      if (cancelled(**it)) {
        events->push_back(finish(**it, "cancelled"));
        it = list.erase(it);
      } else {
        ++it;
      }
    }
  };
  dropCancelled(waiting_);
  dropCancelled(running_);
  while (!forwards.empty()) {
    std::unique_ptr<ForwardJob> job = std::move(forwards.front());
    forwards.pop_front();
    if (stopping) {
      slots_.release(job->loras);
      ForwardOutput out;
      out.error = "the engine was disposed before the forward pass ran";
      job->done(std::move(out));
    } else {
      runForward(*job);
    }
  }
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
  for (auto& s : running_) events->push_back(finish(*s, "error", error));
  for (auto& s : waiting_) events->push_back(finish(*s, "error", error));
  running_.clear();
  waiting_.clear();
}

void Engine::threadMain() {
  for (;;) {
    std::deque<std::unique_ptr<ForwardJob>> forwards;
    std::set<int64_t> cancels;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !inbox_.empty() || !forwards_.empty() || !cancels_.empty() || !running_.empty() || !waiting_.empty();
      });
      while (!inbox_.empty()) {
        waiting_.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      forwards.swap(forwards_);
      cancels.swap(cancels_);
      stopping = stopping_;
    }
    std::vector<SequenceEvent> events;
    try {
      processCommands(forwards, cancels, stopping, &events);
      if (!stopping) {
        admit();
        if (!running_.empty()) step(&events);
      }
    } catch (const std::exception& ex) {
      // NOTE(why): an escaping exception would std::terminate the whole process; fail the
      // affected sequences instead and keep the loop alive.
      failAll(std::string("engine step failed: ") + ex.what(), &forwards, &events);
    } catch (...) {
      failAll("engine step failed: unknown error", &forwards, &events);
    }
    runningCount_ = int(running_.size());
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
