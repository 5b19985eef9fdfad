// The params check every kernel contract offers: check() returns an empty string when the params
// are usable, else a message that names the struct, the bad field and its value. Kernels call it
// at their entry points; adapters call it after filling a struct.
#pragma once

#include <cstdint>
#include <string>

namespace taco::kernels::detail {

// "Struct.field = value: what is required", or "" when ok.
inline std::string require(bool ok, const char* where, const char* field, int64_t value,
                           const char* rule) {
  if (ok) return {};
  return std::string(where) + "." + field + " = " + std::to_string(value) + ": " + rule;
}

inline std::string require_ptr(const void* ptr, const char* where, const char* field) {
  if (ptr != nullptr) return {};
  return std::string(where) + "." + field + " is null";
}

// The first non-empty message of a chain of requirements.
template <typename... Msgs>
std::string first_error(Msgs&&... msgs) {
  std::string out;
  ((out.empty() ? (void)(out = std::move(msgs)) : (void)0), ...);
  return out;
}

}  // namespace taco::kernels::detail
