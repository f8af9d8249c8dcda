// `openlora-cli attention`: decode attention alone, one row per sequence over every layer's own
// KV pool (random K/V through shuffled block tables), timed with the engine's kernel
// (cpu::pagedAttention). Reports milliseconds per step and the KV bytes read per second, the
// figure to hold against `openlora-cli ceilings` (the weights' share of a decode step is in
// `bench`).
#pragma once

#include <string>
#include <vector>

#include "../src/dtype.h"

namespace openlora::cli {

/** What to time: the model's attention shape, the contexts and the KV element type. */
struct AttentionBenchOptions {
  int layers = 32;     // distinct KV pools (one per layer), so long contexts come from memory
  int heads = 15;      // query heads
  int kvHeads = 5;     // KV heads (heads % kvHeads == 0)
  int headDim = 64;
  int blockSize = 16;  // tokens per KV block
  int batch = 1;       // decode rows (sequences) per step
  std::vector<int> contexts{512, 2048, 4096};  // positions each row attends to
  DType kvDtype = DType::F32;  // F32 or BF16
  int threads = 2;
  int rounds = 20;     // timed steps per context (the median is reported)
};

/**
 * Time one decode step's attention (all layers) per context of `o`. @returns one JSON object:
 * the options, the kernel name, and per context {ctx, median_ms, min_ms, kv_GBps} (kv_GBps =
 * K and V bytes of every row and layer / median time). @throws std::invalid_argument on a bad
 * shape (from cpu::pagedAttention) and std::bad_alloc when the pools do not fit.
 */
std::string benchAttention(const AttentionBenchOptions& o);

}  // namespace openlora::cli
