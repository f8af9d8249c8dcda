// Device sampling (sampling.cu): the semantics of native/src/sampler.h Sampler::sample and
// computeLogprobs for a batch of sequences, one block per sequence, returning only token ids
// and logprobs (the logits never leave the device).
//
// Per sequence: work = logits with tokens its allowed-token mask (constrained decoding, xgrammar
// layout: native/src/token_mask.h) disallows set to -inf, + logit_bias, then
// work[t] -= frequency * count[t] + presence
// (count[t] > 0) over the sequence's generated tokens; greedy argmax (ties to the lowest id)
// when temperature <= 0; else p ~ exp((work - max) / T), top_k (ties to the lower id), top_p
// (smallest prefix, in (prob desc, id asc) order, with mass >= top_p of the kept mass, at least
// one token), then one draw by the exponential race argmax_i p_i / E_i, E_i ~ Exp(1) from
// Philox4x32-10 keyed by (seed, step, token id): a draw depends only on the sequence's own
// (seed, step), never on the batch. (The CPU sampler's mt19937 stream is not reproduced.)
// Logprobs are log_softmax of the RAW logits (as computeLogprobs), for the chosen token and the
// top-N (most likely first, ties to the lower id).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/** Largest number of top logprobs per sequence (OpenAI allows 20). */
constexpr int kMaxTopLogprobs = 20;

/** One step's sampling work. Every pointer is device memory; [S] = [num_seqs]. */
struct SamplingBatch {
  int num_seqs = 0;
  int vocab = 0;
  const float* logits = nullptr;           // [S, vocab] fp32 raw logits, row stride ld_logits
  int64_t ld_logits = 0;
  const float* temperature = nullptr;      // [S]; <= 0 = greedy
  const int32_t* top_k = nullptr;          // [S]; <= 0 = off; nullptr = off for all
  const float* top_p = nullptr;            // [S]; >= 1 = off; nullptr = off for all
  const float* presence_penalty = nullptr;   // [S]; nullptr = 0
  const float* frequency_penalty = nullptr;  // [S]; nullptr = 0
  const int32_t* penalty_ptr = nullptr;    // [S + 1] CSR over (token, count) of generated tokens; nullptr = none
  const int32_t* penalty_tokens = nullptr; // [penalty_ptr[S]] distinct per sequence
  const int32_t* penalty_counts = nullptr; // [penalty_ptr[S]] occurrences (> 0)
  const int32_t* bias_ptr = nullptr;       // [S + 1] CSR over logit_bias entries; nullptr = none
  const int32_t* bias_tokens = nullptr;    // [bias_ptr[S]]
  const float* bias_values = nullptr;      // [bias_ptr[S]]
  const uint32_t* token_masks = nullptr;   // [num_masks, mask_words] allowed-token bits (bit i & 31 of word i >> 5); nullptr = none
  const int32_t* mask_index = nullptr;     // [S] row of token_masks for sequence s, -1 = unconstrained; nullptr = none
  int mask_words = 0;                      // host: words per mask, ceil(vocab / 32) when token_masks is set
  const uint64_t* seeds = nullptr;         // [S] per-sequence seed
  const uint64_t* steps = nullptr;         // [S] per-sequence draw counter (e.g. tokens generated so far)
  const int32_t* num_top_logprobs = nullptr;  // [S] top-N wanted (<= max_top_logprobs); nullptr = max_top_logprobs
  int max_top_logprobs = 0;                // host, <= kMaxTopLogprobs; 0 = no top lists
  // outputs
  int32_t* out_tokens = nullptr;           // [S] sampled token ids
  float* out_logprobs = nullptr;           // [S] log_softmax(raw logits)[token]; nullptr = not wanted
  int32_t* out_top_tokens = nullptr;       // [S, max_top_logprobs]; unused entries -1
  float* out_top_logprobs = nullptr;       // [S, max_top_logprobs]; unused entries -inf
  float* workspace = nullptr;              // sampling_workspace_bytes(S, vocab) of fp32 scratch
};

/** Bytes of workspace launch_sample needs: num_seqs * vocab floats. */
size_t sampling_workspace_bytes(int num_seqs, int vocab);

/** Sample one token per sequence (see the file comment). */
cudaError_t launch_sample(const SamplingBatch& batch, cudaStream_t stream);

}  // namespace openlora::cuda
