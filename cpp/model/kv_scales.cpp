#include "model/kv_scales.h"

#include <cmath>
#include <stdexcept>

#include "model/json.h"
#include "model/model_config.h"

namespace taco {

std::vector<double> read_kv_cache_scales(const std::string& path, int64_t num_layers) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("quantization_param_path " + path + ": " + what);
  };
  const json::Value root = json::parse(read_text_file(path, size_t{1} << 24));
  const json::Value* kv = root.is_object() ? root.find("kv_cache") : nullptr;
  if (!kv || !kv->is_object()) fail("no \"kv_cache\" object");
  const json::Value* dtype = kv->find("dtype");
  if (!dtype || !dtype->is_string() || dtype->as_string() != "float8_e4m3fn") {
    fail("kv_cache.dtype must be \"float8_e4m3fn\"");
  }
  const json::Value* factors = kv->find("scaling_factor");
  const json::Value* rank = factors && factors->is_object() ? factors->find("0") : nullptr;
  if (!rank || !rank->is_object()) fail("no kv_cache.scaling_factor for tensor-parallel rank 0");
  std::vector<double> scales(num_layers);
  for (int64_t l = 0; l < num_layers; ++l) {
    const json::Value* s = rank->find(std::to_string(l));
    if (!s) fail("no scaling factor for layer " + std::to_string(l));
    if (!s->is_number() || !(s->as_double() > 0.0) || !std::isfinite(s->as_double())) {
      fail("the scaling factor of layer " + std::to_string(l) + " must be a positive number");
    }
    scales[l] = s->as_double();
  }
  return scales;
}

}  // namespace taco
