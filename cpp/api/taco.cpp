// The C API of taco.h over taco::Engine. Every entry point catches every exception and turns
// it into a status plus a message: nothing is thrown across the library boundary.
#include "taco/taco.h"

#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
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

taco::EngineOptions to_engine_options(const char* model_dir, const taco_engine_options& o) {
  taco::EngineOptions opts;
  opts.model = model_dir;
  opts.dtype = o.dtype ? o.dtype : "auto";
  opts.device = o.device ? o.device : "auto";
  opts.seed = o.seed;
  opts.block_size = o.block_size;
  opts.max_num_seqs = o.max_num_seqs;
  opts.max_num_batched_tokens = o.max_num_batched_tokens;
  opts.max_model_len = o.max_model_len;
  opts.enable_prefix_caching = o.enable_prefix_caching != 0;
  opts.enable_chunked_prefill = o.enable_chunked_prefill != 0;
  opts.cpu_kvcache_space_gib = o.kv_cache_space_gib;
  opts.num_gpu_blocks_override = o.num_kv_blocks_override;
  opts.num_threads = o.num_threads;
  opts.swap_space_gib = 0;
  return opts;
}

taco::SamplingOptions to_sampling_options(const taco_sampling_options& s) {
  taco::SamplingOptions opts;
  opts.max_tokens = s.max_tokens;
  opts.min_tokens = s.min_tokens;
  opts.temperature = s.temperature;
  opts.top_p = s.top_p;
  opts.top_k = s.top_k;
  opts.min_p = s.min_p;
  opts.repetition_penalty = s.repetition_penalty;
  opts.presence_penalty = s.presence_penalty;
  opts.frequency_penalty = s.frequency_penalty;
  if (s.has_seed) opts.seed = s.seed;
  opts.ignore_eos = s.ignore_eos != 0;
  if (s.num_stop_token_ids > 0 && s.stop_token_ids == nullptr) {
    throw std::invalid_argument("stop_token_ids is NULL but num_stop_token_ids > 0");
  }
  opts.stop_token_ids.assign(s.stop_token_ids, s.stop_token_ids + s.num_stop_token_ids);
  opts.logprobs = s.logprobs;
  if (opts.max_tokens < 1) throw std::invalid_argument("max_tokens must be at least 1");
  if (opts.temperature < 0) throw std::invalid_argument("temperature must be non-negative");
  if (opts.top_p <= 0 || opts.top_p > 1) throw std::invalid_argument("top_p must be in (0, 1]");
  return opts;
}

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
  taco_engine_options o{};
  o.dtype = "auto";
  o.device = "auto";
  o.block_size = 16;
  o.max_num_seqs = 256;
  return o;
}

taco_sampling_options taco_sampling_options_default(void) {
  taco_sampling_options s{};
  s.max_tokens = 16;
  s.temperature = 1.0f;
  s.top_p = 1.0f;
  s.top_k = -1;
  s.repetition_penalty = 1.0f;
  s.logprobs = -1;
  return s;
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

taco_status taco_engine_get_output(taco_engine* engine, const char* request_id,
                                   taco_output* out) {
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
