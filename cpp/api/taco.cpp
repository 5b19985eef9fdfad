// The C API of taco.h over taco::Engine. Every entry point catches every exception and turns
// it into a status plus a message: nothing is thrown across the library boundary.
#include "taco/taco.h"

#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/engine.h"
#include "model/engine_factory.h"

struct taco_engine {
  struct Output {
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    bool want_logprobs = false;
    taco::FinishReason finish = taco::FinishReason::kNone;
    int32_t stop_token = -1;
  };
  std::unique_ptr<taco::Engine> engine;
  taco::ModelInfo info;
  std::unordered_map<std::string, Output> outputs;
  std::string last_error;
};

namespace {

taco_status status_of(const std::exception_ptr& e, std::string* message) {
  try {
    std::rethrow_exception(e);
  } catch (const std::invalid_argument& err) {
    *message = err.what();
    return TACO_ERR_INVALID_ARGUMENT;
  } catch (const std::out_of_range& err) {
    *message = err.what();
    return TACO_ERR_NOT_FOUND;
  } catch (const taco::CapacityError& err) {
    *message = err.what();
    return TACO_ERR_CAPACITY;
  } catch (const std::exception& err) {
    *message = err.what();
    return TACO_ERR_INTERNAL;
  } catch (...) {
    *message = "unknown error";
    return TACO_ERR_INTERNAL;
  }
}

// Runs fn, turning any exception into a status and the engine's last error.
template <typename Fn>
taco_status guarded(taco_engine* engine, Fn&& fn) {
  if (engine == nullptr) return TACO_ERR_INVALID_ARGUMENT;
  try {
    fn();
    engine->last_error.clear();
    return TACO_OK;
  } catch (...) {
    return status_of(std::current_exception(), &engine->last_error);
  }
}

// The C structs carry the options of the core lists (TACO_ENGINE_OPTIONS, TACO_SAMPLING_OPTIONS)
// under the same names, with C types: every field the C struct has is copied by name, in both
// directions, so defaults and conversions follow from the one list. Fields with other shapes
// (id arrays, the optional seed, the C names of the KV cache knobs) are converted by hand.
template <typename T, typename C>
void from_c(T& dst, const C& src) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (src != nullptr) dst = src;
  } else if constexpr (std::is_same_v<T, bool>) {
    dst = src != 0;
  } else if constexpr (std::is_arithmetic_v<T> && std::is_arithmetic_v<C>) {
    dst = static_cast<T>(src);
  }
}

template <typename C, typename T>
void to_c(C& dst, const T& src) {
  if constexpr (std::is_same_v<T, std::string>) {
    dst = src.c_str();  // src is a default instance that lives as long as the program
  } else if constexpr (std::is_arithmetic_v<T> && std::is_arithmetic_v<C>) {
    dst = static_cast<C>(src);
  }
}

#define TACO_FROM_C(type, name, value, ok, rule) \
  if constexpr (requires { c.name; }) from_c(opts.name, c.name);
#define TACO_TO_C(type, name, value, ok, rule) \
  if constexpr (requires { c.name; }) to_c(c.name, opts.name);

template <typename CEngineOptions>
taco::EngineOptions to_engine_options(const char* model_dir, const CEngineOptions& c) {
  taco::EngineOptions opts;
  TACO_ENGINE_OPTIONS(TACO_FROM_C)
  opts.model = model_dir;
  opts.cpu_kvcache_space_gib = c.kv_cache_space_gib;
  opts.num_gpu_blocks_override = c.num_kv_blocks_override;
  opts.swap_space_gib = 0;  // the C API has no swap space: preemption recomputes
  return opts;
}

template <typename CEngineOptions>
CEngineOptions engine_options_default() {
  static const taco::EngineOptions opts;
  CEngineOptions c{};
  TACO_ENGINE_OPTIONS(TACO_TO_C)
  c.kv_cache_space_gib = opts.cpu_kvcache_space_gib;
  c.num_kv_blocks_override = opts.num_gpu_blocks_override;
  return c;
}

template <typename CSamplingOptions>
taco::SamplingOptions to_sampling_options(const CSamplingOptions& c) {
  taco::SamplingOptions opts;
  TACO_SAMPLING_OPTIONS(TACO_FROM_C)
  if (c.has_seed) opts.seed = c.seed;
  if (c.num_stop_token_ids > 0 && c.stop_token_ids == nullptr) {
    throw std::invalid_argument("stop_token_ids is NULL but num_stop_token_ids > 0");
  }
  opts.stop_token_ids.assign(c.stop_token_ids, c.stop_token_ids + c.num_stop_token_ids);
  return opts;  // the engine validates it when the request is added
}

template <typename CSamplingOptions>
CSamplingOptions sampling_options_default() {
  static const taco::SamplingOptions opts;
  CSamplingOptions c{};
  TACO_SAMPLING_OPTIONS(TACO_TO_C)
  return c;
}

#undef TACO_TO_C
#undef TACO_FROM_C

void absorb(taco_engine* e, const std::vector<taco::RequestDelta>& deltas) {
  for (const auto& d : deltas) {
    auto it = e->outputs.find(d.request_id);
    if (it == e->outputs.end() || d.seqs.empty()) continue;
    auto& out = it->second;
    const auto& seq = d.seqs.front();  // the C API returns one sequence per request (n = 1)
    if (seq.replace) {
      out.tokens.clear();
      out.logprobs.clear();
    }
    out.tokens.insert(out.tokens.end(), seq.new_token_ids.begin(), seq.new_token_ids.end());
    out.logprobs.insert(out.logprobs.end(), seq.new_logprobs.begin(), seq.new_logprobs.end());
    if (seq.finish != taco::FinishReason::kNone) {
      out.finish = seq.finish;
      out.stop_token = seq.stop_token;
    }
  }
}

