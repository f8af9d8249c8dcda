// Minimal PEFT adapter-folder reader for openlora-cli (no Node). The full implementation, with
// every PEFT option the server accepts (alpha_pattern, rank_pattern, layers_to_transform,
// regex target_modules, hub layouts, validation messages), is adapters/peft.ts.
#pragma once

#include <memory>
#include <string>

#include "config.h"
#include "lora.h"

namespace openlora::cli {

/** A PEFT folder read for the CLI. */
struct PeftAdapter {
  std::shared_ptr<const LoraAdapter> adapter;
  int rank = 0;
  float scaling = 1.0f;
};

/**
 * Read `dir`/adapter_config.json and `dir`/adapter_model.safetensors: tensors named
 * base_model.model.{layout.model}.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A,B}.weight for
 * every layer and every entry of target_modules (a list); scaling = lora_alpha / r, or
 * lora_alpha / sqrt(r) with use_rslora; fan_in_fan_out honoured.
 * @param layout the base's (Model::textLayout()): where its adapters name the decoder's modules.
 * @throws std::runtime_error for what this reader does not support (naming the field) and for
 *   anything loadLoraAdapter rejects.
 */
PeftAdapter loadPeftDir(const std::string& dir, const ModelConfig& config, const hf::TextLayout& layout, int maxRank);

}  // namespace openlora::cli
