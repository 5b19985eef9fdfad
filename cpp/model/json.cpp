#include "model/json.h"

#include <charconv>
#include <cmath>
#include <unordered_set>

namespace taco::json {

ParseError::ParseError(const std::string& what, size_t pos)
    : std::invalid_argument(what + " at byte " + std::to_string(pos)), pos_(pos) {}

const char* type_name(Type t) {
  switch (t) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "bool";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "?";
}

namespace {

void expect_type(Type have, Type want) {
  if (have != want) {
    throw std::invalid_argument(std::string("JSON value is ") + type_name(have) + ", expected " +
                                type_name(want));
  }
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

bool Value::as_bool() const {
  expect_type(type_, Type::kBool);
  return bool_;
}

double Value::as_double() const {
  expect_type(type_, Type::kNumber);
  return number_;
}

int64_t Value::as_int() const {
  expect_type(type_, Type::kNumber);
  if (!is_int_) throw std::invalid_argument("JSON number is not an integer");
  return int_;
}

const std::string& Value::as_string() const {
  expect_type(type_, Type::kString);
  return string_;
}

const std::vector<Value>& Value::items() const {
  if (type_ != Type::kArray) expect_type(type_, Type::kObject);
  return items_;
}

const std::vector<std::string>& Value::keys() const {
  expect_type(type_, Type::kObject);
  return keys_;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return &items_[i];
  }
  return nullptr;
}

// Recursive descent over the text; depth is bounded by Limits::max_depth.
class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : s_(text), limits_(limits) {}

  Value parse_document() {
    if (s_.size() > limits_.max_bytes) fail("JSON text larger than the limit");
    Value v;
    skip_ws();
    parse_value(v, 0);
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters after JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw ParseError(what, i_); }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }

  void expect_literal(std::string_view lit) {
    if (s_.substr(i_, lit.size()) != lit) fail("invalid literal");
    i_ += lit.size();
  }

  void parse_value(Value& v, size_t depth) {
    if (depth >= limits_.max_depth) fail("JSON nested deeper than the limit");
    if (i_ >= s_.size()) fail("unexpected end of JSON");
    switch (s_[i_]) {
      case '{':
        return parse_object(v, depth);
      case '[':
        return parse_array(v, depth);
      case '"':
        v.type_ = Type::kString;
        return parse_string(v.string_);
      case 't':
        expect_literal("true");
        v.type_ = Type::kBool;
        v.bool_ = true;
        return;
      case 'f':
        expect_literal("false");
        v.type_ = Type::kBool;
        return;
      case 'n':
        expect_literal("null");
        v.type_ = Type::kNull;
        return;
      default:
        return parse_number(v);
    }
  }

  void parse_object(Value& v, size_t depth) {
    v.type_ = Type::kObject;
    ++i_;
    skip_ws();
    if (peek() == '}') {
      ++i_;
      return;
    }
    std::unordered_set<std::string> seen;
    while (true) {
      skip_ws();
      if (peek() != '"') fail("expected object key string");
      std::string key;
      size_t key_pos = i_;
      parse_string(key);
      if (!seen.insert(key).second)
        throw ParseError("duplicate object key \"" + key + "\"", key_pos);
      skip_ws();
      if (peek() != ':') fail("expected ':' after object key");
      ++i_;
      skip_ws();
      v.keys_.push_back(std::move(key));
      v.items_.emplace_back();
      parse_value(v.items_.back(), depth + 1);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == '}') {
        ++i_;
        return;
      }
      fail("expected ',' or '}' in object");
    }
  }

  void parse_array(Value& v, size_t depth) {
    v.type_ = Type::kArray;
    ++i_;
    skip_ws();
    if (peek() == ']') {
      ++i_;
      return;
    }
    while (true) {
      skip_ws();
      v.items_.emplace_back();
      parse_value(v.items_.back(), depth + 1);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == ']') {
        ++i_;
        return;
      }
      fail("expected ',' or ']' in array");
    }
  }

  uint32_t parse_hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape");
    uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        cp |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        cp |= c - 'A' + 10;
      } else {
        fail("invalid hex digit in \\u escape");
      }
    }
    return cp;
  }

  void parse_unicode_escape(std::string& out) {
    uint32_t cp = parse_hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (s_.substr(i_, 2) != "\\u") fail("high surrogate without low surrogate");
      i_ += 2;
      uint32_t lo = parse_hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate without low surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
  }

  void parse_string(std::string& out) {
    ++i_;  // opening quote
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u':
          parse_unicode_escape(out);
          break;
        default:
          --i_;
          fail("invalid escape character");
      }
    }
  }

  size_t skip_digits() {
    size_t n = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_, ++n;
    return n;
  }

  // Grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  void parse_number(Value& v) {
    size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (skip_digits() == 0) {
      fail("invalid JSON value");
    }
    bool integral = true;
    if (peek() == '.') {
      ++i_;
      integral = false;
      if (skip_digits() == 0) fail("expected digits after decimal point");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      integral = false;
      if (peek() == '+' || peek() == '-') ++i_;
      if (skip_digits() == 0) fail("expected digits in exponent");
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    v.type_ = Type::kNumber;
    double d = 0;
    auto r = std::from_chars(first, last, d);
    if (r.ec != std::errc() || r.ptr != last || !std::isfinite(d)) {
      i_ = start;
      fail("number out of range");
    }
    v.number_ = d;
    if (integral) {
      int64_t n = 0;
      auto ri = std::from_chars(first, last, n);
      v.is_int_ = ri.ec == std::errc() && ri.ptr == last;
      v.int_ = n;
    }
  }

  std::string_view s_;
  Limits limits_;
  size_t i_ = 0;
};

Value parse(std::string_view text, const Limits& limits) {
  return Parser(text, limits).parse_document();
}

}  // namespace taco::json
