#include "model/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <stdexcept>

namespace taco {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little endian
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;  // GGML_MAX_DIMS

// Every type ggml defines today (ggml.h), so any file's bounds can be checked; the loaders read
// only some of them.
constexpr GgmlType kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

// A bounds-checked cursor over the header.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > left()) fail_file(path_, std::string("truncated: ") + what + " runs past the end");
  }

  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));  // little endian on every supported host
    pos_ += sizeof(T);
    return v;
  }

  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
      return 8;  // at least its length
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

bool is_int_type(GgufValueType t) {
  return t == GgufValueType::kUint8 || t == GgufValueType::kInt8 || t == GgufValueType::kUint16 ||
         t == GgufValueType::kInt16 || t == GgufValueType::kUint32 || t == GgufValueType::kInt32 ||
         t == GgufValueType::kUint64 || t == GgufValueType::kInt64;
}

// Reads one scalar of type t into v (integers into v.i, floats into v.f, ...).
void read_scalar(Cursor& c, GgufValueType t, GgufValue& v, const std::string& key,
                 const std::string& path) {
  switch (t) {
    case GgufValueType::kUint8:
      v.i = c.get<uint8_t>("a value");
      return;
    case GgufValueType::kInt8:
      v.i = c.get<int8_t>("a value");
      return;
    case GgufValueType::kUint16:
      v.i = c.get<uint16_t>("a value");
      return;
    case GgufValueType::kInt16:
      v.i = c.get<int16_t>("a value");
      return;
    case GgufValueType::kUint32:
      v.i = c.get<uint32_t>("a value");
      return;
    case GgufValueType::kInt32:
      v.i = c.get<int32_t>("a value");
      return;
    case GgufValueType::kUint64: {
      const uint64_t u = c.get<uint64_t>("a value");
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail_file(path, "metadata \"" + key + "\": integer out of range");
      }
      v.i = static_cast<int64_t>(u);
      return;
    }
    case GgufValueType::kInt64:
      v.i = c.get<int64_t>("a value");
      return;
    case GgufValueType::kFloat32:
      v.f = c.get<float>("a value");
      return;
    case GgufValueType::kFloat64:
      v.f = c.get<double>("a value");
      return;
    case GgufValueType::kBool: {
      const uint8_t b = c.get<uint8_t>("a value");
      if (b > 1) fail_file(path, "metadata \"" + key + "\": bool is neither 0 nor 1");
      v.b = b != 0;
      return;
    }
    case GgufValueType::kString:
      v.s = c.str("a string value");
      return;
    case GgufValueType::kArray:
      break;
  }
  fail_file(path, "metadata \"" + key + "\": unexpected value type");
}

GgufValueType value_type(uint32_t raw, const std::string& key, const std::string& path) {
  if (raw > static_cast<uint32_t>(GgufValueType::kFloat64)) {
    fail_file(path, "metadata \"" + key + "\": unknown value type " + std::to_string(raw));
  }
  return static_cast<GgufValueType>(raw);
}

GgufValue read_value(Cursor& c, const std::string& key, const std::string& path) {
  GgufValue v;
  v.type = value_type(c.get<uint32_t>("a value type"), key, path);
  if (v.type != GgufValueType::kArray) {
    read_scalar(c, v.type, v, key, path);
    return v;
  }
  v.elem_type = value_type(c.get<uint32_t>("an array type"), key, path);
  if (v.elem_type == GgufValueType::kArray) {
    fail_file(path, "metadata \"" + key + "\": arrays of arrays are not supported");
  }
  v.count = c.get<uint64_t>("an array length");
  // Every element takes at least scalar_size bytes: a count the file cannot hold is rejected
  // before anything is reserved.
  if (v.count > c.left() / scalar_size(v.elem_type)) {
    fail_file(path, "metadata \"" + key + "\": array of " + std::to_string(v.count) +
                        " elements runs past the end");
  }
  GgufValue elem;
  for (uint64_t n = 0; n < v.count; ++n) {
    read_scalar(c, v.elem_type, elem, key, path);
    if (v.elem_type == GgufValueType::kString) {
      v.strings.push_back(std::move(elem.s));
    } else if (v.elem_type == GgufValueType::kFloat32 || v.elem_type == GgufValueType::kFloat64) {
      v.floats.push_back(elem.f);
    } else if (v.elem_type == GgufValueType::kBool) {
      v.ints.push_back(elem.b ? 1 : 0);
    } else {
      v.ints.push_back(elem.i);
    }
  }
  return v;
}

}  // namespace

bool GgufValue::is_int() const { return is_int_type(type); }

