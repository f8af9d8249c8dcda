// See napi_engine.h.
#include "napi_engine.h"

#include <cmath>
#include <functional>
#include <stdexcept>

#include "delivery_gate.h"
#include "napi_convert.h"
#include "napi_errors.h"

namespace openlora {

namespace {

/** Work for the JS thread, posted by the engine thread. */
struct JsTask {
  std::function<void(Napi::Env, Bridge&)> run;
};

void callJs(Napi::Env env, Napi::Function, std::shared_ptr<Bridge>* ctx, JsTask* task);

using Tsfn = Napi::TypedThreadSafeFunction<std::shared_ptr<Bridge>, JsTask, callJs>;

/** Run fn; convert any C++ exception into a JS exception (the one error path of every method). */
template <typename Fn>
Napi::Value guarded(Napi::Env env, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw jsError(env, e);
  } catch (...) {
    throw jsError(env, ErrorCode::Internal, "unknown native error");
  }
}

}  // namespace

/** State shared by the JS object, the TSFN context and the engine thread's posts. JS thread only. */
struct Bridge {
  std::shared_ptr<Engine> engine;
  Tsfn tsfn;
  bool released = false;     // tsfn released
  bool disposing = false;
  bool disposed = false;
  int pending = 0;           // sequences / forwards / dispose in flight
  EngineWrap* wrap = nullptr;
  Napi::FunctionReference onEvents;
  std::vector<Napi::Promise::Deferred> disposeWaiters;

  /** Keep the loop and the JS object alive while work is in flight. */
  void beginWork(Napi::Env env) {
    if (pending++ == 0) {
      if (!released) tsfn.Ref(env);
      if (wrap) wrap->Ref();
    }
  }
  void endWork(Napi::Env env) {
    if (pending > 0 && --pending == 0) {
      if (!released) tsfn.Unref(env);
      if (wrap) wrap->Unref();
    }
  }
  /** Post a closure to the JS thread (any thread). Dropped (false) when the TSFN is closing. */
  static bool post(Tsfn tsfn, std::function<void(Napi::Env, Bridge&)> fn) {
    auto* task = new JsTask{std::move(fn)};
    if (tsfn.NonBlockingCall(task) == napi_ok) return true;
    delete task;
    return false;
  }
};

namespace {

void callJs(Napi::Env env, Napi::Function, std::shared_ptr<Bridge>* ctx, JsTask* task) {
  std::unique_ptr<JsTask> owned(task);
  if (env == nullptr || ctx == nullptr) return;  // TSFN torn down with tasks still queued
  Napi::HandleScope scope(env);
  try {
    owned->run(env, **ctx);
  } catch (const Napi::Error& e) {
    // An exception thrown by a JS callback: surface it as uncaught, like any event handler.
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    jsError(env, e).ThrowAsJavaScriptException();
  }
}

}  // namespace

Napi::Function EngineWrap::defineClass(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {InstanceMethod<&EngineWrap::info>("info"), InstanceMethod<&EngineWrap::loadAdapter>("loadAdapter"),
                      InstanceMethod<&EngineWrap::unloadAdapter>("unloadAdapter"),
                      InstanceMethod<&EngineWrap::addSequence>("addSequence"), InstanceMethod<&EngineWrap::cancel>("cancel"),
                      InstanceMethod<&EngineWrap::cancelForward>("cancelForward"),
                      InstanceMethod<&EngineWrap::stop>("stop"), InstanceMethod<&EngineWrap::setTokenMask>("setTokenMask"),
                      InstanceMethod<&EngineWrap::onEvents>("onEvents"), InstanceMethod<&EngineWrap::forward>("forward"),
                      InstanceMethod<&EngineWrap::stats>("stats"), InstanceMethod<&EngineWrap::dispose>("dispose")});
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "NativeEngine cannot be constructed directly; use loadModel()");
  }
  EngineInit* init = info[0].As<Napi::External<EngineInit>>().Data();
  backend_ = init->backend;
  backendReason_ = init->backendReason;
  bridge_ = std::make_shared<Bridge>();
  bridge_->wrap = this;
  auto* ctx = new std::shared_ptr<Bridge>(bridge_);
  bridge_->tsfn = Tsfn::New(env, "openlora-engine", 0 /* unbounded queue: the engine never blocks */, 1, ctx,
                            [](Napi::Env, void*, std::shared_ptr<Bridge>* c) { delete c; });
  bridge_->tsfn.Unref(env);  // idle until work arrives
  Tsfn tsfn = bridge_->tsfn;
  gate_ = std::make_shared<DeliveryGate>(kMaxDeliveriesInFlight);
  auto gate = gate_;
  auto sink = [tsfn, gate](std::vector<SequenceEvent>&& events) {
    auto shared = std::make_shared<std::vector<SequenceEvent>>(std::move(events));
    gate->acquire();  // at most kMaxDeliveriesInFlight step batches wait for the JS thread
    const bool posted = Bridge::post(tsfn, [shared, gate](Napi::Env env, Bridge& b) {
      struct Done {  // released even when a listener throws
        DeliveryGate& g;
        ~Done() { g.release(); }
      } done{*gate};
      int finished = 0;
      for (const SequenceEvent& e : *shared) finished += !e.finishReason.empty();
      Napi::Array arr = eventsToJs(env, *shared);
      // NOTE(why): release the work count before calling out, so a throwing listener cannot
      // keep the process alive forever.
      for (int i = 0; i < finished; i++) b.endWork(env);
      if (!b.onEvents.IsEmpty()) b.onEvents.Call({arr});
    });
    if (!posted) gate->release();
  };
  try {
    bridge_->engine = std::make_shared<Engine>(init->model, init->options, sink, std::move(init->forward));
  } catch (const std::exception& e) {
    bridge_->released = true;
    bridge_->tsfn.Release();
    throw jsError(env, errorCodeOf(e), std::string("cannot start the engine: ") + e.what(), errorFieldOf(e));
  }
  // Registered after the TSFN, so it runs before the TSFN's own teardown (hooks run LIFO).
  napi_add_env_cleanup_hook(env, &EngineWrap::cleanupHook, this);
  cleanupHookAdded_ = true;
}