taco_engine::Output& find_output(taco_engine* e, const char* request_id) {
  if (request_id == nullptr) throw std::invalid_argument("request_id is NULL");
  auto it = e->outputs.find(request_id);
  if (it == e->outputs.end()) {
    throw std::out_of_range(std::string("unknown request id '") + request_id + "'");
  }
  return it->second;
}

}  // namespace

extern "C" {

taco_engine_options taco_engine_options_default(void) {
  return engine_options_default<taco_engine_options>();
}

taco_sampling_options taco_sampling_options_default(void) {
  return sampling_options_default<taco_sampling_options>();
}

taco_status taco_engine_create(const char* model_dir, const taco_engine_options* options,
                               taco_engine** out, char* error, size_t error_len) {
  std::string message;
  taco_status status = TACO_OK;
  if (out != nullptr) *out = nullptr;
  try {
    if (model_dir == nullptr || out == nullptr) {
      throw std::invalid_argument("model_dir and out must not be NULL");
    }
    const taco_engine_options o = options ? *options : taco_engine_options_default();
    auto engine = std::make_unique<taco_engine>();
    engine->engine = taco::create_engine(to_engine_options(model_dir, o), &engine->info);
    *out = engine.release();
  } catch (...) {
    status = status_of(std::current_exception(), &message);
  }
  if (error != nullptr && error_len > 0) {
    std::strncpy(error, message.c_str(), error_len - 1);
    error[error_len - 1] = '\0';
  }
  return status;
}

void taco_engine_destroy(taco_engine* engine) { delete engine; }

const char* taco_engine_last_error(const taco_engine* engine) {
  return engine ? engine->last_error.c_str() : "engine is NULL";
}

int32_t taco_engine_vocab_size(const taco_engine* engine) {
  return engine ? engine->info.vocab_size : 0;
}

int32_t taco_engine_max_model_len(const taco_engine* engine) {
  return engine ? engine->info.max_model_len : 0;
}

taco_status taco_engine_add_request(taco_engine* engine, const char* request_id,
                                    const int32_t* prompt, size_t prompt_len,
                                    const taco_sampling_options* options) {
  return guarded(engine, [&] {
    if (request_id == nullptr) throw std::invalid_argument("request_id is NULL");
    if (prompt == nullptr && prompt_len > 0) throw std::invalid_argument("prompt is NULL");
    const taco_sampling_options s = options ? *options : taco_sampling_options_default();
    const taco::SamplingOptions opts = to_sampling_options(s);
    if (engine->outputs.count(request_id) != 0) {
      throw std::invalid_argument(std::string("request id '") + request_id +
                                  "' is already in use; release it first");
    }
    engine->engine->add_request(request_id, std::vector<int32_t>(prompt, prompt + prompt_len),
                                opts);
    engine->outputs[request_id].want_logprobs = opts.logprobs >= 0;
  });
}

taco_status taco_engine_add_lora(taco_engine* engine, int64_t id, const char* name,
                                 const char* path) {
  return guarded(engine, [&] {
    if (path == nullptr) throw std::invalid_argument("taco_engine_add_lora: path is NULL");
    engine->engine->add_adapter(taco::AdapterKind::kLora, id, name != nullptr ? name : "", path);
  });
}

taco_status taco_engine_remove_lora(taco_engine* engine, int64_t id) {
  return guarded(engine, [&] {
    if (!engine->engine->remove_adapter(taco::AdapterKind::kLora, id)) {
      throw std::out_of_range("no LoRA adapter with id " + std::to_string(id));
    }
  });
}

taco_status taco_engine_abort(taco_engine* engine, const char* request_id) {
  return guarded(engine, [&] {
    auto& out = find_output(engine, request_id);
    if (engine->engine->abort(request_id)) out.finish = taco::FinishReason::kAbort;
  });
}

taco_status taco_engine_step(taco_engine* engine, int32_t* num_unfinished) {
  return guarded(engine, [&] {
    absorb(engine, engine->engine->step());
    if (num_unfinished != nullptr) *num_unfinished = engine->engine->num_unfinished();
  });
}

taco_status taco_engine_run(taco_engine* engine) {
  return guarded(engine, [&] {
    while (engine->engine->has_unfinished()) absorb(engine, engine->engine->step());
  });
}

taco_status taco_engine_get_output(taco_engine* engine, const char* request_id, taco_output* out) {
  return guarded(engine, [&] {
    if (out == nullptr) throw std::invalid_argument("out is NULL");
    const auto& o = find_output(engine, request_id);
    out->tokens = o.tokens.data();
    out->logprobs = o.want_logprobs ? o.logprobs.data() : nullptr;
    out->num_tokens = o.tokens.size();
    out->finish_reason = static_cast<taco_finish_reason>(o.finish);
    out->stop_token = o.stop_token;
  });
}

taco_status taco_engine_release(taco_engine* engine, const char* request_id) {
  return guarded(engine, [&] {
    auto& out = find_output(engine, request_id);
    if (out.finish == taco::FinishReason::kNone) engine->engine->abort(request_id);
    engine->outputs.erase(request_id);
  });
}

}  // extern "C"
