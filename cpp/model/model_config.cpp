#include "model/model_config.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "model/json.h"

namespace taco {

namespace {

struct Arch {
  const char* name;
  ModelFamily family;
};

constexpr Arch kArchitectures[] = {
    {"LlamaForCausalLM", ModelFamily::kLlama},
    {"MistralForCausalLM", ModelFamily::kLlama},
    {"Qwen2ForCausalLM", ModelFamily::kQwen2},
    {"Qwen3ForCausalLM", ModelFamily::kQwen3},
};

// Field readers: absent or null falls back to the default; a wrong type is an error.
class Fields {
 public:
  Fields(const json::Value& obj, const std::string& source) : obj_(obj), source_(source) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(source_ + ": " + what);
  }

  const json::Value* get(const char* key) const {
    const json::Value* v = obj_.find(key);
    return (v && !v->is_null()) ? v : nullptr;
  }

  int64_t integer(const char* key, int64_t dflt, bool required = false) const {
    const json::Value* v = get(key);
    if (!v) {
      if (required) fail(std::string("missing \"") + key + "\"");
      return dflt;
    }
    if (!v->is_int()) fail(std::string("\"") + key + "\" must be an integer");
    return v->as_int();
  }

  int64_t positive(const char* key, int64_t dflt, bool required = false) const {
    int64_t n = integer(key, dflt, required);
    if (n <= 0 || n > (int64_t{1} << 31)) fail(std::string("\"") + key + "\" must be positive");
    return n;
  }

  double number(const char* key, double dflt) const {
    const json::Value* v = get(key);
    if (!v) return dflt;
    if (!v->is_number()) fail(std::string("\"") + key + "\" must be a number");
    return v->as_double();
  }

  bool boolean(const char* key, bool dflt) const {
    const json::Value* v = get(key);
    if (!v) return dflt;
    if (!v->is_bool()) fail(std::string("\"") + key + "\" must be true or false");
    return v->as_bool();
  }

  std::string string(const char* key, const std::string& dflt) const {
    const json::Value* v = get(key);
    if (!v) return dflt;
    if (!v->is_string()) fail(std::string("\"") + key + "\" must be a string");
    return v->as_string();
  }

