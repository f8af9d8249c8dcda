// See napi_convert.h.
#include "napi_convert.h"

#include "errors.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

namespace openlora {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& expected, const Napi::Value& v) {
  std::string got = v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : v.IsString() ? "a string" : v.IsNumber() ? "a number"
                  : v.IsBoolean() ? "a boolean" : v.IsArray() ? "an array" : v.IsObject() ? "an object" : "another type";
  invalidArgument(field, "Expected " + expected + " for " + field + " but received " + got);
}

Napi::Object asObject(const Napi::Value& v, const std::string& field) {
  if (!v.IsObject() || v.IsArray()) bad(field, "an object", v);
  return v.As<Napi::Object>();
}

double number(const Napi::Object& o, const char* key, const std::string& owner, const double* def = nullptr) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && def) return *def;
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) bad(owner + "." + key, "a finite number", v);
  return v.As<Napi::Number>().DoubleValue();
}

int integer(const Napi::Object& o, const char* key, const std::string& owner, const int* def = nullptr) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && def) return *def;
  if (!v.IsNumber()) bad(owner + "." + key, "an integer", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::floor(d) != d || std::fabs(d) > 2147483647.0) bad(owner + "." + key, "an integer", v);
  return int(d);
}

Napi::Array array(const Napi::Value& v, const std::string& field, bool optional) {
  if (optional && v.IsUndefined()) return Napi::Array::New(v.Env(), 0);
  if (!v.IsArray()) bad(field, "an array", v);
  return v.As<Napi::Array>();
}

int intItem(const Napi::Value& v, const std::string& field) {
  if (!v.IsNumber()) bad(field, "an integer", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::floor(d) != d || std::fabs(d) > 2147483647.0) bad(field, "an integer", v);
  return int(d);
}

}  // namespace

EngineOptions readEngineOptions(const Napi::Value& v, std::string* backend) {
  EngineOptions o;
  *backend = "auto";
  if (v.IsUndefined() || v.IsNull()) {
    o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
    return o;
  }
  Napi::Object obj = asObject(v, "EngineOptions");
  Napi::Value b = obj.Get("backend");
  if (!b.IsUndefined()) {
    if (!b.IsString()) bad("EngineOptions.backend", "\"auto\", \"cpu\" or \"cuda\"", b);
    *backend = b.As<Napi::String>().Utf8Value();
  }
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  o.threads = integer(obj, "threads", "EngineOptions", &hw);
  o.maxLoras = integer(obj, "maxLoras", "EngineOptions", &o.maxLoras);
  o.maxLoraRank = integer(obj, "maxLoraRank", "EngineOptions", &o.maxLoraRank);
  o.maxNumSeqs = integer(obj, "maxNumSeqs", "EngineOptions", &o.maxNumSeqs);
  o.threadNice = integer(obj, "threadNice", "EngineOptions", &o.threadNice);
  // Paged KV cache and scheduler (engine.h EngineOptions; resolved against the model in Engine::Engine).
  const int budgetDefault = std::max(o.maxNumBatchedTokens, o.maxNumSeqs);
  o.maxNumBatchedTokens = integer(obj, "maxNumBatchedTokens", "EngineOptions", &budgetDefault);
  o.blockSize = integer(obj, "blockSize", "EngineOptions", &o.blockSize);
  o.numKvBlocks = integer(obj, "numKvBlocks", "EngineOptions", &o.numKvBlocks);
  o.maxModelLen = integer(obj, "maxModelLen", "EngineOptions", &o.maxModelLen);
  const double noBytes = 0;
  const double bytes = number(obj, "kvCacheBytes", "EngineOptions", &noBytes);
  Napi::Value qz = obj.Get("quantization");
  if (!qz.IsUndefined() && !qz.IsString()) bad("EngineOptions.quantization", "\"none\", \"int8\" or \"int4\"", qz);
  if (qz.IsString()) o.quantization = parseQuantization(qz.As<Napi::String>().Utf8Value());
  // KV pool element type (vLLM --kv-cache-dtype): "float32" (default) or "bfloat16".
  Napi::Value kd = obj.Get("kvCacheDtype");
  if (!kd.IsUndefined()) {
    if (!kd.IsString()) bad("EngineOptions.kvCacheDtype", "\"float32\" or \"bfloat16\"", kd);
    const std::string name = kd.As<Napi::String>().Utf8Value();
    if (!parseKvCacheDtype(name, &o.kvCacheDtype))
      invalidArgument("EngineOptions.kvCacheDtype", "EngineOptions.kvCacheDtype must be \"float32\" or \"bfloat16\", got \"" + name + "\"");
  }
  // Input precision of the CPU's BF16-weight products: "float32" (default) or "bfloat16".
  Napi::Value ad = obj.Get("activationDtype");
  if (!ad.IsUndefined()) {
    if (!ad.IsString()) bad("EngineOptions.activationDtype", "\"float32\" or \"bfloat16\"", ad);
    const std::string name = ad.As<Napi::String>().Utf8Value();
    if (name != "float32" && name != "bfloat16")
      invalidArgument("EngineOptions.activationDtype", "EngineOptions.activationDtype must be \"float32\" or \"bfloat16\", got \"" + name + "\"");
    o.activationDtype = name == "bfloat16" ? DType::BF16 : DType::F32;
  }
  Napi::Value pc = obj.Get("enablePrefixCaching");
  if (!pc.IsUndefined() && !pc.IsBoolean()) bad("EngineOptions.enablePrefixCaching", "a boolean", pc);
  if (pc.IsBoolean()) o.enablePrefixCaching = pc.As<Napi::Boolean>().Value();
  if (bytes < 0 || bytes > 9.0e15 || std::floor(bytes) != bytes) {
    invalidArgument("EngineOptions.kvCacheBytes", "EngineOptions.kvCacheBytes must be an integer number of bytes >= 0 (0: automatic), got " + std::to_string(bytes));
  }
  o.kvCacheBytes = int64_t(bytes);
  o.kvCacheMemoryFraction = number(obj, "kvCacheMemoryFraction", "EngineOptions", &o.kvCacheMemoryFraction);
  checkEngineOptions(o);
  return o;
}

