// taco_llm._C: converts between Python objects and the C++ engine's structs, nothing more.
// No tensors cross this boundary, so the module does not link libtorch_python (logits rows for
// Python logits processors cross as numpy views).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "core/engine.h"
#include "model/engine_factory.h"

namespace py = pybind11;

namespace {

const std::pair<const char*, taco::LogprobsMode> kLogprobsModes[] = {
    {"processed_logprobs", taco::LogprobsMode::kProcessedLogprobs},
    {"raw_logprobs", taco::LogprobsMode::kRawLogprobs},
    {"processed_logits", taco::LogprobsMode::kProcessedLogits},
    {"raw_logits", taco::LogprobsMode::kRawLogits},
};

const char* finish_reason_name(taco::FinishReason r) {
  switch (r) {
    case taco::FinishReason::kLength:
      return "length";
    case taco::FinishReason::kStop:
      return "stop";
    case taco::FinishReason::kAbort:
      return "abort";
    case taco::FinishReason::kNone:
      break;
  }
  return nullptr;
}

py::list to_pairs(const std::vector<taco::TokenLogprob>& top) {
  py::list out;
  for (const auto& t : top) out.append(py::make_tuple(t.token, t.logprob));
  return out;
}

py::list to_pair_lists(const std::vector<std::vector<taco::TokenLogprob>>& rows) {
  py::list out;
  for (const auto& row : rows) out.append(to_pairs(row));
  return out;
}

// Calls a Python function fn(key, output_ids, row) for the engine's logits hook, where row is a
// float32 numpy view of the logits (no copy) that fn edits in place. The first Python exception
// is kept, later rows of the step are left alone, and step() raises it once the step is whole.
struct PyLogitsHook {
  py::object fn;
  std::optional<py::error_already_set> error;

  void operator()(const taco::LogitsHookCall& c) {
    py::gil_scoped_acquire gil;
    if (error) return;
    try {
      py::array_t<float> row({static_cast<py::ssize_t>(c.vocab_size)}, {sizeof(float)}, c.row,
                             py::capsule(c.row, [](void*) {}));
      fn(c.key, *c.output, row);
    } catch (py::error_already_set& e) {
      error = std::move(e);
    }
  }
};

// The engine plus what Python needs to know about its model.
struct PyEngine {
  std::shared_ptr<PyLogitsHook> hook;
  std::unique_ptr<taco::Engine> engine;
  taco::ModelInfo info;

  PyEngine(taco::EngineOptions opts, py::object logits_hook) {
    if (!logits_hook.is_none()) {
      hook = std::make_shared<PyLogitsHook>();
      hook->fn = std::move(logits_hook);
      opts.logits_hook = [h = hook](const taco::LogitsHookCall& c) { (*h)(c); };
    }
    py::gil_scoped_release release;
    engine = taco::create_engine(opts, &info);
  }

  // Destroys the engine (and its copy of the hook) before the hook's Python objects, GIL held.
  ~PyEngine() {
    engine.reset();
    hook.reset();
  }

