// taco_llm._C: converts between Python objects and the C++ engine's structs, nothing more.
// No tensors cross this boundary, so the module does not link libtorch_python (logits rows for
// Python logits processors cross as numpy views).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/engine.h"
#include "cpu/isa.h"
#include "model/engine_factory.h"
#if TACO_WITH_TESTING
#include "core/fake_executor.h"
#endif

namespace py = pybind11;

namespace {

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

// A Python function the engine calls on its step thread. The first Python exception is kept,
// later calls of the step do nothing, and step() raises it once the step is whole.
struct PyHook {
  py::object fn;
  std::optional<py::error_already_set> error;

  template <typename Call>
  void run(const Call& call) {
    py::gil_scoped_acquire gil;
    if (error) return;
    try {
      call(fn);
    } catch (py::error_already_set& e) {
      // The traceback's frames hold the call's numpy views of engine memory: drop their locals
      // now, before that memory moves on.
      py::module_::import("traceback").attr("clear_frames")(e.trace());
      error = std::move(e);
    }
  }
};

// A numpy view of n values at p (no copy): valid only during the hook's call.
template <typename T>
py::array_t<T> view(T* p, py::ssize_t n) {
  static T empty{};
  if (p == nullptr) p = &empty;  // an empty vector's data(); numpy needs an address
  return py::array_t<T>({n}, {static_cast<py::ssize_t>(sizeof(T))}, p,
                        py::capsule(p, [](void*) {}));
}

// The logits hook: fn(key, output_ids, row), row a float32 view of the logits to edit in place.
void call_logits_hook(PyHook& h, const taco::LogitsHookCall& c) {
  h.run([&](py::object& fn) { fn(c.key, *c.output, view(c.row, c.vocab_size)); });
}

// The guide hook: fn(rows, bitmask, vocab_size), rows a list of (key, sequence index, output ids
// as an int32 view), bitmask an int32 view [len(rows), words] to fill.
void call_guide_hook(PyHook& h, const taco::GuideHookCall& c) {
  h.run([&](py::object& fn) {
    py::list rows;
    for (int32_t i = 0; i < c.num_rows; ++i) {
      const taco::GuideRow& r = c.rows[i];
      auto* out = const_cast<int32_t*>(r.output->data());
      rows.append(py::make_tuple(r.key, r.seq_index,
                                 view(out, static_cast<py::ssize_t>(r.output->size()))));
    }
    const py::ssize_t word = sizeof(int32_t);
    py::array_t<int32_t> bits({static_cast<py::ssize_t>(c.num_rows), py::ssize_t{c.words}},
                              {c.words * word, word}, c.bitmask,
                              py::capsule(c.bitmask, [](void*) {}));
    fn(rows, bits, c.vocab_size);
  });
  // A failed call allows every token (the step then raises the error).
  if (h.error) std::fill(c.bitmask, c.bitmask + static_cast<size_t>(c.num_rows) * c.words, -1);
}

// The engine plus what Python needs to know about its model.
struct PyEngine {
  std::shared_ptr<PyHook> logits_hook;
  std::shared_ptr<PyHook> guide_hook;
  std::unique_ptr<taco::Engine> engine;
  taco::ModelInfo info;

  using Factory =
      std::function<std::unique_ptr<taco::Engine>(const taco::EngineOptions&, taco::ModelInfo*)>;

  // make: builds the engine (the model's, or the test core's); runs without the GIL.
  PyEngine(taco::EngineOptions opts, py::object logits_fn, py::object guide_fn,
           const Factory& make) {
    if (!logits_fn.is_none()) {
      logits_hook = std::make_shared<PyHook>();
      logits_hook->fn = std::move(logits_fn);
      opts.logits_hook = [h = logits_hook](const taco::LogitsHookCall& c) {
        call_logits_hook(*h, c);
      };
    }
    if (!guide_fn.is_none()) {
      guide_hook = std::make_shared<PyHook>();
      guide_hook->fn = std::move(guide_fn);
      opts.guide_hook = [h = guide_hook](const taco::GuideHookCall& c) { call_guide_hook(*h, c); };
    }
    py::gil_scoped_release release;
    engine = make(opts, &info);
  }

  // Destroys the engine (and its copies of the hooks) before the hooks' Python objects, GIL held.
  ~PyEngine() {
    engine.reset();
    logits_hook.reset();
    guide_hook.reset();
  }

  // The engine, or a RuntimeError once close() has destroyed it.
  taco::Engine& live() const {
    if (!engine) throw std::runtime_error("the engine is closed");
    return *engine;
  }

  // Python errors met during a step (a logits processor's, a grammar's, the test core's script)
  // are raised once the step is whole.
  std::function<void()> raise_pending;

  // Forgets errors a failed step left behind, so that they never stop a later step's hooks.
  void clear_hook_errors() {
    for (const std::shared_ptr<PyHook>& h : {logits_hook, guide_hook}) {
      if (h) h->error.reset();
    }
  }

