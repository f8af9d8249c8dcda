// Engine errors -> JS errors: the one place that builds a JS Error from a C++ exception.
// Every JS Error the addon throws or rejects with carries `code` (errorCodeName: "invalid_argument",
// "not_found", "no_free_slot", "busy", "out_of_memory", "device_error", "unsupported_model",
// "bad_file", "disposed", "internal") and, when the error is about one field, `field`
// (e.g. "EngineOptions.maxLoras"); native/errors.ts maps them to HTTP.
#pragma once

#include <napi.h>

#include <exception>
#include <string>

#include "errors.h"

namespace openlora {

/** A JS Error with message, `code` and (when non-empty) `field`. */
Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message, const std::string& field = "");
/** A JS Error for any C++ exception (code from errorCodeOf, field from errorFieldOf). */
Napi::Error jsError(Napi::Env env, const std::exception& e);
/** A promise already rejected with jsError(env, code, message). */
Napi::Promise rejectedPromise(Napi::Env env, ErrorCode code, const std::string& message);
/** A promise already rejected with jsError(env, e). */
Napi::Promise rejectedPromise(Napi::Env env, const std::exception& e);

/**
 * What an AsyncWorker keeps from the exception its Execute() caught (off the JS thread), to
 * build the coded JS Error in OnError (on it).
 */
struct CaughtError {
  ErrorCode code = ErrorCode::Internal;
  std::string field;
  /** Remember e's code and field. */
  void keep(const std::exception& e) {
    code = errorCodeOf(e);
    field = errorFieldOf(e);
  }
  /** The JS Error for the message Napi's AsyncWorker passed to OnError. */
  Napi::Error toJs(const Napi::Error& e) const { return jsError(e.Env(), code, e.Message(), field); }
};

}  // namespace openlora