  void raise_hook_error() {
    if (!hook || !hook->error) return;
    py::error_already_set e = std::move(*hook->error);
    hook->error.reset();
    throw e;
  }
};

void bind_options(py::module_& m) {
  py::class_<taco::EngineOptions>(m, "EngineOptions")
      .def(py::init<>())
      .def_readwrite("model", &taco::EngineOptions::model)
      .def_readwrite("dtype", &taco::EngineOptions::dtype)
      .def_readwrite("device", &taco::EngineOptions::device)
      .def_readwrite("seed", &taco::EngineOptions::seed)
      .def_readwrite("block_size", &taco::EngineOptions::block_size)
      .def_readwrite("max_num_seqs", &taco::EngineOptions::max_num_seqs)
      .def_readwrite("max_num_batched_tokens", &taco::EngineOptions::max_num_batched_tokens)
      .def_readwrite("max_model_len", &taco::EngineOptions::max_model_len)
      .def_readwrite("enable_prefix_caching", &taco::EngineOptions::enable_prefix_caching)
      .def_readwrite("enable_chunked_prefill", &taco::EngineOptions::enable_chunked_prefill)
      .def_readwrite("swap_space_gib", &taco::EngineOptions::swap_space_gib)
      .def_property(
          "preemption_mode",
          [](const taco::EngineOptions& o) {
            return o.preemption_mode == taco::PreemptionMode::kSwap ? "swap" : "recompute";
          },
          [](taco::EngineOptions& o, const std::string& v) {
            if (v == "swap") {
              o.preemption_mode = taco::PreemptionMode::kSwap;
            } else if (v == "recompute") {
              o.preemption_mode = taco::PreemptionMode::kRecompute;
            } else {
              throw std::invalid_argument("preemption_mode must be 'recompute' or 'swap', got '" +
                                          v + "'");
            }
          })
      .def_property(
          "logprobs_mode",
          [](const taco::EngineOptions& o) {
            for (const auto& [name, mode] : kLogprobsModes) {
              if (mode == o.logprobs_mode) return name;
            }
            return "processed_logprobs";
          },
          [](taco::EngineOptions& o, const std::string& v) {
            for (const auto& [name, mode] : kLogprobsModes) {
              if (v == name) {
                o.logprobs_mode = mode;
                return;
              }
            }
            throw std::invalid_argument(
                "logprobs_mode must be 'processed_logprobs', 'raw_logprobs', 'processed_logits' "
                "or 'raw_logits', got '" + v + "'");
          })
      .def_readwrite("num_gpu_blocks_override", &taco::EngineOptions::num_gpu_blocks_override)
      .def_readwrite("cpu_kvcache_space_gib", &taco::EngineOptions::cpu_kvcache_space_gib)
      .def_readwrite("gpu_memory_utilization", &taco::EngineOptions::gpu_memory_utilization)
      .def_readwrite("enforce_eager", &taco::EngineOptions::enforce_eager)
      .def_readwrite("max_seq_len_to_capture", &taco::EngineOptions::max_seq_len_to_capture)
      .def_readwrite("num_threads", &taco::EngineOptions::num_threads);

  py::class_<taco::SamplingOptions>(m, "SamplingOptions")
      .def(py::init<>())
      .def_readwrite("n", &taco::SamplingOptions::n)
      .def_readwrite("best_of", &taco::SamplingOptions::best_of)
      .def_readwrite("repetition_penalty", &taco::SamplingOptions::repetition_penalty)
      .def_readwrite("presence_penalty", &taco::SamplingOptions::presence_penalty)
      .def_readwrite("frequency_penalty", &taco::SamplingOptions::frequency_penalty)
      .def_readwrite("temperature", &taco::SamplingOptions::temperature)
      .def_readwrite("top_p", &taco::SamplingOptions::top_p)
      .def_readwrite("top_k", &taco::SamplingOptions::top_k)
      .def_readwrite("min_p", &taco::SamplingOptions::min_p)
      .def_readwrite("seed", &taco::SamplingOptions::seed)
      .def_readwrite("allowed_token_ids", &taco::SamplingOptions::allowed_token_ids)
      .def_readwrite("logit_bias", &taco::SamplingOptions::logit_bias)
      .def_readwrite("bad_words_token_ids", &taco::SamplingOptions::bad_words_token_ids)
      .def_readwrite("logits_hook_key", &taco::SamplingOptions::logits_hook_key)
      .def_readwrite("stream_best_of", &taco::SamplingOptions::stream_best_of)
      .def_readwrite("max_tokens", &taco::SamplingOptions::max_tokens)
      .def_readwrite("min_tokens", &taco::SamplingOptions::min_tokens)
      .def_readwrite("ignore_eos", &taco::SamplingOptions::ignore_eos)
      .def_readwrite("stop_token_ids", &taco::SamplingOptions::stop_token_ids)
      .def_readwrite("logprobs", &taco::SamplingOptions::logprobs)
      .def_readwrite("prompt_logprobs", &taco::SamplingOptions::prompt_logprobs)
      .def_readwrite("use_beam_search", &taco::SamplingOptions::use_beam_search)
      .def_readwrite("length_penalty", &taco::SamplingOptions::length_penalty)
      .def_readwrite("early_stopping", &taco::SamplingOptions::early_stopping);
}

void bind_outputs(py::module_& m) {
  py::class_<taco::SeqDelta>(m, "SeqDelta")
      .def_readonly("index", &taco::SeqDelta::index)
      .def_readonly("new_token_ids", &taco::SeqDelta::new_token_ids)
      .def_readonly("new_logprobs", &taco::SeqDelta::new_logprobs)
      .def_readonly("new_ranks", &taco::SeqDelta::new_ranks)
      .def_property_readonly("new_top",
                             [](const taco::SeqDelta& d) { return to_pair_lists(d.new_top); })
      .def_readonly("cumulative_logprob", &taco::SeqDelta::cumulative_logprob)
      .def_property_readonly("finish_reason",
                             [](const taco::SeqDelta& d) -> py::object {
                               const char* name = finish_reason_name(d.finish);
                               return name ? py::object(py::str(name)) : py::none();
                             })
      .def_property_readonly("stop_token",
                             [](const taco::SeqDelta& d) -> py::object {
                               return d.stop_token >= 0 ? py::object(py::int_(d.stop_token))
                                                        : py::none();
                             })
      .def_readonly("replace", &taco::SeqDelta::replace);

  py::class_<taco::RequestDelta>(m, "RequestDelta")
      .def_readonly("request_id", &taco::RequestDelta::request_id)
      .def_readonly("seqs", &taco::RequestDelta::seqs)
      .def_readonly("finished", &taco::RequestDelta::finished)
      .def_readonly("num_cached_tokens", &taco::RequestDelta::num_cached_tokens)
      .def_property_readonly(
          "prompt_logprobs",
          [](const taco::RequestDelta& d) { return to_pair_lists(d.prompt_logprobs); })
      .def_readonly("first_token_time", &taco::RequestDelta::first_token_time);
}

py::dict metrics_dict(const taco::EngineMetrics& s) {
  py::dict d;
  d["num_preemptions"] = s.num_preemptions;
  d["prefix_cache_queries"] = s.prefix_cache_queries;
  d["prefix_cache_hits"] = s.prefix_cache_hits;
  d["num_swapped_out"] = s.num_swapped_out;
  d["num_running"] = s.num_running;
  d["num_waiting"] = s.num_waiting;
  d["num_swapped"] = s.num_swapped;
  d["kv_blocks_used"] = s.kv_blocks_used;
  d["kv_blocks_total"] = s.kv_blocks_total;
  d["num_steps"] = s.num_steps;
  d["num_generated_tokens"] = s.num_generated_tokens;
  d["num_prompt_tokens_computed"] = s.num_prompt_tokens_computed;
  return d;
}

py::dict model_info_dict(const taco::ModelInfo& i) {
  py::dict d;
  d["vocab_size"] = i.vocab_size;
  d["max_model_len"] = i.max_model_len;
  d["eos_token_ids"] = i.eos_token_ids;
  d["dtype"] = i.dtype;
  d["device"] = i.device;
  d["architecture"] = i.architecture;
  d["num_device_blocks"] = i.num_device_blocks;
  d["num_cpu_blocks"] = i.num_cpu_blocks;
  return d;
}

void bind_engine(py::module_& m) {
  py::class_<PyEngine>(m, "Engine")
      .def(py::init<taco::EngineOptions, py::object>(), py::arg("options"),
           py::arg("logits_hook") = py::none())
      .def_property_readonly("model_info",
                             [](const PyEngine& e) { return model_info_dict(e.info); })
      .def(
          "add_request",
          [](PyEngine& e, const std::string& id, std::vector<int32_t> prompt,
             const taco::SamplingOptions& opts) { e.engine->add_request(id, std::move(prompt), opts); },
          py::arg("request_id"), py::arg("prompt_token_ids"), py::arg("options"))
      .def(
          "abort", [](PyEngine& e, const std::string& id) { return e.engine->abort(id); },
          py::arg("request_id"))
      .def(
          "finish_sequence",
          [](PyEngine& e, const std::string& id, int32_t index) {
            e.engine->finish_sequence(id, index, taco::FinishReason::kStop);
          },
          py::arg("request_id"), py::arg("index"))
      .def(
          "step",
          [](PyEngine& e) {
            std::vector<taco::RequestDelta> out;
            {
              py::gil_scoped_release release;
              out = e.engine->step();
            }
            e.raise_hook_error();
            return out;
          })
      .def("has_unfinished", [](const PyEngine& e) { return e.engine->has_unfinished(); })
      .def("num_unfinished", [](const PyEngine& e) { return e.engine->num_unfinished(); })
      .def("metrics", [](const PyEngine& e) { return metrics_dict(e.engine->metrics()); });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "taco_llm C++ engine";
  // std::invalid_argument -> ValueError (pybind11's default); runtime_error -> RuntimeError,
  // except a KV cache too small for max_model_len: ValueError, as vLLM raises it.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const taco::CapacityError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  bind_options(m);
  bind_outputs(m);
  bind_engine(m);
  m.def("cuda_available", &taco::cuda_device_available,
        "True when this build has the CUDA backend and sees a CUDA device.");
}
