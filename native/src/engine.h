// The engine: a native thread running the continuous-batching step loop over one Model, with a
// paged KV cache, prefix caching, chunked prefill and preemption by recompute (vLLM V1's
// scheduler and KV cache manager; S-LoRA's many-adapter batching).
//
// Threading: the public methods are called from the JS thread and only touch the command queue
// (under mu_) and the thread-safe AdapterSlots. Everything else (the running/waiting lists, KV
// caches, samplers, the thread pool, the workspace) belongs to the engine thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend.h"
#include "engine_options.h"
#include "errors.h"
#include "kv_cache.h"
#include "lora.h"
#include "model.h"
#include "sampler.h"

namespace openlora {

/** One ensemble member (EnsembleMember of native/types.ts). */
struct EnsembleMemberRequest {
  std::vector<std::pair<int, float>> adapters;   // (slot, weight)
  float weight = 1.0f;                           // mixture weight w_i (> 0; normalised at admission)
};

/** One sequence to generate for (SequenceParams of native/types.ts). */
struct SequenceRequest {
  std::vector<int32_t> prompt;                   // [promptLen] token ids
  std::vector<std::pair<int, float>> adapters;   // (slot, weight)
  bool hasEnsemble = false;                      // SequenceParams.ensemble was given
  std::vector<EnsembleMemberRequest> ensemble;   // [members] (2..16) when hasEnsemble
  int maxTokens = engine_defaults::kDefaultMaxTokens;
  SamplingParams sampling;
  std::vector<int> stopTokenIds;
  int logprobs = -1;  // -1 none; 0 the chosen token's; k > 0 also the top k (k <= 20)
  // Constrained decoding (token_mask.h, native/README.md): every sampled token needs an
  // allowed-token mask for its position; `tokenMask` is the first one ([ceil(vocab/32)] words,
  // empty = supply it with setTokenMask), the rest come through setTokenMask.
  bool constrained = false;
  std::vector<uint32_t> tokenMask;
};

/** One step's news about one sequence (SequenceEvent of native/types.ts). */
struct SequenceEvent {
  int64_t seqId = 0;
  int token = -1;               // -1: finish-only event
  bool hasLogprob = false;
  float logprob = 0;
  bool hasTop = false;
  std::vector<TokenLogprob> top;
  std::string finishReason;     // empty while running; "stop" | "length" | "cancelled" | "error"
  std::string error;
  int promptTokens = 0;
  int completionTokens = 0;
};

/**
 * Result of Engine::forward: logits of every position (promptTopN < 0), or the prompt's token
 * logprobs (promptTopN >= 0: vLLM's prompt_logprobs), or an error.
 */
struct ForwardOutput {
  std::vector<float> logits;  // [numTokens, vocab] (promptTopN < 0)
  // promptTopN >= 0: position i in [0, numTokens - 1) gives log_softmax(logits_i) at prompt[i + 1]
  // (raw logits, as computeLogprobs) and its topN most likely tokens (most likely first, ties to
  // the lower id); the first prompt token has none.
  std::vector<float> tokenLogprobs;  // [numTokens - 1]
  std::vector<int32_t> tokenRanks;   // [numTokens - 1] 1 + the tokens more likely than prompt[i + 1] (vLLM's rank)
  std::vector<int32_t> topIds;       // [numTokens - 1, topN]
  std::vector<float> topLogprobs;    // [numTokens - 1, topN]
  // nextTopN > 0: the nextTopN most likely tokens after the whole prompt and their logprobs (raw
  // logits, as a generated token's), most likely first: a greedy first token without a prefill.
  std::vector<int32_t> nextTopIds;     // [nextTopN]
  std::vector<float> nextTopLogprobs;  // [nextTopN]
  int topN = 0;
  int numTokens = 0;
  int vocab = 0;
  std::string error;          // non-empty on failure
  ErrorCode errorCode = ErrorCode::Internal;  // why, when error is set
};

/** Engine counters. */
struct EngineStats {
  int running = 0;
  int scoring = 0;             // prompts being scored (prompt logprobs: Engine::forward with promptTopN >= 0)
  int waiting = 0;
  int slotsUsed = 0;
  int64_t steps = 0;
  int kvBlocksTotal = 0;       // blocks in the pool
  int kvBlocksFree = 0;        // blocks with no reference and no cached prefix
  int kvBlocksCached = 0;      // blocks with no reference holding a cached prefix (evictable)
  int64_t prefixHitTokens = 0; // prompt/recompute tokens served from the prefix cache
  int64_t preemptions = 0;     // times a running sequence was preempted (blocks freed, recomputed later)
  // Memory by part, bytes (host storage; the CUDA backend's device copies are not counted here).
  int64_t weightBytes = 0;     // the model's weights as stored (Model::residentBytes)
  int64_t kvCacheBytes = 0;    // the KV pool as sized (its pages become resident as blocks are first used)
  int64_t kvUsedBytes = 0;     // blocks held by sequences or keeping a cached prefix
  int64_t adapterBytes = 0;    // adapters in loaded slots
};

class Engine {
 public:
  /** Receives each step's events on the engine thread (the N-API layer forwards them to JS). */
  using EventSink = std::function<void(std::vector<SequenceEvent>&&)>;