void EngineWrap::cleanupHook(void* self) { static_cast<EngineWrap*>(self)->stopNow(); }

void EngineWrap::stopNow() {
  if (!bridge_) return;
  if (gate_) gate_->close();  // the engine thread must not wait for this (JS) thread while we join it
  if (bridge_->engine) {
    bridge_->engine->shutdown(nullptr);
    bridge_->engine->join();
  }
  if (!bridge_->released) {
    bridge_->released = true;
    bridge_->tsfn.Release();
  }
}

EngineWrap::~EngineWrap() {
  if (cleanupHookAdded_) {
    napi_remove_env_cleanup_hook(Env(), &EngineWrap::cleanupHook, this);
  }
  if (bridge_) bridge_->wrap = nullptr;
  stopNow();
}

Napi::Value EngineWrap::info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Engine& e = *bridge_->engine;
    const ModelConfig& c = e.model().config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("modelType", c.modelType);
    o.Set("architecture", c.architecture);
    o.Set("textModelPrefix", e.model().textLayout().model);
    Napi::Array archs = Napi::Array::New(env);
    for (const std::string& a : supportedArchitectureList()) archs.Set(archs.Length(), a);
    o.Set("supportedArchitectures", archs);
    o.Set("vocabSize", c.vocabSize);
    o.Set("hiddenSize", c.hiddenSize);
    o.Set("intermediateSize", c.intermediateSize);
    o.Set("numHiddenLayers", c.numHiddenLayers);
    o.Set("numAttentionHeads", c.numAttentionHeads);
    o.Set("numKeyValueHeads", c.numKeyValueHeads);
    o.Set("headDim", c.headDim);
    o.Set("maxPositionEmbeddings", c.maxPositionEmbeddings);
    o.Set("maxModelLen", e.maxModelLen());
    o.Set("derivedMaxModelLen", c.maxModelLen);
    o.Set("dtype", e.model().storageDType());
    o.Set("backend", backend_);
    o.Set("backendReason", backendReason_);
    o.Set("maxLoras", e.options().maxLoras);
    o.Set("quantization", quantizationName(e.model().quantization()));
    o.Set("maxLoraRank", e.options().maxLoraRank);
    o.Set("kvCacheDtype", kvCacheDtypeName(e.options().kvCacheDtype));
    o.Set("activationDtype", e.options().activationDtype == DType::BF16 ? "bfloat16" : "float32");
    o.Set("kvCacheBytes", double(e.options().kvCacheBytes));
    o.Set("numKvBlocks", e.options().numKvBlocks);
    o.Set("maxModelLen", e.options().maxModelLen);
    return o;
  });
}

