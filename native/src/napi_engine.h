// The NativeEngine JS class (native/types.ts): an ObjectWrap around Engine.
//
// Lifetime and threading:
//  - The engine thread never touches JS. It posts closures (JsTask) through one
//    ThreadSafeFunction; they run on the JS thread with the shared Bridge.
//  - The TSFN is Unref'd while the engine is idle, so a process that forgot dispose() can exit,
//    and Ref'd (with the JS object) while work is in flight (sequences, forwards, dispose).
//  - dispose(): the engine thread cancels everything, posts its last events and a final task;
//    that task joins the thread, resolves the promises and releases the TSFN.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

#include "engine.h"

namespace openlora {

/** What loadModel hands to the constructor (through a Napi::External). */
struct EngineInit {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  std::string backend;        // "cpu" | "cuda"
  std::string backendReason;  // ModelInfo.backendReason
  std::unique_ptr<ForwardBackend> forward;  // weights uploaded; moved into the Engine
};

struct Bridge;
class DeliveryGate;

/** Step batches the engine thread may have posted that the JS thread has not run yet (DeliveryGate). */
constexpr int kMaxDeliveriesInFlight = 2;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  /** Define the JS class; the constructor is internal (called by loadModel with an External). */
  static Napi::Function defineClass(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

 private:
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value loadAdapter(const Napi::CallbackInfo& info);
  Napi::Value unloadAdapter(const Napi::CallbackInfo& info);
  Napi::Value addSequence(const Napi::CallbackInfo& info);
  Napi::Value cancel(const Napi::CallbackInfo& info);
  /** cancelForward(cancelId): drop a forward / prompt scoring queued with that id (Engine::cancelForward). */
  Napi::Value cancelForward(const Napi::CallbackInfo& info);
  Napi::Value stop(const Napi::CallbackInfo& info);
  Napi::Value setTokenMask(const Napi::CallbackInfo& info);
  Napi::Value onEvents(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  /** Stop the engine thread and drop the TSFN without going through JS (GC / env teardown). */
  void stopNow();
  /** napi env cleanup hook (process exit without dispose): stopNow(). */
  static void cleanupHook(void* self);

  std::shared_ptr<Bridge> bridge_;
  std::shared_ptr<DeliveryGate> gate_;  // step batches posted and not yet run on the JS thread
  std::string backend_;
  std::string backendReason_;
  bool cleanupHookAdded_ = false;
};

}  // namespace openlora