 private:
  const json::Value& obj_;
  const std::string& source_;
};

json::Value parse_object(std::string_view text, const std::string& source) {
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::ParseError& e) {
    throw std::invalid_argument(source + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw std::invalid_argument(source + ": top level must be an object");
  return root;
}

// eos_token_id may be an int, a list of ints, or null.
std::vector<int32_t> read_eos(const Fields& f) {
  std::vector<int32_t> ids;
  const json::Value* v = f.get("eos_token_id");
  if (!v) return ids;
  auto add = [&](const json::Value& x) {
    if (!x.is_int() || x.as_int() < 0 || x.as_int() > INT32_MAX) {
      f.fail("\"eos_token_id\" must be a non-negative integer or a list of them");
    }
    ids.push_back(static_cast<int32_t>(x.as_int()));
  };
  if (v->is_array()) {
    for (const auto& x : v->items()) add(x);
  } else {
    add(*v);
  }
  return ids;
}

// rope_scaling (transformers 4) or rope_parameters (transformers 5, which also holds rope_theta).
RopeConfig read_rope(const Fields& f, const std::string& source) {
  RopeConfig rope;
  rope.theta = f.number("rope_theta", 10000.0);
  const json::Value* params = f.get("rope_parameters");
  if (!params) params = f.get("rope_scaling");
  if (!params) return rope;
  if (!params->is_object()) f.fail("rope parameters must be an object");
  Fields p(*params, source);
  rope.theta = p.number("rope_theta", rope.theta);
  rope.type = p.string("rope_type", p.string("type", "default"));
  rope.factor = p.number("factor", 1.0);
  if (rope.type == "default") return rope;
  if (rope.type != "linear" && rope.type != "llama3") {
    f.fail("rope type \"" + rope.type + "\" is not supported (supported: default, linear, llama3)");
  }
  if (!(rope.factor >= 1.0)) f.fail("rope scaling factor must be >= 1");
  if (rope.type == "llama3") {
    rope.low_freq_factor = p.number("low_freq_factor", 1.0);
    rope.high_freq_factor = p.number("high_freq_factor", 4.0);
    rope.original_max_position_embeddings =
        p.positive("original_max_position_embeddings", 0, /*required=*/true);
    if (!(rope.high_freq_factor > rope.low_freq_factor) || !(rope.low_freq_factor > 0)) {
      f.fail("llama3 rope needs 0 < low_freq_factor < high_freq_factor");
    }
  }
  return rope;
}

// compressed-tensors: every scheme of config_groups must be FP8 weights (8-bit floats, one scale
// per tensor or per output channel); activations, when the scheme names them, are 8-bit floats
// too (the CPU keeps them in the model dtype).
void read_compressed_tensors(const Fields& p, const std::string& source) {
  const std::string format = p.string("format", "float-quantized");
  if (format != "float-quantized" && format != "naive-quantized") {
    p.fail("quantization_config: compressed-tensors format \"" + format +
           "\" is not supported (float-quantized: FP8 weights)");
  }
  const json::Value* groups = p.get("config_groups");
  if (!groups || !groups->is_object() || groups->size() == 0) {
    p.fail("quantization_config: compressed-tensors needs \"config_groups\"");
  }
  for (size_t i = 0; i < groups->size(); ++i) {
    const std::string where = "quantization_config: config_groups." + groups->keys()[i];
    if (!groups->items()[i].is_object()) p.fail(where + " must be an object");
    Fields g(groups->items()[i], source);
    const json::Value* w = g.get("weights");
    if (!w || !w->is_object()) p.fail(where + " has no \"weights\" scheme");
    Fields wf(*w, source);
    const std::string type = wf.string("type", "int");
    const int64_t bits = wf.integer("num_bits", 0);
    const std::string strategy = wf.string("strategy", "tensor");
    if (type != "float" || bits != 8) {
      p.fail(where + ": weights of " + std::to_string(bits) + "-bit " + type +
             " are not supported (FP8: 8-bit float)");
    }
    if (strategy != "tensor" && strategy != "channel") {
      p.fail(where + ": weight strategy \"" + strategy + "\" is not supported (tensor or channel)");
    }
    if (const json::Value* a = g.get("input_activations")) {
      if (!a->is_object()) p.fail(where + ".input_activations must be an object");
      Fields af(*a, source);
      if (af.string("type", "int") != "float" || af.integer("num_bits", 0) != 8) {
        p.fail(where + ": input activations other than 8-bit float are not supported");
      }
    }
  }
}

// quantization_config: AWQ (GEMM), GPTQ, FP8 and compressed-tensors FP8; other methods are named
// in the error.
QuantConfig read_quant(const Fields& f, const std::string& source) {
  QuantConfig q;
  const json::Value* v = f.get("quantization_config");
  if (!v) return q;
  if (!v->is_object()) f.fail("\"quantization_config\" must be an object");
  Fields p(*v, source);
  q.method = p.string("quant_method", "");
  if (q.method == "fp8") {
    const std::string scheme = p.string("activation_scheme", "dynamic");
    if (scheme != "static" && scheme != "dynamic") {
      f.fail("quantization_config: activation_scheme \"" + scheme +
             "\" is not supported (static or dynamic)");
    }
    if (p.get("weight_block_size")) {
      f.fail(
          "quantization_config: block-wise FP8 (weight_block_size) is not supported (one "
          "scale per tensor or per output channel)");
    }
    q.bits = 8;
    return q;
  }
  if (q.method == "compressed-tensors") {
    read_compressed_tensors(p, source);
    q.bits = 8;
    return q;
  }
  if (q.method != "awq" && q.method != "gptq") {
    f.fail("quantization_config: quant_method \"" + q.method +
           "\" is not supported (supported: awq, gptq, fp8, compressed-tensors)");
  }
  q.bits = p.integer("bits", p.integer("w_bit", 4));
  q.group_size = p.integer("group_size", p.integer("q_group_size", 128));
  if (q.method == "awq") {
    if (q.bits != 4) f.fail("quantization_config: AWQ checkpoints must have 4 bits");
    q.zero_point = p.boolean("zero_point", true);
    const std::string version = p.string("version", "gemm");
    if (version != "gemm" && version != "GEMM") {
      f.fail("quantization_config: AWQ version \"" + version + "\" is not supported (gemm)");
    }
    if (!q.zero_point) f.fail("quantization_config: AWQ without zero points is not supported");
  } else {
    if (q.bits != 4 && q.bits != 8) f.fail("quantization_config: GPTQ bits must be 4 or 8");
    q.desc_act = p.boolean("desc_act", false);
    q.sym = p.boolean("sym", true);
    const std::string format = p.string("checkpoint_format", "gptq");
    if (format != "gptq") {
      f.fail("quantization_config: GPTQ checkpoint_format \"" + format +
             "\" is not supported (gptq)");
    }
  }
  if (q.group_size != -1 && (q.group_size <= 0 || q.group_size % 32 != 0)) {
    f.fail("quantization_config: group_size " + std::to_string(q.group_size) +
           " is not supported (a multiple of 32, or -1)");
  }
  return q;
}

void read_architecture(const Fields& f, ModelConfig& c) {
  const json::Value* archs = f.get("architectures");
  if (!archs || !archs->is_array() || archs->size() == 0 || !archs->items()[0].is_string()) {
    f.fail("missing \"architectures\" (supported: " + supported_architectures() + ")");
  }
  c.architecture = archs->items()[0].as_string();
  for (const Arch& a : kArchitectures) {
    if (c.architecture == a.name) {
      c.family = a.family;
      return;
    }
  }
  f.fail("architecture " + c.architecture +
         " is not supported (supported: " + supported_architectures() + ")");
}

void read_shapes(const Fields& f, ModelConfig& c) {
  c.hidden_size = f.positive("hidden_size", 0, true);
  c.intermediate_size = f.positive("intermediate_size", 0, true);
  c.num_layers = f.positive("num_hidden_layers", 0, true);
  c.num_heads = f.positive("num_attention_heads", 0, true);
  c.num_kv_heads = f.positive("num_key_value_heads", c.num_heads);
  c.vocab_size = f.positive("vocab_size", 0, true);
  c.max_position_embeddings = f.positive("max_position_embeddings", 2048);
  if (c.num_heads % c.num_kv_heads != 0) {
    f.fail("num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (f.get("head_dim")) {
    c.head_dim = f.positive("head_dim", 0);
  } else {
    if (c.hidden_size % c.num_heads != 0) f.fail("hidden_size must divide by num_attention_heads");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0 || c.head_dim > 1024) f.fail("head_dim must be even and <= 1024");
  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act \"" + act + "\" is not supported (supported: silu)");
}

}  // namespace

std::string supported_quantizations() { return "awq, gptq, fp8, compressed-tensors, gguf"; }

std::string supported_architectures() {
  std::string s;
  for (const Arch& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

ModelConfig parse_model_config(std::string_view config_json, const std::string& source) {
  json::Value root = parse_object(config_json, source);
  Fields f(root, source);
  ModelConfig c;
  read_architecture(f, c);
  read_shapes(f, c);
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0)) f.fail("\"rms_norm_eps\" must be positive");
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  const bool attention_bias = f.boolean("attention_bias", false);
  switch (c.family) {
    case ModelFamily::kLlama:
      c.qkv_bias = c.o_bias = attention_bias;
      c.mlp_bias = f.boolean("mlp_bias", false);
      break;
    case ModelFamily::kQwen2:
      c.qkv_bias = true;
      break;
    case ModelFamily::kQwen3:
      c.qkv_bias = c.o_bias = attention_bias;
      c.qk_norm = true;
      break;
  }
  c.rope = read_rope(f, source);
  c.torch_dtype = f.string("torch_dtype", f.string("dtype", ""));
  c.eos_token_ids = read_eos(f);
  c.sliding_window = f.integer("sliding_window", 0);
  c.quant = read_quant(f, source);
  return c;
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::invalid_argument(path + ": read error");
  std::string text = ss.str();
  if (text.size() > max_bytes) throw std::invalid_argument(path + ": file too large");
  return text;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ModelConfig c = parse_model_config(read_text_file(path), path);
  const std::string gen_path = model_dir + "/generation_config.json";
  std::ifstream probe(gen_path);
  if (!probe) return c;
  json::Value gen = parse_object(read_text_file(gen_path), gen_path);
  for (int32_t id : read_eos(Fields(gen, gen_path))) {
    bool seen = false;
    for (int32_t e : c.eos_token_ids) seen |= e == id;
    if (!seen) c.eos_token_ids.push_back(id);
  }
  return c;
}

}  // namespace taco
