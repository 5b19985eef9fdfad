// Memory-mapped safetensors checkpoints (one file or a sharded model.safetensors.index.json).
// Files are untrusted: the header length, JSON, dtypes, shapes and data offsets are checked
// against the file size before any tensor is touched; every error names the file.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/checkpoint.h"
#include "model/mapped_file.h"

namespace taco {

struct TensorEntry {
  std::string dtype;  // safetensors name: F32, BF16, F16, ...
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets into the file's data section
  size_t end = 0;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return file_->path(); }
  const std::unordered_map<std::string, TensorEntry>& entries() const { return entries_; }
  // Start of the tensor's bytes inside the mapping (already bounds-checked).
  const uint8_t* data(const TensorEntry& e) const { return file_->data() + data_start_ + e.begin; }

 private:
  void parse_header(size_t header_len);

  std::unique_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::unordered_map<std::string, TensorEntry> entries_;
};

// All tensors of a checkpoint directory, by name.
class WeightStore : public Checkpoint {
 public:
  // Opens <dir>/model.safetensors, or the shards listed in <dir>/model.safetensors.index.json.
  static WeightStore open_dir(const std::string& model_dir);
  // Opens explicit files (their tensor names must not collide).
  static WeightStore open_files(const std::vector<std::string>& paths);

  bool has(const std::string& name) const override { return where_.count(name) != 0; }
  std::vector<int64_t> shape(const std::string& name) const override { return entry(name).shape; }
  std::vector<std::string> names() const;
  const TensorEntry& entry(const std::string& name) const;

  // A float32/bfloat16/float16 tensor as a contiguous copy in `dtype`. Throws
  // std::invalid_argument naming the tensor and file when absent or of another dtype.
  at::Tensor load(const std::string& name, at::ScalarType dtype) const override;
  // The tensor with its stored dtype (float, F8_E4M3, or I32/I64/I16/I8/U8); a zero-copy view of
  // the mapping when suitably aligned (the view keeps the mapping alive), else a copy.
  at::Tensor view(const std::string& name) const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, size_t> where_;  // tensor name -> index into files_
  std::string source_;                             // the directory or first file, for errors
};

}  // namespace taco
