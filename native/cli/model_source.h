// openlora-cli's models and adapters: a model folder or seeded random weights of a given shape
// (random_weights.h), the backend that runs it, random LoRA adapters, the process's resident
// memory and one prompt's last logits. Shared by the subcommands (openlora_cli.cc,
// bench_commands.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cli_args.h"
#include "lora.h"
#include "model.h"

namespace openlora::cli {

/** The model a subcommand runs: loaded from --model, or generated from --random-* and --seed. */
struct ModelSource {
  std::string label;  // for logs: the folder, or "random HxLx..."
  std::shared_ptr<const Model> model;
  ModelConfig config;
  bool random = false;
  uint64_t seed = 0;
};

/** Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json), or --random-shape's. @throws UsageError on a bad shape. */
ModelConfig randomConfig(const Args& a);

/** This process's resident set now and its peak so far (/proc/self/status VmRSS, VmHWM; 0 elsewhere). */
struct ResidentMemory {
  int64_t rssBytes = 0, hwmBytes = 0;
};
ResidentMemory residentMemory();

/**
 * The model of --model or --random-* (--quantization applied).
 * @throws Unavailable (exit 3) when --backend is not available here, before any weight is read;
 *   UsageError without a model option.
 */
ModelSource loadSource(const Args& a);

/** The --backend running `src` with its weights uploaded (--threads, --activation-dtype). @throws Unavailable. */
std::unique_ptr<ForwardBackend> backendFor(const Args& a, const ModelSource& src, std::string* reason);

/** Random rank-r adapter on every target module (LoRA A std 1/sqrt(in), B std 0.02), scaling 2, BF16. */
std::shared_ptr<const LoraAdapter> randomAdapter(const ModelConfig& c, int rank, uint64_t seed);

/** Largest rank of an adapter's pairs (1 when it has none). */
int maxRankOf(const LoraAdapter& ad);

/** Bytes of an adapter's A and B^T weights. */
int64_t adapterBytes(const LoraAdapter& ad);

/** Last-position logits [vocab] of one prompt with an adapter set, on a private KV pool. */
std::vector<float> lastLogits(ForwardBackend& be, const ModelConfig& c, const std::vector<int32_t>& ids,
                              const std::vector<ActiveLora>& loras);

}  // namespace openlora::cli
