// Conversions between JS values and the engine's C++ structs (types of native/types.ts).
// Every reader throws Error(invalid_argument) (errors.h) naming the field ("SequenceParams.maxTokens ...");
// callers convert to JS errors at the N-API edge.
#pragma once

#include <napi.h>

#include <string>
#include <utility>
#include <vector>

#include "engine.h"
#include "lora.h"

namespace openlora {

/** EngineOptions (JS) -> EngineOptions (C++) plus the requested backend name. */
EngineOptions readEngineOptions(const Napi::Value& v, std::string* backend);

/** SequenceParams (JS) -> SequenceRequest. */
SequenceRequest readSequenceParams(const Napi::Value& v);

/** AdapterRef[] -> (slot, weight) pairs. */
std::vector<std::pair<int, float>> readAdapterRefs(const Napi::Value& v, const std::string& field);

/** number[] of token ids -> int32 ids (checked integral; range is checked by the engine). */
std::vector<int32_t> readTokenIds(const Napi::Value& v, const std::string& field);

/**
 * A token bitmask (Int32Array or Uint32Array, xgrammar's layout: token_mask.h) -> its words,
 * copied. Length and content are checked by the engine (checkTokenMask).
 */
std::vector<uint32_t> readTokenMask(const Napi::Value& v, const std::string& field);

/** AdapterLoadSpec (JS) -> path and module specs. */
void readAdapterLoadSpec(const Napi::Value& v, std::string* path, std::vector<LoraModuleSpec>* modules);

/** One step's events -> SequenceEvent[] (JS). */
Napi::Array eventsToJs(Napi::Env env, const std::vector<SequenceEvent>& events);

}  // namespace openlora
