// openlora-cli write-random: a Hugging Face model folder (config.json + model.safetensors, BF16)
// with random_weights.h's seeded values, for load-time and memory measurements on real shapes
// without downloads.
#pragma once

#include <cstdint>
#include <string>

#include "config.h"

namespace openlora::cli {

/**
 * Write config.json and model.safetensors (every tensor BF16; Llama layout: embed_tokens, per
 * layer input/post-attention norms and the 7 projections, final norm, lm_head unless
 * tie_word_embeddings) of `c` into `dir` (created if missing). Values: randomBf16(seed,
 * streamOf(name), i) with initOf(name)'s scale and offset, the tensors Model::fromWeights would
 * build with the same seed. Streams in 1 Mi-value chunks (bounded memory whatever the size).
 * @throws std::runtime_error naming the file on any I/O failure.
 */
void writeRandomModel(const ModelConfig& c, uint64_t seed, const std::string& dir, int threads);

}  // namespace openlora::cli