  // Raises the first hook error of the step (the logits hook's first) and forgets the others.
  void raise_hook_error() {
    if (raise_pending) raise_pending();
    std::optional<py::error_already_set> first;
    for (const std::shared_ptr<PyHook>& h : {logits_hook, guide_hook}) {
      if (!h || !h->error) continue;
      if (!first) first = std::move(*h->error);
      h->error.reset();
    }
    if (first) throw std::move(*first);
  }
};

// One property per option of the TACO_*_OPTIONS lists: enums as their names, the rest as is.
template <typename Class, typename Struct, typename T>
void bind_field(Class& cls, const char* name, T Struct::* member) {
  if constexpr (std::is_enum_v<T>) {
    cls.def_property(
        name, [member](const Struct& o) { return std::string(taco::to_string(o.*member)); },
        [member, name](Struct& o, const std::string& v) { taco::parse(v, name, &(o.*member)); });
  } else {
    cls.def_readwrite(name, member);
  }
}

// Options objects also list their field names and check themselves, so Python needs no copy of
// either.
template <typename Struct>
py::class_<Struct> bind_options_class(py::module_& m, const char* name,
                                      std::vector<std::string> fields) {
  py::class_<Struct> cls(m, name);
  cls.def(py::init<>())
      .def_property_readonly_static("fields", [fields](const py::object&) { return fields; })
      .def("validate", [](const Struct& o) { taco::validate(o); });
  return cls;
}

void bind_options(py::module_& m) {
#define TACO_FIELD_NAME(type, name, value, ok, rule) #name,
#define TACO_BIND_FIELD(type, name, value, ok, rule) bind_field(cls, #name, &Struct::name);
  {
    using Struct = taco::EngineOptions;
    auto cls =
        bind_options_class<Struct>(m, "EngineOptions", {TACO_ENGINE_OPTIONS(TACO_FIELD_NAME)});
    TACO_ENGINE_OPTIONS(TACO_BIND_FIELD)
  }
  {
    using Struct = taco::SamplingOptions;
    auto cls =
        bind_options_class<Struct>(m, "SamplingOptions", {TACO_SAMPLING_OPTIONS(TACO_FIELD_NAME)});
    TACO_SAMPLING_OPTIONS(TACO_BIND_FIELD)
  }
#undef TACO_BIND_FIELD
#undef TACO_FIELD_NAME
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
#define TACO_METRIC_ITEM(type, name, meaning) d[#name] = s.name;
  TACO_ENGINE_METRICS(TACO_METRIC_ITEM)
#undef TACO_METRIC_ITEM
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

taco::AdapterKind adapter_kind(const std::string& kind) {
  if (kind == "lora") return taco::AdapterKind::kLora;
  if (kind == "prompt_adapter") return taco::AdapterKind::kPromptAdapter;
  throw std::invalid_argument("adapter kind must be 'lora' or 'prompt_adapter', got '" + kind +
                              "'");
}

py::dict adapter_dict(const taco::AdapterInfo& a) {
  py::dict d;
  d["id"] = a.id;
  d["name"] = a.name;
  d["path"] = a.path;
  d["rank"] = a.rank;
  d["num_virtual_tokens"] = a.num_virtual_tokens;
  return d;
}

void bind_engine(py::module_& m) {
  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](taco::EngineOptions opts, py::object logits_hook, py::object guide_hook) {
             return std::make_unique<PyEngine>(std::move(opts), std::move(logits_hook),
                                               std::move(guide_hook), &taco::create_engine);
           }),
           py::arg("options"), py::arg("logits_hook") = py::none(),
           py::arg("guide_hook") = py::none())
      .def_property_readonly("model_info",
                             [](const PyEngine& e) { return model_info_dict(e.info); })
      .def(
          "add_request",
          [](PyEngine& e, const std::string& id, std::vector<int32_t> prompt,
             const taco::SamplingOptions& opts) {
            e.live().add_request(id, std::move(prompt), opts);
          },
          py::arg("request_id"), py::arg("prompt_token_ids"), py::arg("options"))
      .def(
          "abort", [](PyEngine& e, const std::string& id) { return e.live().abort(id); },
          py::arg("request_id"))
      .def(
          "add_adapter",
          [](PyEngine& e, const std::string& kind, int64_t id, const std::string& name,
             const std::string& path) {
            const taco::AdapterKind k = adapter_kind(kind);
            taco::AdapterInfo info;
            {
              py::gil_scoped_release release;
              info = e.live().add_adapter(k, id, name, path);
            }
            return adapter_dict(info);
          },
          py::arg("kind"), py::arg("id"), py::arg("name"), py::arg("path"))
      .def(
          "remove_adapter",
          [](PyEngine& e, const std::string& kind, int64_t id) {
            return e.live().remove_adapter(adapter_kind(kind), id);
          },
          py::arg("kind"), py::arg("id"))
      .def(
          "list_adapters",
          [](const PyEngine& e, const std::string& kind) {
            py::list out;
            for (const taco::AdapterInfo& a : e.live().list_adapters(adapter_kind(kind))) {
              out.append(adapter_dict(a));
            }
            return out;
          },
          py::arg("kind"))
      .def(
          "finish_sequence",
          [](PyEngine& e, const std::string& id, int32_t index) {
            e.live().finish_sequence(id, index, taco::FinishReason::kStop);
          },
          py::arg("request_id"), py::arg("index"))
      .def("step",
           [](PyEngine& e) {
             std::vector<taco::RequestDelta> out;
             e.clear_hook_errors();
             {
               py::gil_scoped_release release;
               out = e.live().step();
             }
             e.raise_hook_error();
             return out;
           })
      .def("has_unfinished", [](const PyEngine& e) { return e.live().has_unfinished(); })
      .def("num_unfinished", [](const PyEngine& e) { return e.live().num_unfinished(); })
      .def("metrics", [](const PyEngine& e) { return metrics_dict(e.live().metrics()); })
      .def(
          "close",
          [](PyEngine& e) {
            py::gil_scoped_release release;
            e.engine.reset();
          },
          "Destroys the engine now (a tensor-parallel rank 0 tells the other ranks to stop); "
          "every later call raises RuntimeError.");
}

