#include "core/engine_options.h"

#include "core/sampling_options.h"

#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace taco {
namespace {

const std::pair<const char*, PreemptionMode> kPreemptionModes[] = {
    {"recompute", PreemptionMode::kRecompute},
    {"swap", PreemptionMode::kSwap},
};

const std::pair<const char*, LogprobsMode> kLogprobsModes[] = {
    {"processed_logprobs", LogprobsMode::kProcessedLogprobs},
    {"raw_logprobs", LogprobsMode::kRawLogprobs},
    {"processed_logits", LogprobsMode::kProcessedLogits},
    {"raw_logits", LogprobsMode::kRawLogits},
};

template <typename E, size_t N>
const char* name_of(const std::pair<const char*, E> (&table)[N], E value) {
  for (const auto& [name, v] : table) {
    if (v == value) return name;
  }
  return "unknown";
}

template <typename E, size_t N>
void parse_name(const std::pair<const char*, E> (&table)[N], const std::string& name,
                const char* option, E* out) {
  std::string allowed;
  for (const auto& [n, v] : table) {
    if (name == n) {
      *out = v;
      return;
    }
    allowed += (allowed.empty() ? "'" : ", '") + std::string(n) + "'";
  }
  throw std::invalid_argument(std::string(option) + " must be one of " + allowed + ", got '" +
                              name + "'");
}

std::string value_text(const std::string& v) { return "'" + v + "'"; }
std::string value_text(bool v) { return v ? "true" : "false"; }
std::string value_text(PreemptionMode v) { return to_string(v); }
std::string value_text(LogprobsMode v) { return to_string(v); }
template <typename T>
std::string value_text(T v) {
  std::ostringstream out;  // 1.5, not to_string's 1.500000
  out << v;
  return out.str();
}
template <typename T>
std::string value_text(const std::optional<T>& v) {
  return v ? value_text(*v) : "none";
}
template <typename T>
std::string value_text(const std::vector<T>&) {
  return "a list";
}

bool one_of(const std::string& v, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (v == n) return true;
  }
  return false;
}

bool one_of_int(int64_t v, std::initializer_list<int64_t> values) {
  for (int64_t x : values) {
    if (v == x) return true;
  }
  return false;
}

}  // namespace

const char* to_string(PreemptionMode mode) { return name_of(kPreemptionModes, mode); }
const char* to_string(LogprobsMode mode) { return name_of(kLogprobsModes, mode); }

void parse(const std::string& name, const char* option, PreemptionMode* out) {
  parse_name(kPreemptionModes, name, option, out);
}
void parse(const std::string& name, const char* option, LogprobsMode* out) {
  parse_name(kLogprobsModes, name, option, out);
}

void validate(const EngineOptions& o) {
#define TACO_OPTION_CHECK(type, name, value, ok, rule)                                           \
  {                                                                                              \
    [[maybe_unused]] const type& v = o.name;                                                     \
    if (!(ok)) {                                                                                 \
      throw std::invalid_argument(std::string(#name " must be " rule ", got ") + value_text(v)); \
    }                                                                                            \
  }
  TACO_ENGINE_OPTIONS(TACO_OPTION_CHECK)
}

void validate(const SamplingOptions& o) {
  TACO_SAMPLING_OPTIONS(TACO_OPTION_CHECK)
#undef TACO_OPTION_CHECK
}

}  // namespace taco
