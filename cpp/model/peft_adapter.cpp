#include "model/peft_adapter.h"

#include <sys/stat.h>

#include <cmath>
#include <stdexcept>

#include "model/json.h"
#include "model/safetensors.h"

namespace taco {

namespace {

constexpr const char* kTargetNames[kNumLoraTargets] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};

bool is_file(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

[[noreturn]] void fail(const std::string& dir, const std::string& what) {
  throw std::invalid_argument("adapter " + dir + ": " + what);
}

// adapter_config.json, parsed; a missing directory or file fails with the adapter's name.
json::Value read_config(const std::string& dir) {
  if (!is_dir(dir)) fail(dir, "no such directory");
  const std::string path = dir + "/adapter_config.json";
  if (!is_file(path)) fail(dir, "no adapter_config.json (a PEFT adapter directory has one)");
  json::Value v;
  try {
    v = json::parse(read_text_file(path, 1u << 20));
  } catch (const std::invalid_argument& e) {
    fail(dir, std::string("adapter_config.json is not valid JSON: ") + e.what());
  }
  if (!v.is_object()) fail(dir, "adapter_config.json must hold a JSON object");
  return v;
}

std::string str_field(const json::Value& v, const char* key, const std::string& dflt) {
  const json::Value* f = v.find(key);
  return f != nullptr && f->is_string() ? f->as_string() : dflt;
}

WeightStore open_weights(const std::string& dir) {
  const std::string path = dir + "/adapter_model.safetensors";
  if (!is_file(path)) {
    if (is_file(dir + "/adapter_model.bin")) {
      fail(dir,
           "only adapter_model.safetensors is read, not adapter_model.bin (save the adapter "
           "with safe_serialization=True)");
    }
    fail(dir, "no adapter_model.safetensors");
  }
  try {
    return WeightStore::open_files({path});
  } catch (const std::exception& e) {
    fail(dir, std::string("adapter_model.safetensors is unreadable: ") + e.what());
  }
}

// "…layers.<i>.<self_attn|mlp>.<target>.lora_<A|B>.weight" -> layer, target, is_b. False for
// names of another form.
bool parse_name(const std::string& name, int64_t* layer, int* target, bool* is_b) {
  const size_t at = name.find("layers.");
  if (at == std::string::npos) return false;
  size_t pos = at + 7;
  size_t end = pos;
  while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
  if (end == pos || end - pos > 6 || end >= name.size() || name[end] != '.') return false;
  *layer = std::stoll(name.substr(pos, end - pos));
  std::string rest = name.substr(end + 1);
  for (const char* block : {"self_attn.", "mlp."}) {
    if (rest.rfind(block, 0) == 0) rest = rest.substr(std::string(block).size());
  }
  for (const char* suffix : {".lora_A.weight", ".lora_B.weight"}) {
    const std::string s(suffix);
    if (rest.size() <= s.size() || rest.compare(rest.size() - s.size(), s.size(), s) != 0) {
      continue;
    }
    const std::string module = rest.substr(0, rest.size() - s.size());
    *is_b = s[6] == 'B';
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (module == kTargetNames[t]) {
        *target = t;
        return true;
      }
    }
    *target = -1;  // a module name the model lacks
    return true;
  }
  return false;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

const char* lora_target_name(LoraTarget t) { return kTargetNames[static_cast<int>(t)]; }

int64_t LoraAdapter::bytes() const {
  int64_t n = 0;
  for (const auto& layer : modules) {
    for (const LoraModule& m : layer) {
      if (m.a.defined()) n += (m.a.numel() + m.b.numel()) * 4;
    }
  }
  return n;
}

LoraAdapter load_lora_adapter(const std::string& dir, const ModelConfig& c, int64_t max_rank) {
  const json::Value cfg = read_config(dir);
  const std::string type = str_field(cfg, "peft_type", "");
  if (type != "LORA") {
    fail(dir, "peft_type is \"" + type +
                  "\", not \"LORA\" (a prompt-tuning adapter goes in a "
                  "PromptAdapterRequest)");
  }
  const json::Value* alpha_v = cfg.find("lora_alpha");
  if (alpha_v == nullptr || !alpha_v->is_number() || !(alpha_v->as_double() > 0)) {
    fail(dir, "lora_alpha must be a positive number in adapter_config.json");
  }
  const double alpha = alpha_v->as_double();
  const json::Value* rs = cfg.find("use_rslora");
  const bool rslora = rs != nullptr && rs->is_bool() && rs->as_bool();
  const json::Value* dora = cfg.find("use_dora");
  if (dora != nullptr && dora->is_bool() && dora->as_bool()) fail(dir, "DoRA is not supported");
  const std::string bias = str_field(cfg, "bias", "none");
  if (bias != "none") fail(dir, "bias=\"" + bias + "\" is not supported (only \"none\")");
  const json::Value* ap = cfg.find("alpha_pattern");
  if (ap != nullptr && ap->is_object() && ap->size() > 0) {
    fail(dir, "alpha_pattern is not supported (one lora_alpha for every module)");
  }
  const json::Value* fifo = cfg.find("fan_in_fan_out");
  if (fifo != nullptr && fifo->is_bool() && fifo->as_bool()) {
    fail(dir, "fan_in_fan_out=true is not supported (Llama-family projections are nn.Linear)");
  }
  for (const char* key : {"lora_bias", "layer_replication", "trainable_token_indices"}) {
    const json::Value* f = cfg.find(key);
    if (f != nullptr && !f->is_null() && !(f->is_bool() && !f->as_bool())) {
      fail(dir, std::string(key) + " is not supported");
    }
  }
  const json::Value* mts = cfg.find("modules_to_save");
  if (mts != nullptr && mts->is_array() && mts->size() > 0) {
    fail(dir, "modules_to_save is not supported (the adapter may only add LoRA weights)");
  }

  const WeightStore w = open_weights(dir);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const int64_t ins[kNumLoraTargets] = {H, H, H, q, H, H, I};
  const int64_t outs[kNumLoraTargets] = {q, kv, kv, H, I, I, H};
  LoraAdapter out;
  out.path = dir;
  out.modules.resize(c.num_layers);
  for (const std::string& name : w.names()) {
    int64_t layer = 0;
    int target = 0;
    bool is_b = false;
    if (!parse_name(name, &layer, &target, &is_b)) {
      fail(dir, "tensor \"" + name +
                    "\" is not a LoRA weight of a decoder layer's projection "
                    "(embedding and LM-head adapters are not supported)");
    }
    if (target < 0) {
      fail(dir, "tensor \"" + name +
                    "\" targets a module the model lacks (LoRA targets: q_proj, "
                    "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }
    if (layer >= c.num_layers) {
      fail(dir, "tensor \"" + name + "\" is for layer " + std::to_string(layer) +
                    ", the model has " + std::to_string(c.num_layers));
    }
    if (is_b) continue;
    std::string b_name = name;
    b_name.replace(b_name.size() - 13, 6, "lora_B");
    if (!w.has(b_name)) fail(dir, "tensor \"" + name + "\" has no \"" + b_name + "\"");
    const std::vector<int64_t> as = w.shape(name), bs = w.shape(b_name);
    const int64_t r = as.size() == 2 ? as[0] : 0;
    if (as.size() != 2 || bs.size() != 2 || r <= 0 || as[1] != ins[target] ||
        bs[0] != outs[target] || bs[1] != r) {
      fail(dir, "\"" + name + "\" " + shape_str(as) + " and \"" + b_name + "\" " + shape_str(bs) +
                    " do not fit " + kTargetNames[target] + " [" + std::to_string(outs[target]) +
                    ", " + std::to_string(ins[target]) + "] of the model");
    }
    if (r > max_rank) {
      fail(dir, "rank " + std::to_string(r) + " of " + kTargetNames[target] +
                    " is above max_lora_rank=" + std::to_string(max_rank));
    }
    const double scale = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r;
    LoraModule& m = out.modules[layer][target];
    if (m.a.defined()) {
      fail(dir, "two tensors are layer " + std::to_string(layer) + "'s " + kTargetNames[target] +
                    " lora_A (\"" + name + "\" and another)");
    }
    m.a = w.load(name, at::kFloat);
    m.b = w.load(b_name, at::kFloat) * scale;
    out.rank = std::max(out.rank, r);
  }
  for (const std::string& name : w.names()) {
    int64_t layer = 0;
    int target = 0;
    bool is_b = false;
    parse_name(name, &layer, &target, &is_b);
    if (is_b && !out.modules[layer][target].a.defined()) {
      fail(dir, "tensor \"" + name + "\" has no lora_A");
    }
  }
  if (out.rank == 0) fail(dir, "adapter_model.safetensors holds no LoRA weights");
  return out;
}

at::Tensor load_prompt_adapter(const std::string& dir, const ModelConfig& c, int64_t max_tokens) {
  const json::Value cfg = read_config(dir);
  const std::string type = str_field(cfg, "peft_type", "");
  if (type != "PROMPT_TUNING") {
    fail(dir, "peft_type is \"" + type + "\", not \"PROMPT_TUNING\"");
  }
  const json::Value* subs = cfg.find("num_transformer_submodules");
  if (subs != nullptr && subs->is_int() && subs->as_int() != 1) {
    fail(dir, "num_transformer_submodules must be 1 for a decoder-only model");
  }
  const WeightStore w = open_weights(dir);
  if (!w.has("prompt_embeddings")) fail(dir, "adapter_model.safetensors has no prompt_embeddings");
  const std::vector<int64_t> s = w.shape("prompt_embeddings");
  if (s.size() != 2 || s[0] <= 0 || s[1] != c.hidden_size) {
    fail(dir, "prompt_embeddings " + shape_str(s) + " must be [num_virtual_tokens, " +
                  std::to_string(c.hidden_size) + "] (the model's hidden size)");
  }
  const json::Value* n = cfg.find("num_virtual_tokens");
  if (n != nullptr && n->is_int() && n->as_int() != s[0]) {
    fail(dir, "num_virtual_tokens=" + std::to_string(n->as_int()) + " but prompt_embeddings has " +
                  std::to_string(s[0]) + " rows");
  }
  if (s[0] > max_tokens) {
    fail(dir, std::to_string(s[0]) +
                  " virtual tokens, above max_prompt_adapter_token=" + std::to_string(max_tokens));
  }
  return w.load("prompt_embeddings", at::kFloat);
}

}  // namespace taco