#if TACO_WITH_TESTING
// The real engine core (scheduler, block manager, stops, beams, outputs) over the fake executor
// of the C++ tests: no model runs, and each sequence's next token is script(prompt, index)'s
// entry at its output length (the last entry once it runs out).
void bind_testing(py::module_ m) {
  m.def(
      "create_engine",
      [](taco::EngineOptions opts, py::object logits_hook, int32_t vocab_size,
         int32_t max_model_len, std::vector<int32_t> eos_token_ids, py::object script,
         int32_t num_device_blocks, int32_t num_cpu_blocks) {
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        taco::test::FakeExecutorConfig cfg;
        cfg.num_device_blocks = num_device_blocks;
        cfg.num_cpu_blocks = num_cpu_blocks;
        cfg.block_size = opts.block_size;
        cfg.vocab = vocab_size;
        cfg.next_token = [script, error](const taco::Sequence& s) -> int32_t {
          py::gil_scoped_acquire gil;
          if (*error) return 0;
          try {
            std::vector<int32_t> prompt(s.prompt->begin(), s.prompt->end());
            const auto planned = script(prompt, s.index).cast<std::vector<int32_t>>();
            if (planned.empty()) return 0;
            return planned[std::min(s.output.size(), planned.size() - 1)];
          } catch (py::error_already_set& e) {
            *error = std::move(e);
            return 0;
          }
        };
        auto make = [&](const taco::EngineOptions& o, taco::ModelInfo* info) {
          if (max_model_len <= 0) throw std::invalid_argument("max_model_len must be positive");
          const int32_t len = o.max_model_len > 0 ? o.max_model_len : max_model_len;
          *info = taco::ModelInfo{};
          info->vocab_size = vocab_size;
          info->max_model_len = len;
          info->eos_token_ids = eos_token_ids;
          info->dtype = "float32";
          info->device = "cpu";
          info->architecture = "FakeForCausalLM";
          info->num_device_blocks = num_device_blocks;
          info->num_cpu_blocks = num_cpu_blocks;
          return std::make_unique<taco::Engine>(o, std::make_unique<taco::test::FakeExecutor>(cfg),
                                                vocab_size, eos_token_ids, len);
        };
        auto engine =
            std::make_unique<PyEngine>(std::move(opts), std::move(logits_hook), py::none(), make);
        engine->raise_pending = [error] {
          if (!*error) return;
          py::error_already_set e = std::move(**error);
          error->reset();
          throw e;
        };
        return engine;
      },
      py::arg("options"), py::arg("logits_hook") = py::none(), py::arg("vocab_size") = 49152,
      py::arg("max_model_len") = 8192, py::arg("eos_token_ids") = std::vector<int32_t>{2},
      py::arg("script"), py::arg("num_device_blocks") = 4096, py::arg("num_cpu_blocks") = 0);
}
#endif

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
#if TACO_WITH_TESTING
  bind_testing(m.def_submodule("testing", "The engine core over a scripted executor, for tests"));
#endif
  m.def("cpu_isa", &taco::cpu::active_isa,
        "The instruction-set level the CPU kernels run at (avx512bf16, avx512, avx2, generic): "
        "the best this CPU supports, or the one the TACO_CPU_ISA environment variable names.");
  m.def(
      "run_tensor_parallel_worker",
      [](const taco::EngineOptions& opts) {
        py::gil_scoped_release release;
        taco::run_tensor_parallel_worker(opts);
      },
      py::arg("options"),
      "Tensor-parallel ranks other than 0: loads this rank's shard and runs rank 0's steps until "
      "its engine is destroyed.");
  m.def("check_tensor_parallel", &taco::check_tensor_parallel, py::arg("options"),
        "Raises ValueError when the model cannot be split in options.tensor_parallel_size ranks; "
        "returns the device the ranks will use ('cpu' or 'cuda').");
  m.def("cuda_available", &taco::cuda_device_available,
        "True when this build has the CUDA backend and sees a CUDA device.");
}
