// Engine errors with a stable code: what the N-API edge puts on the JS Error as `err.code`
// (native/errors.ts maps it to an HTTP status). Throw inside, convert at the edge: every C++
// layer throws `Error` (or a standard exception, classified by errorCodeOf), and only
// napi_errors.cc turns it into a JS value.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace openlora {

/**
 * Why an engine call failed. The names (errorCodeName) are part of the addon's contract:
 * never rename one, only add.
 *   invalid_argument   a caller-supplied value is out of range or malformed (the field is named)
 *   not_found          a file, tensor or adapter slot the caller named does not exist
 *   no_free_slot       every adapter slot (maxLoras) is loaded or loading
 *   busy               the target is in use (an adapter slot pinned by live sequences)
 *   out_of_memory      host or device allocation failed
 *   device_error       the compute device failed or is not available
 *   unsupported_model  a valid checkpoint this engine cannot run (architecture, activation, ...)
 *   bad_file           a model or adapter file is corrupt, truncated or inconsistent
 *   disposed           the engine was disposed
 *   internal           a bug: an invariant of the engine itself broke
 */
enum class ErrorCode { InvalidArgument, NotFound, NoFreeSlot, Busy, OutOfMemory, DeviceError, UnsupportedModel, BadFile, Disposed, Internal };

/** "invalid_argument", "not_found", ... (see ErrorCode). */
inline const char* errorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::NoFreeSlot: return "no_free_slot";
    case ErrorCode::Busy: return "busy";
    case ErrorCode::OutOfMemory: return "out_of_memory";
    case ErrorCode::DeviceError: return "device_error";
    case ErrorCode::UnsupportedModel: return "unsupported_model";
    case ErrorCode::BadFile: return "bad_file";
    case ErrorCode::Disposed: return "disposed";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

/**
 * An engine error: a code, a message for people (naming the field or file), and optionally the
 * field path alone (e.g. "EngineOptions.maxLoras", "SequenceParams.promptIds[3]") for the
 * OpenAI `param`.
 */
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, std::string field = "")
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}
  ErrorCode code() const { return code_; }
  /** The offending field's path, or "" when the error is not about one field. */
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

/** Throw Error(code, message, field). */
[[noreturn]] inline void raise(ErrorCode code, const std::string& message, const std::string& field = "") {
  throw Error(code, message, field);
}

/** Throw an invalid_argument Error naming `field` (the message should name it too). */
[[noreturn]] inline void invalidArgument(const std::string& field, const std::string& message) {
  throw Error(ErrorCode::InvalidArgument, message, field);
}

/**
 * The code of any exception: an Error's own; std::bad_alloc → out_of_memory;
 * std::invalid_argument / std::out_of_range → invalid_argument; anything else → internal
 * (every error a caller can cause is thrown as an Error, so an uncoded one is a bug).
 */
inline ErrorCode errorCodeOf(const std::exception& e) {
  if (auto* err = dynamic_cast<const Error*>(&e)) return err->code();
  if (dynamic_cast<const std::bad_alloc*>(&e)) return ErrorCode::OutOfMemory;
  if (dynamic_cast<const std::invalid_argument*>(&e) || dynamic_cast<const std::out_of_range*>(&e)) return ErrorCode::InvalidArgument;
  return ErrorCode::Internal;
}

/** The field of an Error, "" for any other exception. */
inline std::string errorFieldOf(const std::exception& e) {
  if (auto* err = dynamic_cast<const Error*>(&e)) return err->field();
  return "";
}

}  // namespace openlora