const GgmlType* ggml_type(uint32_t id) {
  for (const GgmlType& t : kTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

std::string ggml_type_name(uint32_t id) {
  const GgmlType* t = ggml_type(id);
  return t ? std::string(t->name) : "type " + std::to_string(id);
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_shared<MappedFile>(path)) {
  Cursor c(file_->data(), file_->size(), path);
  if (file_->size() < 4 || c.get<uint32_t>("the magic") != kMagic) {
    fail_file(path, "not a GGUF file (no GGUF magic)");
  }
  version_ = c.get<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    fail_file(path, "GGUF version " + std::to_string(version_) +
                        " is not supported (2 and 3 are; big-endian files are not)");
  }
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // A key/value pair takes at least 12 bytes and a tensor info at least 24.
  if (n_kv > c.left() / 12 || n_tensors > c.left() / 24) {
    fail_file(path, "tensor or metadata count exceeds the file");
  }
  for (uint64_t n = 0; n < n_kv; ++n) {
    std::string key = c.str("a metadata key");
    GgufValue v = read_value(c, key, path);
    if (!meta_.emplace(key, std::move(v)).second) {
      fail_file(path, "metadata key \"" + key + "\" appears twice");
    }
  }
  uint64_t alignment = kDefaultAlignment;
  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_int() || a->i <= 0 || (a->i & (a->i - 1)) != 0 || a->i > (1 << 20)) {
      fail_file(path, "general.alignment must be a power of two");
    }
    alignment = static_cast<uint64_t>(a->i);
  }
  std::vector<uint64_t> rel_offsets;
  for (uint64_t n = 0; n < n_tensors; ++n) {
    GgufTensor t;
    t.name = c.str("a tensor name");
    const std::string where = "tensor \"" + t.name + "\": ";
    const uint32_t n_dims = c.get<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) fail_file(path, where + "must have 1 to 4 dimensions");
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t v = c.get<uint64_t>("a tensor dimension");
      if (v == 0 || v > (uint64_t{1} << 40) || numel > (uint64_t{1} << 50) / v) {
        fail_file(path, where + "bad dimension " + std::to_string(v));
      }
      numel *= v;
      ne[d] = static_cast<int64_t>(v);
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    t.type = c.get<uint32_t>("a tensor type");
    const uint64_t off = c.get<uint64_t>("a tensor offset");
    if (off % alignment != 0) fail_file(path, where + "data offset is not aligned");
    if (const GgmlType* ty = ggml_type(t.type)) {
      if (ne[0] % ty->block != 0) {
        fail_file(path, where + "row length " + std::to_string(ne[0]) +
                            " is not a multiple of the " + ty->name + " block size " +
                            std::to_string(ty->block));
      }
      t.bytes = static_cast<size_t>(numel / ty->block * ty->block_bytes);
    }
    rel_offsets.push_back(off);
    if (!by_name_.emplace(t.name, tensors_.size()).second) {
      fail_file(path, where + "appears twice");
    }
    tensors_.push_back(std::move(t));
  }
  const uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  for (size_t n = 0; n < tensors_.size(); ++n) {
    GgufTensor& t = tensors_[n];
    if (data_start > file_->size() || rel_offsets[n] > file_->size() - data_start ||
        t.bytes > file_->size() - data_start - rel_offsets[n]) {
      fail_file(path, "tensor \"" + t.name + "\": data runs past the end of the file");
    }
    t.offset = static_cast<size_t>(data_start + rel_offsets[n]);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = meta_.find(key);
  return it == meta_.end() ? nullptr : &it->second;
}

int64_t GgufFile::get_int(const std::string& key, int64_t def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (!v->is_int()) fail_file(path(), "metadata \"" + key + "\" must be an integer");
  return v->i;
}

double GgufFile::get_float(const std::string& key, double def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->is_int()) return static_cast<double>(v->i);
  if (!v->is_float()) fail_file(path(), "metadata \"" + key + "\" must be a number");
  return v->f;
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type != GgufValueType::kString) {
    fail_file(path(), "metadata \"" + key + "\" must be a string");
  }
  return v->s;
}

bool GgufFile::get_bool(const std::string& key, bool def) const {
  const GgufValue* v = find(key);
  if (!v) return def;
  if (v->type != GgufValueType::kBool) fail_file(path(), "metadata \"" + key + "\" must be a bool");
  return v->b;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::data(const GgufTensor& t) const {
  if (!ggml_type(t.type)) {
    fail_file(path(), "tensor \"" + t.name + "\" has unknown ggml type " + std::to_string(t.type));
  }
  return file_->data() + t.offset;
}

bool is_gguf_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint32_t magic = 0;
  const bool ok = ::read(fd, &magic, 4) == 4 && magic == kMagic;
  ::close(fd);
  return ok;
}

}  // namespace taco