  /**
   * Sizes the KV pool and starts the engine thread. Pool size: options.numKvBlocks when > 0,
   * else options.kvCacheBytes / bytesPerBlock when > 0, else options.kvCacheMemoryFraction of
   * the backend's available memory (ForwardBackend::memoryAvailableBytes), at most maxNumSeqs
   * full-length sequences and never below one. @throws Error (errors.h) for inconsistent options (named).
   * @param backend the compute backend (weights already uploaded); nullptr = the CPU forward on
   *   options.threads threads. The engine sizes its adapter pools and attaches its KV pool.
   */
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options, EventSink sink,
         std::unique_ptr<ForwardBackend> backend = nullptr);
  /** Stops the thread if still running (pending sequences finish "cancelled"). */
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Model& model() const { return *model_; }
  const EngineOptions& options() const { return options_; }
  /** The context served (tokens): the model's, or EngineOptions.maxModelLen, at most what the KV pool holds. */
  int maxModelLen() const { return maxModelLen_; }
  AdapterSlots& slots() { return slots_; }
  /** The compute backend ("cpu" | "cuda"). */
  const char* backendName() const { return backend_->name(); }
  /**
   * Copy a loaded adapter into the backend's slot (call after slots().reserve(), before
   * install(); any thread). CPU: nothing to do. @throws Error (errors.h) on a device error.
   */
  void uploadAdapter(int slot, const LoraAdapter& adapter) { backend_->uploadAdapter(slot, adapter); }

  /**
   * Validate and queue a sequence; returns its id (>= 1) at once. An ensemble request becomes
   * one Sequence with one member (own KV cache and adapter set, one batch entry each) per
   * ensemble member; its members are admitted, stepped, cancelled and freed together.
   * @throws Error (errors.h) naming the bad field (empty prompt, id out of range, unknown slot, ...).
   */
  int64_t addSequence(SequenceRequest req);
  /** Finish a sequence "cancelled" at the next step and free its KV cache; unknown ids are ignored. */
  void cancel(int64_t seqId);
  /**
   * Finish a sequence "stop" at the next step without sampling another token (a constrained
   * sequence whose grammar has terminated) and free its KV cache; unknown ids are ignored.
   */
  void stop(int64_t seqId);
  /**
   * The allowed-token mask for the next token of a constrained sequence (token_mask.h layout,
   * [ceil(vocab/32)] words); one per sampled token, sent after the previous token's event.
   * The sequence never samples without it: if its logits are ready first they are kept and it
   * samples when the mask arrives (native/README.md). Unknown / finished ids are ignored; a mask
   * for an unconstrained sequence, or a second one before the next token, finishes it "error".
   * @throws Error invalid_argument (errors.h) for a mask of the wrong length or with no allowed token.
   */
  void setTokenMask(int64_t seqId, std::vector<uint32_t> mask);
  /**
   * All-position logits for `prompt` with an adapter set (promptTopN < 0: run whole between two
   * steps), or its prompt logprobs with the top `promptTopN` (0..20) alternatives of each position
   * (ForwardOutput; prompt_scoring.cc: one chunk of rows per loop of the engine thread, between
   * steps, so their memory stays [chunk, vocab] floats), in a private KV pool.
   * With `nextTopN` > 0 (prompt logprobs only) the row after the prompt runs too and gives the
   * nextTopN most likely next tokens (ForwardOutput::nextTopIds).
   * `done` is called on the engine thread. @throws synchronously for invalid ids / slots / promptTopN / nextTopN.
   */
  void forward(std::vector<int32_t> prompt, const std::vector<std::pair<int, float>>& adapters,
               std::function<void(ForwardOutput&&)> done, int promptTopN = -1, int64_t cancelId = 0, int nextTopN = 0);
  /**
   * Drop the forward / prompt scoring queued with `cancelId` (> 0) before it runs its next chunk
   * (a client that went away): `done` gets the error "cancelled" and its pool and adapters are
   * freed. Unknown or finished ids are ignored.
   */
  void cancelForward(int64_t cancelId);
  /**
   * Ask the thread to stop: every pending sequence finishes "cancelled" (one last event batch),
   * pending forwards fail, then `done` runs on the engine thread and the thread exits. Call join()
   * afterwards. Further calls are ignored.
   */
  void shutdown(std::function<void()> done);
  /** Wait for the engine thread to exit (after shutdown). */
  void join();
  EngineStats stats() const;