std::vector<int32_t> readTokenIds(const Napi::Value& v, const std::string& field) {
  Napi::Array a = array(v, field, false);
  std::vector<int32_t> ids(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) ids[i] = intItem(a.Get(i), field + "[" + std::to_string(i) + "]");
  return ids;
}

std::vector<std::pair<int, float>> readAdapterRefs(const Napi::Value& v, const std::string& field) {
  Napi::Array a = array(v, field, true);
  std::vector<std::pair<int, float>> refs;
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    Napi::Object r = asObject(a.Get(i), f);
    refs.emplace_back(integer(r, "slot", f), float(number(r, "weight", f)));
  }
  return refs;
}

SequenceRequest readSequenceParams(const Napi::Value& v) {
  const std::string P = "SequenceParams";
  Napi::Object o = asObject(v, P);
  SequenceRequest r;
  r.prompt = readTokenIds(o.Get("promptIds"), P + ".promptIds");
  r.adapters = readAdapterRefs(o.Get("adapters"), P + ".adapters");
  Napi::Value ens = o.Get("ensemble");
  if (!ens.IsUndefined()) {
    Napi::Array members = array(ens, P + ".ensemble", false);
    r.hasEnsemble = true;
    for (uint32_t i = 0; i < members.Length(); i++) {
      const std::string f = P + ".ensemble[" + std::to_string(i) + "]";
      Napi::Object m = asObject(members.Get(i), f);
      EnsembleMemberRequest member;
      member.adapters = readAdapterRefs(m.Get("adapters"), f + ".adapters");
      member.weight = float(number(m, "weight", f));
      r.ensemble.push_back(std::move(member));
    }
  }
  r.maxTokens = integer(o, "maxTokens", P);
  const double one = 1.0, zero = 0.0;
  const int zeroI = 0, minusOne = -1;
  r.sampling.temperature = float(number(o, "temperature", P, &one));
  r.sampling.topP = float(number(o, "topP", P, &one));
  r.sampling.topK = integer(o, "topK", P, &zeroI);
  r.sampling.presencePenalty = float(number(o, "presencePenalty", P, &zero));
  r.sampling.frequencyPenalty = float(number(o, "frequencyPenalty", P, &zero));
  r.sampling.repetitionPenalty = float(number(o, "repetitionPenalty", P, &one));
  r.sampling.minP = float(number(o, "minP", P, &zero));
  r.sampling.seed = uint64_t(int64_t(number(o, "seed", P, &zero)));
  r.logprobs = integer(o, "logprobs", P, &minusOne);
  r.sampling.minTokens = integer(o, "minTokens", P, &zeroI);
  Napi::Array bias = array(o.Get("logitBias"), P + ".logitBias", true);
  for (uint32_t i = 0; i < bias.Length(); i++) {
    const std::string f = P + ".logitBias[" + std::to_string(i) + "]";
    Napi::Value e = bias.Get(i);
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) bad(f, "a [tokenId, bias] pair", e);
    Napi::Array pair = e.As<Napi::Array>();
    Napi::Value b = pair.Get(1u);
    if (!b.IsNumber()) bad(f + "[1]", "a number", b);
    r.sampling.logitBias.emplace_back(intItem(pair.Get(0u), f + "[0]"), float(b.As<Napi::Number>().DoubleValue()));
  }
  Napi::Array stops = array(o.Get("stopTokenIds"), P + ".stopTokenIds", true);
  for (uint32_t i = 0; i < stops.Length(); i++) r.stopTokenIds.push_back(intItem(stops.Get(i), P + ".stopTokenIds[" + std::to_string(i) + "]"));
  Napi::Value constrained = o.Get("constrained");
  if (!constrained.IsUndefined() && !constrained.IsBoolean()) bad(P + ".constrained", "a boolean", constrained);
  r.constrained = constrained.IsBoolean() && constrained.As<Napi::Boolean>().Value();
  Napi::Value mask = o.Get("tokenMask");
  if (!mask.IsUndefined()) r.tokenMask = readTokenMask(mask, P + ".tokenMask");
  return r;
}

