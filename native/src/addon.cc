// The addon's one export list (NativeAddon of native/types.ts): loadModel, cudaInfo, engineDefaults.
#include <napi.h>

#include <memory>
#include <string>
#include <thread>

#include "backend.h"
#include "engine_options.h"
#include "model.h"
#include "napi_convert.h"
#include "napi_engine.h"
#include "napi_errors.h"

namespace openlora {

namespace {

/** Per-environment state (worker threads each get their own). */
struct AddonData {
  Napi::FunctionReference engineClass;
};

/** Loads config + weights off the JS thread, then constructs the NativeEngine on it. */
class LoadModelWorker : public Napi::AsyncWorker {
 public:
  LoadModelWorker(Napi::Env env, std::string dir, EngineOptions options, std::string backend)
      : Napi::AsyncWorker(env, "openlora.loadModel"),
        deferred_(Napi::Promise::Deferred::New(env)),
        dir_(std::move(dir)),
        backendRequested_(std::move(backend)) {
    init_.options = options;
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      chooseBackend(backendRequested_);  // fail fast, before reading the weights
      init_.model = Model::load(dir_, init_.options.quantization);
      init_.forward = makeForwardBackend(backendRequested_, init_.model, init_.options.threads, &init_.backendReason,
                                        init_.options.threadNice, init_.options.activationDtype == DType::BF16);
      init_.backend = init_.forward->name();
      init_.forward->uploadWeights();  // off the JS thread (CUDA: gigabytes for a big model)
    } catch (const std::exception& e) {
      caught_.keep(e);
      SetError(e.what());
    } catch (...) {
      SetError("unknown error while loading " + dir_);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    try {
      AddonData* data = env.GetInstanceData<AddonData>();
      Napi::Object engine = data->engineClass.New({Napi::External<EngineInit>::New(env, &init_)});
      deferred_.Resolve(engine);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(jsError(env, e).Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(caught_.toJs(e).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string dir_;
  std::string backendRequested_;
  EngineInit init_;
  CaughtError caught_;
};

/** loadModel(dir, options): Promise<NativeEngine>. */
Napi::Value loadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (!info[0].IsString()) invalidArgument("dir", "Expected a model folder path (string) for loadModel(dir, options)");
    std::string backend;
    EngineOptions options = readEngineOptions(info[1], &backend);
    auto* worker = new LoadModelWorker(env, info[0].As<Napi::String>().Utf8Value(), options, backend);
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  } catch (const std::exception& e) {
    return rejectedPromise(env, e);
  }
}

/** cudaInfo(): {compiled, deviceCount, error}. */
Napi::Value cudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaInfo c = probeCuda();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", c.compiled);
  o.Set("deviceCount", c.deviceCount);
  o.Set("error", c.error);
  return o;
}

/**
 * engineDefaults(): the engine's defaults and bounds (engine_options.h), for config/schema.ts to
 * be checked against. Shape: { options: { <EngineOptions field>: {default, min, max} } for every
 * integer option (threads' default is this machine's hardware concurrency), enablePrefixCaching,
 * kvCacheDtype, activationDtype, quantization, backend (string/boolean defaults), kvCacheMemoryFraction
 * ({default, min, max}), autoKvCacheCapBytes (the budget where available memory is unknown),
 * maxLogprobs, minEnsembleMembers, maxEnsembleMembers, defaultMaxTokens,
 * cudaMaxLoraRank (the CUDA kernels' rank limit), errorCodes: string[] }.
 */
Napi::Value engineDefaults(const Napi::CallbackInfo& info) {
  namespace d = engine_defaults;
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object options = Napi::Object::New(env);
  for (const IntOption& opt : d::kIntOptions) {
    Napi::Object o = Napi::Object::New(env);
    const bool isThreads = std::string(opt.name) == "threads";
    o.Set("default", double(isThreads ? int64_t(std::max(1u, std::thread::hardware_concurrency())) : opt.def));
    o.Set("min", double(opt.min));
    o.Set("max", double(opt.max));
    options.Set(opt.name, o);
  }
  {
    const RealOption& f = d::kKvCacheMemoryFraction;
    Napi::Object o = Napi::Object::New(env);
    o.Set("default", f.def);
    o.Set("min", f.min);
    o.Set("max", f.max);
    out.Set(f.name, o);
  }
  out.Set("options", options);
  out.Set("enablePrefixCaching", d::kEnablePrefixCaching);
  out.Set("kvCacheDtype", "float32");
  out.Set("activationDtype", "float32");
  out.Set("quantization", "none");
  out.Set("backend", "auto");
  out.Set("autoKvCacheCapBytes", double(d::kAutoKvCacheCapBytes));
  out.Set("maxLogprobs", d::kMaxLogprobs);
  out.Set("minEnsembleMembers", d::kMinEnsembleMembers);
  out.Set("maxEnsembleMembers", d::kMaxEnsembleMembers);
  out.Set("defaultMaxTokens", d::kDefaultMaxTokens);
  out.Set("cudaMaxLoraRank", d::kCudaMaxLoraRank);
  Napi::Array codes = Napi::Array::New(env);
  for (int c = 0; c <= int(ErrorCode::Internal); c++) codes.Set(uint32_t(c), errorCodeName(ErrorCode(c)));
  out.Set("errorCodes", codes);
  return out;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engineClass = Napi::Persistent(EngineWrap::defineClass(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("loadModel", Napi::Function::New(env, loadModel, "loadModel"));
  exports.Set("cudaInfo", Napi::Function::New(env, cudaInfo, "cudaInfo"));
  exports.Set("engineDefaults", Napi::Function::New(env, engineDefaults, "engineDefaults"));
  return exports;
}

}  // namespace

}  // namespace openlora

static Napi::Object InitOpenlora(Napi::Env env, Napi::Object exports) { return openlora::init(env, exports); }

NODE_API_MODULE(openlora, InitOpenlora)
