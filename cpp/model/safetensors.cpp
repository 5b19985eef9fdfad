#include "model/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

#include "model/json.h"
#include "model/mapped_file.h"
#include "model/model_config.h"

namespace taco {

namespace {

constexpr size_t kMaxHeaderBytes = 100u << 20;

// Byte size of every dtype the format defines (so bounds are checked for all of them); only
// the float types can be loaded.
size_t dtype_size(const std::string& dtype) {
  static const std::unordered_map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},      {"U16", 2},
      {"U32", 4}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

bool float_dtype(const std::string& dtype, at::ScalarType* out) {
  if (dtype == "F32") {
    *out = at::kFloat;
  } else if (dtype == "BF16") {
    *out = at::kBFloat16;
  } else if (dtype == "F16") {
    *out = at::kHalf;
  } else {
    return false;
  }
  return true;
}

// The dtypes view() returns: the float ones, and the integer and FP8 ones quantized checkpoints
// use.
bool stored_dtype(const std::string& dtype, at::ScalarType* out) {
  if (dtype == "I32") {
    *out = at::kInt;
  } else if (dtype == "I64") {
    *out = at::kLong;
  } else if (dtype == "I8") {
    *out = at::kChar;
  } else if (dtype == "U8") {
    *out = at::kByte;
  } else if (dtype == "I16") {
    *out = at::kShort;
  } else if (dtype == "F8_E4M3") {
    *out = at::kFloat8_e4m3fn;
  } else {
    return float_dtype(dtype, out);
  }
  return true;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) { fail_file(path, what); }

TensorEntry parse_entry(const std::string& path, const std::string& name, const json::Value& v,
                        size_t data_size) {
  const std::string where = "tensor \"" + name + "\": ";
  if (!v.is_object()) fail(path, where + "entry is not an object");
  const json::Value* dtype = v.find("dtype");
  const json::Value* shape = v.find("shape");
  const json::Value* offsets = v.find("data_offsets");
  if (!dtype || !dtype->is_string()) fail(path, where + "missing dtype");
  if (!shape || !shape->is_array()) fail(path, where + "missing shape");
  if (!offsets || !offsets->is_array() || offsets->size() != 2) {
    fail(path, where + "data_offsets must be [begin, end]");
  }
  TensorEntry e;
  e.dtype = dtype->as_string();
  const size_t item = dtype_size(e.dtype);
  if (item == 0) fail(path, where + "unknown dtype " + e.dtype);
  if (shape->size() > 8) fail(path, where + "too many dimensions");
  uint64_t numel = 1;
  for (const json::Value& d : shape->items()) {
    if (!d.is_int() || d.as_int() < 0) fail(path, where + "shape entries must be >= 0 integers");
    const uint64_t n = static_cast<uint64_t>(d.as_int());
    if (n != 0 && numel > (uint64_t{1} << 62) / n) fail(path, where + "shape too large");
    numel *= n;
    e.shape.push_back(d.as_int());
  }
  const json::Value& b = offsets->items()[0];
  const json::Value& en = offsets->items()[1];
  if (!b.is_int() || !en.is_int() || b.as_int() < 0 || en.as_int() < b.as_int()) {
    fail(path, where + "bad data_offsets");
  }
  e.begin = static_cast<size_t>(b.as_int());
  e.end = static_cast<size_t>(en.as_int());
  if (e.end > data_size) fail(path, where + "data_offsets beyond the end of the file");
  if (numel > (uint64_t{1} << 62) / item || e.end - e.begin != numel * item) {
    fail(path, where + "data_offsets do not match shape and dtype");
  }
  return e;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
  if (file_->size() < 8) fail(path, "file too short for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);  // little endian on every supported host
  if (header_len > kMaxHeaderBytes || header_len > file_->size() - 8) {
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file");
  }
  parse_header(static_cast<size_t>(header_len));
}

SafetensorsFile::~SafetensorsFile() = default;

void SafetensorsFile::parse_header(size_t header_len) {
  json::Value root;
  try {
    root =
        json::parse(std::string_view(reinterpret_cast<const char*>(file_->data() + 8), header_len));
  } catch (const json::ParseError& e) {
    fail(path(), std::string("invalid header JSON: ") + e.what());
  }
  if (!root.is_object()) fail(path(), "header is not a JSON object");
  data_start_ = 8 + header_len;
  const size_t data_size = file_->size() - data_start_;
  const auto& keys = root.keys();
  const auto& values = root.items();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == "__metadata__") continue;
    entries_.emplace(keys[i], parse_entry(path(), keys[i], values[i], data_size));
  }
}

WeightStore WeightStore::open_files(const std::vector<std::string>& paths) {
  WeightStore store;
  store.source_ = paths.empty() ? std::string("checkpoint") : paths[0];
  for (const std::string& path : paths) {
    auto file = std::make_shared<SafetensorsFile>(path);
    for (const auto& kv : file->entries()) {
      if (!store.where_.emplace(kv.first, store.files_.size()).second) {
        fail(path, "tensor \"" + kv.first + "\" also appears in another shard");
      }
    }
    store.files_.push_back(std::move(file));
  }
  return store;
}

WeightStore WeightStore::open_dir(const std::string& model_dir) {
  const std::string single = model_dir + "/model.safetensors";
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  if (::access(index_path.c_str(), R_OK) != 0) {
    if (::access(single.c_str(), R_OK) != 0) {
      throw std::invalid_argument(model_dir +
                                  ": no model.safetensors or model.safetensors.index.json");
    }
    WeightStore store = open_files({single});
    store.source_ = model_dir;
    return store;
  }
  json::Value index;
  try {
    index = json::parse(read_text_file(index_path));
  } catch (const json::ParseError& e) {
    fail(index_path, std::string("invalid JSON: ") + e.what());
  }
  const json::Value* map = index.find("weight_map");
  if (!map || !map->is_object()) fail(index_path, "missing \"weight_map\" object");
  std::vector<std::string> shards;
  std::unordered_set<std::string> seen;
  for (const json::Value& file : map->items()) {
    if (!file.is_string()) fail(index_path, "weight_map values must be file names");
    const std::string& f = file.as_string();
    // Shard names are plain file names inside the model directory: no paths, no traversal.
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
      fail(index_path, "bad shard file name \"" + f + "\"");
    }
    if (seen.insert(f).second) shards.push_back(model_dir + "/" + f);
  }
  WeightStore store = open_files(shards);
  store.source_ = model_dir;
  const auto& names = map->keys();
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = store.where_.find(names[i]);
    if (it == store.where_.end() ||
        store.files_[it->second]->path() != model_dir + "/" + map->items()[i].as_string()) {
      fail(index_path, "tensor \"" + names[i] + "\" is not in the shard the index names");
    }
  }
  return store;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

