// A small strict JSON reader for untrusted model files (config.json, safetensors headers).
// Every malformed input ends in json::ParseError carrying the byte offset; depth and size are
// bounded so hostile input cannot exhaust the stack or memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace taco::json {

class ParseError : public std::invalid_argument {
 public:
  ParseError(const std::string& what, size_t pos);
  size_t pos() const { return pos_; }

 private:
  size_t pos_;
};

struct Limits {
  size_t max_depth = 64;
  size_t max_bytes = 100u << 20;  // safetensors caps its header at 100 MB too
};

enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

const char* type_name(Type t);

class Value {
 public:
  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  // A number written without fraction or exponent that fits int64 exactly.
  bool is_int() const { return type_ == Type::kNumber && is_int_; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed accessors throw std::invalid_argument on a type mismatch.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const std::vector<Value>& items() const;       // array elements, or object values
  const std::vector<std::string>& keys() const;  // object keys, parallel to items()
  size_t size() const { return items_.size(); }

  // Object lookup (linear; objects here are small or iterated): nullptr when absent.
  const Value* find(std::string_view key) const;

 private:
  friend class Parser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<Value> items_;
  std::vector<std::string> keys_;
};

// Parses exactly one JSON value spanning the whole text (surrounding whitespace allowed).
// Objects with duplicate keys are rejected.
Value parse(std::string_view text, const Limits& limits = {});

}  // namespace taco::json
