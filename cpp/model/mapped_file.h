// A whole file mapped read-only into memory (a private mapping: a tensor view written by mistake
// copies the page, never the file). Checkpoint readers parse it in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace taco {

class MappedFile {
 public:
  // Throws std::invalid_argument naming the path when it is not a readable regular file.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint8_t* data() const { return base_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Throws std::invalid_argument("<path>: <what>").
[[noreturn]] void fail_file(const std::string& path, const std::string& what);

}  // namespace taco