std::vector<uint32_t> readTokenMask(const Napi::Value& v, const std::string& field) {
  if (!v.IsTypedArray()) bad(field, "an Int32Array (or Uint32Array) token bitmask", v);
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  if (t.TypedArrayType() != napi_int32_array && t.TypedArrayType() != napi_uint32_array) {
    invalidArgument(field, "Expected an Int32Array (or Uint32Array) token bitmask for " + field + " but received another typed array");
  }
  const auto* words = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
  return std::vector<uint32_t>(words, words + t.ElementLength());
}

void readAdapterLoadSpec(const Napi::Value& v, std::string* path, std::vector<LoraModuleSpec>* modules) {
  const std::string P = "AdapterLoadSpec";
  Napi::Object o = asObject(v, P);
  Napi::Value p = o.Get("path");
  if (!p.IsString()) bad(P + ".path", "a string", p);
  *path = p.As<Napi::String>().Utf8Value();
  Napi::Array mods = array(o.Get("modules"), P + ".modules", false);
  for (uint32_t i = 0; i < mods.Length(); i++) {
    const std::string f = P + ".modules[" + std::to_string(i) + "]";
    Napi::Object m = asObject(mods.Get(i), f);
    LoraModuleSpec s;
    s.layer = integer(m, "layer", f);
    Napi::Value name = m.Get("module");
    if (!name.IsString() || !parseLoraModuleName(name.As<Napi::String>().Utf8Value(), &s.module, &s.fused)) {
      bad(f + ".module", "one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, qkv_proj, gate_up_proj", name);
    }
    Napi::Value a = m.Get("aName"), b = m.Get("bName");
    if (!a.IsString()) bad(f + ".aName", "a string", a);
    if (!b.IsString()) bad(f + ".bName", "a string", b);
    s.aName = a.As<Napi::String>().Utf8Value();
    s.bName = b.As<Napi::String>().Utf8Value();
    s.scaling = float(number(m, "scaling", f));
    Napi::Value fi = m.Get("fanInFanOut");
    if (!fi.IsUndefined() && !fi.IsBoolean()) bad(f + ".fanInFanOut", "a boolean", fi);
    s.fanInFanOut = fi.IsBoolean() && fi.As<Napi::Boolean>().Value();
    modules->push_back(std::move(s));
  }
}

Napi::Array eventsToJs(Napi::Env env, const std::vector<SequenceEvent>& events) {
  Napi::Array arr = Napi::Array::New(env, events.size());
  for (size_t i = 0; i < events.size(); i++) {
    const SequenceEvent& e = events[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("seqId", Napi::Number::New(env, double(e.seqId)));
    o.Set("token", Napi::Number::New(env, e.token));
    if (e.hasLogprob) o.Set("logprob", Napi::Number::New(env, e.logprob));
    if (e.hasTop) {
      Napi::Array top = Napi::Array::New(env, e.top.size());
      for (size_t k = 0; k < e.top.size(); k++) {
        Napi::Object t = Napi::Object::New(env);
        t.Set("token", Napi::Number::New(env, e.top[k].token));
        t.Set("logprob", Napi::Number::New(env, e.top[k].logprob));
        top.Set(uint32_t(k), t);
      }
      o.Set("topLogprobs", top);
    }
    if (!e.finishReason.empty()) {
      o.Set("finishReason", Napi::String::New(env, e.finishReason));
      if (!e.error.empty()) o.Set("error", Napi::String::New(env, e.error));
      o.Set("promptTokens", Napi::Number::New(env, e.promptTokens));
      o.Set("completionTokens", Napi::Number::New(env, e.completionTokens));
    }
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

}  // namespace openlora
