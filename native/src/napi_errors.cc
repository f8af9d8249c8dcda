// See napi_errors.h.
#include "napi_errors.h"

namespace openlora {

Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message, const std::string& field) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, errorCodeName(code)));
  if (!field.empty()) err.Set("field", Napi::String::New(env, field));
  return err;
}

Napi::Error jsError(Napi::Env env, const std::exception& e) { return jsError(env, errorCodeOf(e), e.what(), errorFieldOf(e)); }

Napi::Promise rejectedPromise(Napi::Env env, ErrorCode code, const std::string& message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(jsError(env, code, message).Value());
  return d.Promise();
}

Napi::Promise rejectedPromise(Napi::Env env, const std::exception& e) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(jsError(env, e).Value());
  return d.Promise();
}

}  // namespace openlora
