// Engine-side token sampling and logprobs for one sequence.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace openlora {

/** Sampling parameters (SequenceParams of native/types.ts). */
struct SamplingParams {
  float temperature = 1.0f;      // 0 = greedy
  float topP = 1.0f;             // (0, 1]; 1 disables
  int topK = 0;                  // <= 0 disables
  float presencePenalty = 0.0f;  // OpenAI, [-2, 2]
  float frequencyPenalty = 0.0f; // OpenAI, [-2, 2]
  std::vector<std::pair<int, float>> logitBias;  // (token, bias)
  uint64_t seed = 0;
  // vLLM's min_tokens: while fewer than `minTokens` tokens were generated (observe() calls),
  // the `suppressIds` (the sequence's stop token ids) get logit -inf, so generation cannot end.
  int minTokens = 0;
  std::vector<int> suppressIds;
  // vLLM / transformers' repetition_penalty (CTRL, Keskar et al. 2019, eq. 2): every token seen in
  // the prompt or generated so far gets logit / r when positive, logit * r otherwise. 1 disables.
  float repetitionPenalty = 1.0f;
  std::vector<int> promptIds;  // the prompt's tokens (read only when repetitionPenalty != 1)
  // vLLM's min_p (Nguyen et al. 2024, "Min P sampling"): after temperature, tokens whose
  // probability is below min_p * (the largest probability) are dropped. 0 disables.
  float minP = 0.0f;
};

/** A token and its natural-log probability. */
struct TokenLogprob {
  int token;
  float logprob;
};

/**
 * log_softmax of raw logits at `chosen`, plus the `topN` most likely tokens (most likely first,
 * ties to the lower id). The normaliser is summed in double (its terms by a float expf on AVX2 CPUs).
 * @param logits [vocab] raw model logits.
 */
float computeLogprobs(const float* logits, int vocab, int chosen, int topN, std::vector<TokenLogprob>* top);

/**
 * Ensemble logprobs: log p with p = sum_i w_i softmax(l_i) (T = 1, before logit processing and
 * filtering, like computeLogprobs for one sequence) at `chosen`, plus the `topN` most likely
 * tokens of p (most likely first, ties to the lower id). log p is taken in log space
 * (logsumexp_i (log w_i + l_i - lse_i)), so it is finite even where p underflows.
 * @param rows [members] pointers to raw logits [vocab]; @param weights [members], summing to 1.
 */
float mixtureLogprobs(const std::vector<const float*>& rows, const std::vector<double>& weights, int vocab, int chosen,
                      int topN, std::vector<TokenLogprob>* top);

/**
 * Per-sequence sampler state: the RNG and the counts of generated tokens.
 *
 * Order of operations (OpenAI / vLLM semantics): a constrained sequence's allowed-token mask
 * (token_mask.h) sets disallowed logits to -inf first, then logit_bias is added, then while
 * fewer than min_tokens tokens were generated the stop ids get -inf (vLLM's
 * MinTokensLogitsProcessor; dropped for that step if it would leave no token at all), then
 * vLLM's apply_penalties: repetition_penalty over the prompt's and the generated tokens
 * (l / r when l > 0, else l * r), then logit[t] -= frequency_penalty * count[t] +
 * presence_penalty * (count[t] > 0) over generated tokens only; then greedy argmax (ties to the
 * lowest id) when temperature == 0, else softmax(l / T), min_p (drop p < min_p * max p), top_k,
 * top_p (smallest prefix with mass >= p, at least one token), one draw.
 * The RNG (std::mt19937_64 seeded with `seed`) is private to the sequence, so results do not
 * depend on what else is in the batch.
 */
class Sampler {
 public:
  Sampler(SamplingParams params, int vocab);

  /**
   * Pick the next token from raw logits [vocab]. Does not record it (call observe).
   * @param mask allowed-token bitmask ([ceil(vocab / 32)] words, token_mask.h; at least one
   *   allowed token) or nullptr: disallowed tokens get logit -inf before any other processing,
   *   so they are never picked (finite logit_bias / penalties cannot revive them).
   */
  int sample(const float* logits, const uint32_t* mask = nullptr);
  /**
   * Pick the next token of an ensemble from its members' raw logits (DESIGN.md "ensemble": a
   * per-step mixture of the member adapters' next-token distributions, i.e. a mixture of
   * experts at the distribution level; PEFT has no counterpart). Each member's logits get the
   * same processing as in sample() (logit_bias, penalties over the shared generated tokens),
   * then p = sum_i w_i softmax(l_i / T) with T = temperature (T = 1 and argmax p when greedy);
   * top_k / top_p filter p (renormalised) and one draw of this sampler's RNG picks the token.
   * With a `mask` (token_mask.h) the mask applies to the mixture: p is zeroed outside the
   * allowed set and renormalised (each member's softmax stays over the whole vocabulary), then
   * greedy / top_k / top_p / the draw run on it. Computed with per-member log-space scale
   * factors, so allowed tokens far below a member's maximum (low T) do not underflow to zero.
   * @param rows [members] pointers to raw logits [vocab]; @param weights [members], summing to 1.
   */
  int sampleMixture(const std::vector<const float*>& rows, const std::vector<double>& weights, const uint32_t* mask = nullptr);
  /** Record a generated token for the penalties. */
  void observe(int token) {
    counts_[token]++;
    generated_++;
  }

 private:
  /**
   * out[vocab] = logits + logit_bias - penalties (the per-sequence logit processing), with the
   * min_tokens suppression when `suppress` and fewer than minTokens tokens were generated.
   */
  void adjust(const float* logits, std::vector<float>* out, bool suppress = true) const;
  /** The masked mixture into mix_ (see sampleMixture). */
  void maskedMixture(const std::vector<const float*>& rows, const std::vector<double>& weights, const uint32_t* mask, double T);
  /** top_k / top_p over cand_ (probabilities with total `sum`, id order), then one RNG draw. */
  int draw(double sum);

  SamplingParams p_;
  int vocab_;
  std::mt19937_64 rng_;
  std::vector<int> promptSeen_;               // sorted distinct prompt tokens (repetition_penalty only)
  std::unordered_map<int, int> counts_;       // generated token -> occurrences
  int generated_ = 0;                         // tokens observed so far
  std::vector<float> work_;                   // [vocab] adjusted logits
  std::vector<std::pair<float, int>> cand_;   // [vocab] (prob, token) candidates
  std::vector<double> mix_;                   // [vocab] ensemble mixture p
};

}  // namespace openlora
