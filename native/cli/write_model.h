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
 * config.json's bos_token_id / eos_token_id: `bosEosJson`, the JSON text of both fields (see
 * defaultBosEos).
 * @throws std::runtime_error naming the file on any I/O failure.
 */
void writeRandomModel(const ModelConfig& c, uint64_t seed, const std::string& dir, int threads, const std::string& bosEosJson);

/**
 * The bos / eos fields written for a vocabulary of `vocab` ids when the command line names none:
 * Llama 3's (128000; 128001, 128008, 128009) at its 128256 ids, so that its tokenizer.json
 * beside the weights stops on <|eot_id|>; else 1 and 2 (Llama 2 / SentencePiece).
 */
std::string defaultBosEos(int vocab);

}  // namespace openlora::cli