namespace {

/**
 * Optional count argument `info[i]` (an integer in [0, 1e6]); `absent` when it is undefined.
 * @throws invalid_argument naming `name` for anything else.
 */
int optionalCount(const Napi::CallbackInfo& info, size_t i, const char* name, int absent) {
  if (info.Length() <= i || info[i].IsUndefined()) return absent;
  if (!info[i].IsNumber()) raise(ErrorCode::InvalidArgument, std::string(name) + " must be an integer");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 1e6) || v != std::floor(v)) raise(ErrorCode::InvalidArgument, std::string(name) + " must be an integer >= 0");
  return int(v);
}

/** Reads an adapter file off the JS thread (libuv pool) into a reserved slot. */
class LoadAdapterWorker : public Napi::AsyncWorker {
 public:
  LoadAdapterWorker(Napi::Env env, std::shared_ptr<Engine> engine, int slot, std::string path, std::vector<LoraModuleSpec> modules)
      : Napi::AsyncWorker(env, "openlora.loadAdapter"),
        deferred_(Napi::Promise::Deferred::New(env)),
        engine_(std::move(engine)),
        slot_(slot),
        path_(std::move(path)),
        modules_(std::move(modules)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      auto adapter = loadLoraAdapter(path_, modules_, engine_->model().config(), engine_->slots().maxRank());
      engine_->uploadAdapter(slot_, *adapter);  // CPU: no-op; CUDA: queued on the upload stream
      engine_->slots().install(slot_, std::move(adapter));
    } catch (const std::exception& e) {
      engine_->slots().abandon(slot_);  // all or nothing: the slot is free again
      caught_.keep(e);
      SetError(e.what());
    } catch (...) {
      engine_->slots().abandon(slot_);
      SetError("unknown error while loading adapter " + path_);
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), slot_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(caught_.toJs(e).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Engine> engine_;
  int slot_;
  std::string path_;
  std::vector<LoraModuleSpec> modules_;
  CaughtError caught_;
};

}  // namespace

Napi::Value EngineWrap::loadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (bridge_->disposing) return rejectedPromise(env, ErrorCode::Disposed, "the engine is disposed");
  std::string path;
  std::vector<LoraModuleSpec> modules;
  int slot = -1;
  try {
    readAdapterLoadSpec(info[0], &path, &modules);
    slot = bridge_->engine->slots().reserve();
  } catch (const std::exception& e) {
    return rejectedPromise(env, e);
  } catch (...) {
    return rejectedPromise(env, ErrorCode::Internal, "unknown native error in loadAdapter");
  }
  auto* worker = new LoadAdapterWorker(env, bridge_->engine, slot, std::move(path), std::move(modules));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value EngineWrap::unloadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) invalidArgument("slot", "Expected an integer slot for unloadAdapter(slot)");
    bridge_->engine->slots().unload(info[0].As<Napi::Number>().Int32Value());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::addSequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (bridge_->disposing) raise(ErrorCode::Disposed, "the engine is disposed");
    int64_t id = bridge_->engine->addSequence(readSequenceParams(info[0]));
    bridge_->beginWork(env);
    return Napi::Number::New(env, double(id));
  });
}

Napi::Value EngineWrap::cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) invalidArgument("seqId", "Expected a sequence id for cancel(seqId)");
    bridge_->engine->cancel(info[0].As<Napi::Number>().Int64Value());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::cancelForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) invalidArgument("cancelId", "Expected a cancel id for cancelForward(cancelId)");
    bridge_->engine->cancelForward(info[0].As<Napi::Number>().Int64Value());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) invalidArgument("seqId", "Expected a sequence id for stop(seqId)");
    bridge_->engine->stop(info[0].As<Napi::Number>().Int64Value());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::setTokenMask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsNumber()) invalidArgument("seqId", "Expected a sequence id for setTokenMask(seqId, mask)");
    bridge_->engine->setTokenMask(info[0].As<Napi::Number>().Int64Value(), readTokenMask(info[1], "tokenMask"));
    return env.Undefined();
  });
}