 private:
  struct Member;
  struct Sequence;
  struct ForwardJob;
  struct PlanItem;

  void threadMain();
  void validate(const SequenceRequest& req) const;
  /**
   * Apply cancels (and the stop) to the waiting/running lists, drop cancelled forwards and
   * scoring jobs, then run queued forwards (prompt-logprobs ones join scoring_).
   */
  void processCommands(std::deque<std::unique_ptr<ForwardJob>>& forwards, const std::map<int64_t, const char*>& ends,
                       const std::set<int64_t>& cancelledForwards, bool stopping, std::vector<SequenceEvent>* events);
  /**
   * During a step, after the forward (constrained.cc): take the one arrived mask of each planned
   * constrained sequence that samples and has none; leaves every other mask in the inbox.
   */
  void takeMasks(const std::vector<PlanItem>& plan);
  /** Hand masks to their sequences; a mask for an unconstrained sequence or a second one finishes it "error" (constrained.cc). */
  void applyMasks(std::vector<std::pair<int64_t, std::vector<uint32_t>>>& masks, std::vector<SequenceEvent>* events);
  /** Sample every held sequence whose mask has arrived, from its kept logits (constrained.cc). */
  void sampleHeld(std::vector<SequenceEvent>* events);
  /**
   * Sample the next token of `seq` from its members' last-position logits (with its mask when
   * constrained), record it and push its event. @returns true when the sequence finished (its
   * members are released; the caller removes it from its list).
   */
  bool sampleAndEmit(Sequence& seq, const std::vector<const float*>& rows, std::vector<SequenceEvent>* events);
  /** Fail the unprocessed forwards and finish every waiting and running sequence with "error". */
  void failAll(const std::string& error, std::deque<std::unique_ptr<ForwardJob>>* forwards, std::vector<SequenceEvent>* events);
  /** Pin every member's adapter set; releases what it pinned before throwing (naming ensemble[i]). */
  std::vector<Member> acquireMembers(const SequenceRequest& req);
  void releaseMembers(std::vector<Member>& members);
  /**
   * Decide this step's work (scheduler.cc): running decodes first, then running prefill chunks,
   * then waiting sequences first come first served, within maxNumBatchedTokens and maxNumSeqs;
   * grows block tables, preempting the newest running sequences when blocks run out.
   */
  void schedule(std::vector<PlanItem>* plan, std::vector<SequenceEvent>* events);
  /** Free a running sequence's blocks and put it at the front of the waiting queue (recompute). */
  void preempt(Sequence* seq, std::vector<PlanItem>* plan, int* budget);
  /** Take prefix-cache hits for a member that holds no blocks; returns the tokens hit. */
  int lookupPrefix(Sequence& seq, Member& m);
  /** Register the member's newly filled blocks in the prefix cache. */
  void registerFullBlocks(Sequence& seq, Member& m);
  /** Prefix-cache chain seed of an adapter set: (slot, load generation, weight) of each adapter. */
  uint64_t adapterKey(const std::vector<ActiveLora>& loras);
  /**
   * The prefix-cache chain seed of a member: adapterKey, plus, for RoPE scaling that depends on
   * the sequence length (longrope's factor choice, dynamic NTK's base; BatchEntry::ropeLen), what
   * the prompt's length selects, so keys rotated for one choice are never reused under another.
   */
  uint64_t prefixSeed(const std::vector<ActiveLora>& loras, int promptLen);
  /** KV blocks a sequence needs at its current length (all members, no sharing assumed). */
  int blocksNeeded(const Sequence& seq) const;
  /** One scheduling + forward + sampling step. @returns false when nothing could be scheduled. */
  bool step(std::vector<SequenceEvent>* events);
  void publishStats();
  void runForward(ForwardJob& job);
  /** Queue a prompt-logprobs job on scoring_ (prompt_scoring.cc). */
  void startScoring(std::unique_ptr<ForwardJob> job);
  /** Make the front scoring job's output arrays and private KV pool (attached to the backend). @throws on allocation / device errors. */
  void openScoring(ForwardJob& job);
  /** Run the next chunk of rows of the first scoring job; finish it (done) after its last chunk or on an error. */
  void scoreChunk();
  /** Finish a scoring job taken off scoring_ with `out`: free its pool (detached from the backend) and adapters, then done(out). */
  void endScoring(std::unique_ptr<ForwardJob> job, ForwardOutput&& out);
  /** End the scoring jobs whose cancelId is in `cancelled` with the error "cancelled". */
  void dropCancelledScoring(const std::set<int64_t>& cancelled);
  /** Fail every scoring job (done with `error`, `code`), freeing their pools and adapters. */
  void failScoring(const std::string& error, ErrorCode code);
  SequenceEvent finish(Sequence& seq, const char* reason, const std::string& error = "");

