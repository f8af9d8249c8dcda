// Prompt logprobs (Engine::forward with promptTopN >= 0; vLLM's prompt_logprobs): a resumable job
// on the engine thread. Each loop of the thread runs one chunk of the first job's prompt rows in
// the job's private KV pool, then reduces each row's logits to the next prompt token's logprob
// and the top-N there, so neither a long prompt's scoring nor the running sequences' steps wait
// long for the other, and no [rows, vocab] logits outlive a chunk.
#include <algorithm>
#include <cstdlib>

#include "engine.h"
#include "engine_sequence.h"

namespace openlora {

namespace {

/**
 * Rows per chunk: [rows, vocab] float32 logits near 32 MiB (a 2k-token prompt at a 128k
 * vocabulary would need 1 GiB at once), at most the step's token budget (maxNumBatchedTokens);
 * OPENLORA_PROMPT_LOGPROBS_ROWS overrides it (tests run several chunks at a small vocabulary).
 */
int chunkRows(int vocab, int maxBatchedTokens) {
  const char* env = std::getenv("OPENLORA_PROMPT_LOGPROBS_ROWS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  const int64_t byMemory = std::max<int64_t>(1, (int64_t(32) << 20) / (int64_t(vocab) * 4));
  return int(std::max<int64_t>(1, std::min<int64_t>(byMemory, maxBatchedTokens)));
}

}  // namespace

void Engine::startScoring(std::unique_ptr<ForwardJob> job) {
  // NOTE(why): only queued here; its pool and output are made when it reaches the front
  // (scoreChunk), so a burst of long prompts holds one private pool at a time, not one each
  // (128 prompts of 2k tokens at a 360M shape would be ~20 GB of pools at once).
  scoring_.push_back(std::move(job));
}

void Engine::openScoring(ForwardJob& job) {
  const ModelConfig& c = model_->config();
  const int n = int(job.prompt.size());
  ForwardOutput& out = job.out;
  out.numTokens = n;
  out.vocab = c.vocabSize;
  out.topN = std::min(job.promptTopN, c.vocabSize);
  out.tokenLogprobs.assign(size_t(n - 1), 0.0f);
  out.tokenRanks.assign(size_t(n - 1), 0);
  out.topIds.assign(size_t(n - 1) * size_t(out.topN), 0);
  out.topLogprobs.assign(out.topIds.size(), 0.0f);
  // A private pool sized for this prompt (as runForward), so scoring never competes with (or
  // preempts) the running sequences for blocks. Only rows 0 .. n - 2 predict a prompt token: the
  // last one runs only for the next token (nextTopN > 0).
  const int bs = options_.blockSize;
  const int rows = job.scoringRows();
  job.cache = std::make_unique<KvCache>(c.numHiddenLayers, c.numKeyValueHeads, c.headDim, std::max(1, (rows + bs - 1) / bs), bs, false,
                                        options_.kvCacheDtype);
  try {
    backend_->attachKv(*job.cache);
  } catch (...) {
    job.cache.reset();
    throw;
  }
  job.kv = std::make_unique<SequenceKv>(job.cache.get(), maxModelLen_, c.kvWindow());
}

void Engine::scoreChunk() {
  if (scoring_.empty()) return;
  ForwardJob& job = *scoring_.front();
  ForwardOutput& out = job.out;
  bool finished = false;
  try {
    if (!job.cache) openScoring(job);
    const int n = out.numTokens, V = out.vocab, k = out.topN;
    const int total = job.scoringRows();
    const int rows = std::min(chunkRows(V, options_.maxNumBatchedTokens), total - job.scored);
    if (rows > 0) {
      if (!job.kv->grow(job.scored + rows)) throw std::logic_error("private KV pool too small");
      BatchEntry e;
      e.tokens = job.prompt.data() + job.scored;
      e.numTokens = rows;
      e.startPos = job.scored;
      e.kv = job.kv.get();
      e.loras = &job.loras;
      e.allLogits = true;
      e.ropeLen = n;  // the whole prompt's RoPE length, as a chunked prefill (BatchEntry::ropeLen)
      // NOTE(why): thread_local, not logits_: the step's logits stay the step's (engine thread only either way).
      thread_local std::vector<float> logits;
      backend_->forward({e}, &logits);
      std::vector<TokenLogprob> top;
      for (int r = 0; r < rows; r++) {
        const size_t i = size_t(job.scored + r);
        const float* row = logits.data() + int64_t(r) * V;
        if (int(i) == n - 1) {  // the row after the prompt: its most likely next tokens
          computeLogprobs(row, V, 0, job.nextTopN, &top);
          for (const TokenLogprob& t : top) {
            out.nextTopIds.push_back(t.token);
            out.nextTopLogprobs.push_back(t.logprob);
          }
          continue;
        }
        out.tokenLogprobs[i] = computeLogprobs(row, V, job.prompt[i + 1], k, &top);
        const float own = row[job.prompt[i + 1]];
        int32_t above = 0;
        for (int t = 0; t < V; t++) above += row[t] > own;
        out.tokenRanks[i] = above + 1;
        for (int j = 0; j < k; j++) {
          out.topIds[i * size_t(k) + size_t(j)] = top[size_t(j)].token;
          out.topLogprobs[i * size_t(k) + size_t(j)] = top[size_t(j)].logprob;
        }
      }
      job.scored += rows;
    }
    finished = job.scored >= total;
  } catch (const std::exception& ex) {
    out = ForwardOutput();
    out.error = std::string("prompt scoring failed: ") + ex.what();
    out.errorCode = errorCodeOf(ex);
    finished = true;
  }
  if (!finished) return;
  std::unique_ptr<ForwardJob> ended = std::move(scoring_.front());
  scoring_.pop_front();
  ForwardOutput result = std::move(ended->out);
  endScoring(std::move(ended), std::move(result));
}

void Engine::endScoring(std::unique_ptr<ForwardJob> job, ForwardOutput&& out) {
  job->kv.reset();  // its blocks go back to the private pool before the pool goes
  if (job->cache) backend_->detachKv(*job->cache);
  job->cache.reset();
  slots_.release(job->loras);
  job->done(std::move(out));
}

void Engine::dropCancelledScoring(const std::set<int64_t>& cancelled) {
  if (cancelled.empty()) return;
  for (auto it = scoring_.begin(); it != scoring_.end();) {
    if ((*it)->cancelId > 0 && cancelled.count((*it)->cancelId)) {
      std::unique_ptr<ForwardJob> job = std::move(*it);
      it = scoring_.erase(it);
      ForwardOutput out;
      out.error = "cancelled";
      endScoring(std::move(job), std::move(out));
    } else {
      ++it;
    }
  }
}

void Engine::failScoring(const std::string& error, ErrorCode code) {
  while (!scoring_.empty()) {
    std::unique_ptr<ForwardJob> job = std::move(scoring_.front());
    scoring_.pop_front();
    ForwardOutput out;
    out.error = error;
    out.errorCode = code;
    endScoring(std::move(job), std::move(out));
  }
}

}  // namespace openlora
