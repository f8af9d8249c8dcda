// Engine-internal state of one live sequence, shared by engine.cc (step loop, sampling) and
// scheduler.cc (admission, chunked prefill, preemption), and of a pending forward / prompt
// scoring job (prompt_scoring.cc). Engine thread only.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine.h"

namespace openlora {

/** One forward-pass row group of a sequence: a plain sequence has one, an ensemble 2..16. */
struct Engine::Member {
  std::vector<ActiveLora> loras;      // pinned adapter slots
  uint64_t adapterKey = 0;            // prefix-cache chain seed (set at first admission)
  std::unique_ptr<SequenceKv> kv;     // block table; created at first admission, emptied by preemption
};

/**
 * A live sequence (engine thread, after leaving the inbox). Every member computes the same
 * token stream `tokens`; member m has computed tokens [0, members[m].kv->length()). The
 * sequence samples in the step where every member reaches tokens.size().
 */
struct Engine::Sequence {
  int64_t id = 0;
  SequenceRequest req;
  std::vector<Member> members;        // [members]; each is one BatchEntry of a step
  std::vector<double> weights;        // [members] normalised mixture weights (ensembles)
  std::unique_ptr<Sampler> sampler;   // created at first admission; kept across preemption (RNG state)
  std::vector<int32_t> generated;     // [completionTokens]
  std::vector<int32_t> tokens;        // [prompt + generated] the stream to compute
  // Constrained decoding (req.constrained; native/README.md "Constrained decoding").
  std::vector<uint32_t> mask;         // [ceil(vocab/32)] allowed tokens of the next sample, valid when hasMask
  bool hasMask = false;
  bool held = false;                  // logits of the next token are ready but its mask is not: heldLogits
  std::vector<float> heldLogits;      // [members, vocab] kept last-position logits while held
};

/**
 * A pending Engine::forward call. A prompt-logprobs job (promptTopN >= 0) is resumable: it holds
 * its private KV pool and the rows scored so far, and runs one chunk of rows per loop of the
 * engine thread between steps (prompt_scoring.cc).
 */
struct Engine::ForwardJob {
  std::vector<int32_t> prompt;        // [numTokens]
  std::vector<ActiveLora> loras;
  std::function<void(ForwardOutput&&)> done;
  int promptTopN = -1;                // >= 0: prompt logprobs instead of all logits
  int nextTopN = 0;                   // > 0 (with promptTopN >= 0): also the row after the prompt, its top nextTopN
  int64_t cancelId = 0;               // > 0: Engine::cancelForward(cancelId) drops the job
  std::unique_ptr<KvCache> cache;     // the private pool while scoring (attached to the backend)
  std::unique_ptr<SequenceKv> kv;     // the prompt's block table in it
  int scored = 0;                     // rows run so far (positions [0, scored) scored)
  ForwardOutput out;                  // filled as chunks run

  /** Rows a prompt-logprobs job runs: every position that predicts a prompt token, and the last one for nextTopN. */
  int scoringRows() const { return int(prompt.size()) - 1 + (nextTopN > 0 ? 1 : 0); }
};

/** What one step computes for one sequence. */
struct Engine::PlanItem {
  Sequence* seq = nullptr;
  std::vector<int> chunk;             // [members] tokens computed this step (0 allowed while catching up)
  bool sample = false;                // every member completes its stream: sample the next token
};

}  // namespace openlora
