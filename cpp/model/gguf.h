// GGUF files (llama.cpp's checkpoint format, versions 2 and 3): a header, metadata key/value
// pairs, tensor infos, then the tensor data, each tensor aligned to general.alignment. Files are
// untrusted: every length, count, type, shape and offset is checked against the file before
// anything is read through it, and every error names the file (std::invalid_argument).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/mapped_file.h"

namespace taco {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value. Integers of every width land in `i` (unsigned 64-bit values above INT64_MAX
// are rejected), floats in `f`. Arrays keep their element type and count, numeric elements in
// `ints` / `floats` and string elements in `strings`.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufValueType elem_type = GgufValueType::kUint8;
  uint64_t count = 0;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  bool is_int() const;
  bool is_float() const {
    return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
  }
};

// The ggml tensor types: name, values per block, bytes per block.
struct GgmlType {
  uint32_t id = 0;
  const char* name = "";
  int64_t block = 1;
  int64_t block_bytes = 0;
};

// nullptr for an id this reader does not know.
const GgmlType* ggml_type(uint32_t id);
// "Q4_1", or "type <id>" for an unknown id.
std::string ggml_type_name(uint32_t id);

struct GgufTensor {
  std::string name;
  uint32_t type = 0;           // ggml type id
  std::vector<int64_t> shape;  // outermost first: a 2-D weight [rows, cols] (GGUF's ne[1], ne[0])
  size_t offset = 0;           // from the start of the file
  size_t bytes = 0;            // 0 when the type is unknown (the tensor cannot be read)
  int64_t numel() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }

  // nullptr when absent.
  const GgufValue* find(const std::string& key) const;
  // Typed reads: the default when absent; std::invalid_argument naming the key when present with
  // another type. get_float accepts integers too.
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key, double def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  bool get_bool(const std::string& key, bool def) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(const std::string& name) const;
  // The tensor's bytes (bounds checked at open). Throws when its type is unknown.
  const uint8_t* data(const GgufTensor& t) const;
  // Keeps the mapping alive for views into it.
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::unordered_map<std::string, GgufValue> meta_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

// Whether path names a GGUF file: a regular file starting with the GGUF magic.
bool is_gguf_file(const std::string& path);

}  // namespace taco
