// One forward step's input as the engine hands it to a backend (backend.h ForwardBackend::forward):
// a list of sequence slices, each with its tokens, start position, block table and adapter set.
// Backend-neutral: the CPU forward (cpu/forward.cc) and the CUDA forward (cuda/) read the same.
#pragma once

#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "lora.h"

namespace openlora {

/** One sequence's slice of a batched forward step. Its rows are contiguous in the batch. */
struct BatchEntry {
  const int32_t* tokens = nullptr;  // [numTokens] ids to process (prefill: the prompt; decode: 1)
  int numTokens = 0;
  int startPos = 0;                 // position of tokens[0] (== kv->length())
  SequenceKv* kv = nullptr;         // block table; covers startPos + numTokens (grown by the scheduler)
  const std::vector<ActiveLora>* loras = nullptr;  // adapter set; empty = base model
  bool allLogits = false;           // logits for every row (forward()) or only the last one
  /**
   * The sequence length that length-dependent RoPE scaling (longrope's short/long factor choice,
   * dynamic NTK's base) sees for these rows: HF's dynamic_rope_update takes seq_len = the last
   * position + 1 of the forward, and HF prefills a whole prompt in one forward. So prompt chunks
   * carry the whole prompt's length (a chunked prefill picks what one forward would), rows of
   * generated tokens startPos + numTokens. 0 means startPos + numTokens.
   */
  int ropeLen = 0;
};

}  // namespace openlora
