// See peft.h.
#include "peft.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "json.h"
#include "files.h"

namespace openlora::cli {

namespace {

bool nonEmpty(const JsonValue* v) {
  if (!v || v->isNull()) return false;
  if (v->isObject()) return !v->members().empty();
  if (v->isArray()) return !v->items().empty();
  return true;
}

}  // namespace

PeftAdapter loadPeftDir(const std::string& dir, const ModelConfig& config, const hf::TextLayout& layout, int maxRank) {
  const std::string cfgPath = dir + "/adapter_config.json";
  const JsonValue cfg = parseJson(readFile(cfgPath, "is this a PEFT adapter folder?"), cfgPath);
  auto num = [&](const char* key) {
    const JsonValue* v = cfg.find(key);
    if (!v || !v->isNumber()) throw std::runtime_error(cfgPath + ": " + key + " must be a number");
    return v->asNumber();
  };
  const double r = num("r"), alpha = num("lora_alpha");
  if (r < 1) throw std::runtime_error(cfgPath + ": r must be >= 1");
  const JsonValue* rs = cfg.find("use_rslora");
  const bool rslora = rs && rs->isBool() && rs->asBool();
  const JsonValue* fifo = cfg.find("fan_in_fan_out");
  const bool fanInFanOut = fifo && fifo->isBool() && fifo->asBool();
  for (const char* unsupported : {"alpha_pattern", "rank_pattern", "layers_to_transform"}) {
    if (nonEmpty(cfg.find(unsupported))) {
      throw std::runtime_error(cfgPath + ": " + unsupported + " is not supported by the CLI's reader (adapters/peft.ts has it)");
    }
  }
  const JsonValue* targets = cfg.find("target_modules");
  if (!targets || !targets->isArray()) {
    throw std::runtime_error(cfgPath + ": target_modules must be a list here (a regex string needs adapters/peft.ts)");
  }
  PeftAdapter out;
  out.rank = int(r);
  out.scaling = float(rslora ? alpha / std::sqrt(r) : alpha / r);
  std::vector<LoraModuleSpec> specs;
  for (int layer = 0; layer < config.numHiddenLayers; layer++) {
    for (const JsonValue& t : targets->items()) {
      LoraModuleSpec s;
      if (!t.isString() || !hf::parseModuleName(t.asString(), &s.module)) {
        throw std::runtime_error(cfgPath + ": target_modules entry " + (t.isString() ? "\"" + t.asString() + "\"" : "?") +
                                 " is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
      }
      s.layer = layer;
      s.aName = hf::peftLoraWeight(layout, layer, s.module, false);
      s.bName = hf::peftLoraWeight(layout, layer, s.module, true);
      s.scaling = out.scaling;
      s.fanInFanOut = fanInFanOut;
      specs.push_back(std::move(s));
    }
  }
  out.adapter = loadLoraAdapter(dir + "/adapter_model.safetensors", specs, config, maxRank);
  return out;
}

}  // namespace openlora::cli