const TensorEntry& WeightStore::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    throw std::invalid_argument(source_ + ": missing tensor \"" + name + "\"");
  }
  return files_[it->second]->entries().at(name);
}

at::Tensor WeightStore::view(const std::string& name) const {
  const TensorEntry& e = entry(name);
  const auto& file = files_[where_.at(name)];
  at::ScalarType st;
  if (!stored_dtype(e.dtype, &st)) {
    fail(file->path(), "tensor \"" + name + "\" has dtype " + e.dtype +
                           " (supported: F32, BF16, F16, F8_E4M3, I32, I64, I16, I8, U8)");
  }
  void* ptr = const_cast<uint8_t*>(file->data(e));
  const auto opts = at::TensorOptions().dtype(st);
  if (reinterpret_cast<uintptr_t>(ptr) % at::elementSize(st) != 0) {
    at::Tensor out = at::empty(e.shape, opts);
    std::memcpy(out.data_ptr(), ptr, e.end - e.begin);
    return out;
  }
  std::shared_ptr<SafetensorsFile> keep = file;
  return at::from_blob(ptr, e.shape, [keep](void*) mutable { keep.reset(); }, opts);
}

at::Tensor WeightStore::load(const std::string& name, at::ScalarType dtype) const {
  at::ScalarType st;
  if (!float_dtype(entry(name).dtype, &st)) {
    fail(files_[where_.at(name)]->path(),
         "tensor \"" + name + "\" has dtype " + entry(name).dtype + " (supported: F32, BF16, F16)");
  }
  at::Tensor v = view(name);
  at::Tensor out = at::empty(v.sizes(), v.options().dtype(dtype));
  out.copy_(v);
  return out;
}

}  // namespace taco