Napi::Value EngineWrap::onEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsFunction()) invalidArgument("cb", "Expected a function for onEvents(cb)");
    bridge_->onEvents = Napi::Persistent(info[0].As<Napi::Function>());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (bridge_->disposing) return rejectedPromise(env, ErrorCode::Disposed, "the engine is disposed");
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    std::vector<int32_t> ids = readTokenIds(info[0], "promptIds");
    auto adapters = readAdapterRefs(info[1], "adapters");
    // Optional third argument: promptTopN (>= 0: prompt logprobs instead of all logits).
    const int promptTopN = optionalCount(info, 2, "promptTopN", -1);
    // Optional fourth argument: a cancel id (> 0) for cancelForward.
    int64_t cancelId = 0;
    if (info.Length() > 3 && !info[3].IsUndefined()) {
      if (!info[3].IsNumber()) raise(ErrorCode::InvalidArgument, "cancelId must be an integer");
      cancelId = info[3].As<Napi::Number>().Int64Value();
    }
    // Optional fifth argument: nextTopN (> 0: also the most likely tokens after the prompt).
    const int nextTopN = optionalCount(info, 4, "nextTopN", 0);
    Tsfn tsfn = bridge_->tsfn;
    bridge_->beginWork(env);
    try {
      const bool promptMode = promptTopN >= 0;
      bridge_->engine->forward(std::move(ids), adapters, [tsfn, deferred, promptMode](ForwardOutput&& out) {
        auto shared = std::make_shared<ForwardOutput>(std::move(out));
        Bridge::post(tsfn, [shared, deferred, promptMode](Napi::Env env, Bridge& b) {
          b.endWork(env);
          if (!shared->error.empty()) {
            deferred.Reject(jsError(env, shared->errorCode, shared->error).Value());
            return;
          }
          auto floats = [&](const std::vector<float>& v) {
            Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
            std::copy(v.begin(), v.end(), a.Data());
            return a;
          };
          Napi::Object r = Napi::Object::New(env);
          if (promptMode) {
            r.Set("tokenLogprobs", floats(shared->tokenLogprobs));
            Napi::Int32Array ranks = Napi::Int32Array::New(env, shared->tokenRanks.size());
            std::copy(shared->tokenRanks.begin(), shared->tokenRanks.end(), ranks.Data());
            r.Set("tokenRanks", ranks);
            Napi::Int32Array ids = Napi::Int32Array::New(env, shared->topIds.size());
            std::copy(shared->topIds.begin(), shared->topIds.end(), ids.Data());
            r.Set("topIds", ids);
            r.Set("topLogprobs", floats(shared->topLogprobs));
            r.Set("topN", shared->topN);
            if (!shared->nextTopIds.empty()) {
              Napi::Int32Array next = Napi::Int32Array::New(env, shared->nextTopIds.size());
              std::copy(shared->nextTopIds.begin(), shared->nextTopIds.end(), next.Data());
              r.Set("nextTopIds", next);
              r.Set("nextTopLogprobs", floats(shared->nextTopLogprobs));
            }
          } else {
            r.Set("logits", floats(shared->logits));
          }
          r.Set("numTokens", shared->numTokens);
          r.Set("vocabSize", shared->vocab);
          deferred.Resolve(r);
        });
      }, promptTopN, cancelId, nextTopN);
    } catch (...) {
      bridge_->endWork(env);
      throw;
    }
  } catch (const std::exception& e) {
    deferred.Reject(jsError(env, e).Value());
  } catch (...) {
    deferred.Reject(jsError(env, ErrorCode::Internal, "unknown native error in forward").Value());
  }
  return deferred.Promise();
}

Napi::Value EngineWrap::stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    EngineStats s = bridge_->engine->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("running", s.running);
    o.Set("waiting", s.waiting);
    o.Set("slotsUsed", s.slotsUsed);
    o.Set("steps", double(s.steps));
    o.Set("kvBlocksTotal", s.kvBlocksTotal);
    o.Set("kvBlocksFree", s.kvBlocksFree);
    o.Set("kvBlocksCached", s.kvBlocksCached);
    o.Set("prefixHitTokens", double(s.prefixHitTokens));
    o.Set("preemptions", double(s.preemptions));
    o.Set("scoring", s.scoring);
    o.Set("weightBytes", double(s.weightBytes));
    o.Set("kvCacheBytes", double(s.kvCacheBytes));
    o.Set("kvUsedBytes", double(s.kvUsedBytes));
    o.Set("adapterBytes", double(s.adapterBytes));
    return o;
  });
}

Napi::Value EngineWrap::dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  Bridge& b = *bridge_;
  if (b.disposed || b.released) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  b.disposeWaiters.push_back(deferred);
  if (!b.disposing) {
    b.disposing = true;
    b.beginWork(env);
    Tsfn tsfn = b.tsfn;
    // Runs on the engine thread after its last event batch; the task runs on the JS thread
    // after those events (the TSFN queue is FIFO).
    b.engine->shutdown([tsfn]() {
      Bridge::post(tsfn, [](Napi::Env env, Bridge& br) {
        br.engine->join();
        br.disposed = true;
        auto waiters = std::move(br.disposeWaiters);
        br.endWork(env);
        br.released = true;
        br.tsfn.Release();
        for (auto& d : waiters) d.Resolve(env.Undefined());
      });
    });
  }
  return deferred.Promise();
}

}  // namespace openlora
