// Minimal JSON reader for config.json, model.safetensors.index.json and safetensors headers.
//
// NOTE(why): no third-party JSON library is available offline, and we only ever *read* small
// documents, so this is a ~200-line recursive-descent parser (RFC 8259) into a tree of
// JsonValue. Numbers are kept as double (exact for the integers we read: offsets < 2^53).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace openlora {

/** A parsed JSON value. Objects keep keys sorted (std::map); duplicate keys keep the last. */
class JsonValue {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  JsonValue() = default;
  static JsonValue makeBool(bool b);
  static JsonValue makeNumber(double d);
  static JsonValue makeString(std::string s);
  static JsonValue makeArray(std::vector<JsonValue> items);
  static JsonValue makeObject(std::map<std::string, JsonValue> members);

  Type type() const { return type_; }
  bool isNull() const { return type_ == Type::Null; }
  bool isBool() const { return type_ == Type::Bool; }
  bool isNumber() const { return type_ == Type::Number; }
  bool isString() const { return type_ == Type::String; }
  bool isArray() const { return type_ == Type::Array; }
  bool isObject() const { return type_ == Type::Object; }

  bool asBool() const { return bool_; }
  double asNumber() const { return number_; }
  const std::string& asString() const { return string_; }
  const std::vector<JsonValue>& items() const { return items_; }
  const std::map<std::string, JsonValue>& members() const { return members_; }

  /** The member `key` of an object, or nullptr when absent (or when this is not an object). */
  const JsonValue* find(const std::string& key) const;

  /** Name of the type, for error messages ("number", "object", ...). */
  const char* typeName() const;

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::map<std::string, JsonValue> members_;
};

/**
 * Parse a complete JSON document.
 * @param text the document (UTF-8).
 * @param what a name for error messages, e.g. the file path.
 * @throws Error (errors.h) "<what>: invalid JSON at byte N: <reason>".
 */
JsonValue parseJson(const std::string& text, const std::string& what);

}  // namespace openlora
