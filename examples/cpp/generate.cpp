// Greedy generation from C++ with libtaco.so, no Python.
//   generate MODEL_DIR            prints one line of output token ids per prompt
//   generate MODEL_DIR LORA_DIR   then the same prompts again through a PEFT LoRA adapter
// Also shows error handling: a bad model path, a bad token id and a too-long prompt each come
// back as a status with a message, and the engine keeps working afterwards.
#include <taco/taco.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

// SmolLM2 token ids of "The capital of France is", the chat prompt "What is 2+2?" and
// "Once upon a time, in a small village,".
const std::vector<std::vector<int32_t>> kPrompts = {
    {504, 3575, 282, 4649, 314},
    {1,   9690, 198, 2683, 359,   253,  5356, 5646, 11173, 3365, 3511, 308,  34519,
     28,  7018, 411, 407,  19712, 8182, 2,    198,  1,     4093, 198,  1780, 314,
     216, 34,   27,  34,   47,    2,    198,  1,    520,   9531, 198},
    {6403, 1980, 253, 655, 28, 281, 253, 1165, 6560, 28},
};

bool generate(taco_engine* engine, const std::vector<std::vector<int32_t>>& prompts,
              int64_t lora_id = 0) {
  taco_sampling_options greedy = taco_sampling_options_default();
  greedy.temperature = 0.0f;
  greedy.max_tokens = 24;
  greedy.lora_id = lora_id;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    if (taco_engine_add_request(engine, id.c_str(), prompts[i].data(), prompts[i].size(),
                                &greedy) != TACO_OK) {
      std::fprintf(stderr, "add_request: %s\n", taco_engine_last_error(engine));
      return false;
    }
  }
  if (taco_engine_run(engine) != TACO_OK) {
    std::fprintf(stderr, "run: %s\n", taco_engine_last_error(engine));
    return false;
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    taco_output out;
    taco_engine_get_output(engine, id.c_str(), &out);
    for (size_t t = 0; t < out.num_tokens; ++t) std::printf(t ? " %d" : "%d", out.tokens[t]);
    std::printf("\n");
    taco_engine_release(engine, id.c_str());
  }
  return true;
}

// Each bad input must fail with a message and leave the engine usable.
bool show_errors(taco_engine* engine) {
  taco_sampling_options greedy = taco_sampling_options_default();
  greedy.temperature = 0.0f;
  const std::vector<int32_t> bad_token = {504, taco_engine_vocab_size(engine) + 7};
  const std::vector<int32_t> too_long(taco_engine_max_model_len(engine) + 1, 504);
  bool ok = true;
  for (const auto* prompt : {&bad_token, &too_long}) {
    const taco_status s =
        taco_engine_add_request(engine, "bad", prompt->data(), prompt->size(), &greedy);
    std::fprintf(stderr, "rejected (status %d): %s\n", s, taco_engine_last_error(engine));
    ok = ok && s == TACO_ERR_INVALID_ARGUMENT;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [LORA_DIR]\n", argv[0]);
    return 2;
  }
  char error[512];
  taco_engine* engine = nullptr;
  taco_engine_options options = taco_engine_options_default();
  options.dtype = "float32";
  options.kv_cache_space_gib = 1.0;
  options.enable_lora = argc == 3;
  // Drafts from n-grams of each sequence: the same tokens as plain decoding, sooner.
  options.speculative_method = "ngram";
  options.num_speculative_tokens = 4;
  options.ngram_prompt_lookup_max = 3;
  options.ngram_prompt_lookup_min = 1;

  if (taco_engine_create("/nonexistent/model", &options, &engine, error, sizeof error) == TACO_OK) {
    std::fprintf(stderr, "a bad model path was accepted\n");
    return 1;
  }
  std::fprintf(stderr, "rejected bad model path: %s\n", error);

  if (taco_engine_create(argv[1], &options, &engine, error, sizeof error) != TACO_OK) {
    std::fprintf(stderr, "create: %s\n", error);
    return 1;
  }
  bool ok = generate(engine, kPrompts) && show_errors(engine) && generate(engine, {kPrompts[0]});
  if (ok && argc == 3) {
    if (taco_engine_add_lora(engine, 1, "example", argv[2]) != TACO_OK) {
      std::fprintf(stderr, "add_lora: %s\n", taco_engine_last_error(engine));
      ok = false;
    } else {
      ok = generate(engine, kPrompts, 1);
    }
  }
  taco_engine_destroy(engine);
  return ok ? 0 : 1;
}
