// Recursive-descent JSON parser (RFC 8259). See json.h.
#include "json.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "errors.h"

namespace openlora {

JsonValue JsonValue::makeBool(bool b) {
  JsonValue v;
  v.type_ = Type::Bool;
  v.bool_ = b;
  return v;
}
JsonValue JsonValue::makeNumber(double d) {
  JsonValue v;
  v.type_ = Type::Number;
  v.number_ = d;
  return v;
}
JsonValue JsonValue::makeString(std::string s) {
  JsonValue v;
  v.type_ = Type::String;
  v.string_ = std::move(s);
  return v;
}
JsonValue JsonValue::makeArray(std::vector<JsonValue> items) {
  JsonValue v;
  v.type_ = Type::Array;
  v.items_ = std::move(items);
  return v;
}
JsonValue JsonValue::makeObject(std::map<std::string, JsonValue> members) {
  JsonValue v;
  v.type_ = Type::Object;
  v.members_ = std::move(members);
  return v;
}

const JsonValue* JsonValue::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  auto it = members_.find(key);
  return it == members_.end() ? nullptr : &it->second;
}

const char* JsonValue::typeName() const {
  switch (type_) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

namespace {

// NOTE(why): nesting is bounded so a hostile header cannot overflow the native stack.
constexpr int kMaxDepth = 128;

class Parser {
 public:
  Parser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  JsonValue parseDocument() {
    JsonValue v = parseValue(0);
    skipSpace();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const {
    raise(ErrorCode::BadFile, what_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + reason);
  }

  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) pos_++;
  }

  bool consume(const char* word) {
    size_t n = 0;
    while (word[n]) n++;
    if (s_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  JsonValue parseValue(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 128");
    skipSpace();
    if (pos_ >= s_.size()) fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parseObject(depth);
    if (c == '[') return parseArray(depth);
    if (c == '"') return JsonValue::makeString(parseString());
    if (c == '-' || (c >= '0' && c <= '9')) return parseNumber();
    if (consume("true")) return JsonValue::makeBool(true);
    if (consume("false")) return JsonValue::makeBool(false);
    if (consume("null")) return JsonValue();
    // Python's json.dumps writes these for non-finite floats; accept them (configs contain them rarely).
    if (consume("NaN")) return JsonValue::makeNumber(NAN);
    if (consume("Infinity")) return JsonValue::makeNumber(INFINITY);
    fail(std::string("unexpected character '") + c + "'");
  }

  JsonValue parseObject(int depth) {
    pos_++;  // '{'
    std::map<std::string, JsonValue> members;
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      pos_++;
      return JsonValue::makeObject(std::move(members));
    }
    for (;;) {
      skipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = parseString();
      skipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':'");
      pos_++;
      members[key] = parseValue(depth + 1);
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') { pos_++; continue; }
      if (pos_ < s_.size() && s_[pos_] == '}') { pos_++; break; }
      fail("expected ',' or '}'");
    }
    return JsonValue::makeObject(std::move(members));
  }

  JsonValue parseArray(int depth) {
    pos_++;  // '['
    std::vector<JsonValue> items;
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      pos_++;
      return JsonValue::makeArray(std::move(items));
    }
    for (;;) {
      items.push_back(parseValue(depth + 1));
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') { pos_++; continue; }
      if (pos_ < s_.size() && s_[pos_] == ']') { pos_++; break; }
      fail("expected ',' or ']'");
    }
    return JsonValue::makeArray(std::move(items));
  }

  JsonValue parseNumber() {
    size_t start = pos_;
    if (s_[pos_] == '-') pos_++;
    auto digits = [&] {
      size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') pos_++;
      return pos_ - d;
    };
    if (digits() == 0) fail("expected digits");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      pos_++;
      if (digits() == 0) fail("expected digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      pos_++;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) pos_++;
      if (digits() == 0) fail("expected exponent digits");
    }
    std::string text = s_.substr(start, pos_ - start);
    return JsonValue::makeNumber(std::strtod(text.c_str(), nullptr));
  }

  unsigned parseHex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  static void appendUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string parseString() {
    pos_++;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = parseHex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // surrogate pair
            if (!consume("\\u")) fail("lone high surrogate");
            unsigned lo = parseHex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
    return out;
  }

  const std::string& s_;
  const std::string& what_;
  size_t pos_ = 0;
};

}  // namespace

JsonValue parseJson(const std::string& text, const std::string& what) {
  return Parser(text, what).parseDocument();
}

}  // namespace openlora