  std::shared_ptr<const Model> model_;
  EngineOptions options_;
  int maxModelLen_ = 0;  // resolved in the constructor (maxModelLen())
  EventSink sink_;
  AdapterSlots slots_;

  // Shared with the JS thread, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> inbox_;
  std::deque<std::unique_ptr<ForwardJob>> forwards_;
  std::map<int64_t, const char*> ends_;  // seqId -> "cancelled" | "stop" (cancel / stop)
  std::vector<std::pair<int64_t, std::vector<uint32_t>>> maskInbox_;  // setTokenMask, in call order
  std::set<int64_t> cancelledForwards_;  // cancelForward ids
  bool stopping_ = false;
  std::function<void()> onStopped_;
  int64_t nextId_ = 1;

  // Engine thread only (uploadAdapter excepted, see there).
  std::unique_ptr<ForwardBackend> backend_;  // before kv_: the pool detaches from it
  std::unique_ptr<KvCache> kv_;  // before the sequence lists: their block tables release into it
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_;  // [rows, vocab] of the last step
  std::deque<std::unique_ptr<ForwardJob>> scoring_;  // prompt-logprobs jobs in progress, first come first served
  bool idle_ = false;          // the last step scheduled nothing: wait for a command before stepping again
  // Adapter object -> load generation: every load (even into the same slot) is a new object,
  // so a reloaded slot never matches KV cached for its previous adapter.
  std::unordered_map<const LoraAdapter*, std::pair<std::weak_ptr<const LoraAdapter>, uint64_t>> adapterGen_;
  uint64_t nextAdapterGen_ = 0;

  std::atomic<int> runningCount_{0};
  std::atomic<int> scoringCount_{0};
  std::atomic<int> waitingCount_{0};
  std::atomic<int64_t> steps_{0};
  std::atomic<int> kvFree_{0};
  std::atomic<int> kvCached_{0};
  std::atomic<int64_t> prefixHitTokens_{0};
  std::atomic<int64_t> preemptions_{0};
  std::thread thread_;
};

}  // namespace openlora
