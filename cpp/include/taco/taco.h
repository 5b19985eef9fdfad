// taco.h: the whole public C++ API of libtaco.so.
//
// Embed offline LLM inference in a C or C++ program with no Python: create an engine from an
// HF-format model directory (config.json + *.safetensors), add requests as token ids with
// sampling options, step the engine (or run it to completion), and read each request's output
// token ids, logprobs and finish reason. Tokenization stays with the caller.
//
// Conventions:
//  - Every function that can fail returns a taco_status; TACO_OK is 0. On failure the engine's
//    last error message (taco_engine_last_error) says what went wrong. No C++ exception ever
//    crosses this boundary, and a failed call leaves the engine usable.
//  - Handles are opaque. One engine must not be used from two threads at once.
//  - Strings passed in are copied; strings and arrays returned stay valid until the next call
//    on the same engine (or request) that changes it.
#ifndef TACO_TACO_H
#define TACO_TACO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TACO_API __attribute__((visibility("default")))
#else
#define TACO_API
#endif

typedef enum taco_status {
  TACO_OK = 0,
  TACO_ERR_INVALID_ARGUMENT = 1,  // a bad option, token id, prompt length or model file
  TACO_ERR_NOT_FOUND = 2,         // unknown request id
  TACO_ERR_CAPACITY = 3,          // the KV cache cannot hold what was asked
  TACO_ERR_INTERNAL = 4,          // anything else; the message says what
} taco_status;

typedef enum taco_finish_reason {
  TACO_FINISH_NONE = 0,    // still running
  TACO_FINISH_LENGTH = 1,  // max_tokens or the model's context length reached
  TACO_FINISH_STOP = 2,    // an EOS or stop token id
  TACO_FINISH_ABORT = 3,   // taco_engine_abort
} taco_finish_reason;

typedef struct taco_engine taco_engine;

// Engine options. Zero means "derive a default" where noted; fill with taco_engine_options_default.
typedef struct taco_engine_options {
  const char* dtype;               // "auto" (bfloat16 on CPUs with AVX512-BF16, else float32),
                                   // "float32", "bfloat16", "float16"
  const char* device;              // "auto", "cpu" ("cuda" when built with CUDA)
  uint64_t seed;                   // seed of the engine's generator for unseeded requests
  int32_t block_size;              // KV block size in tokens, positive (16)
  int32_t max_num_seqs;            // sequences per step (256)
  int32_t max_num_batched_tokens;  // tokens per step (0: derived)
  int32_t max_model_len;           // context length (0: the model config's)
  int32_t enable_prefix_caching;   // reuse KV blocks of identical prompt prefixes (0)
  int32_t enable_chunked_prefill;  // split long prompts across steps (0)
  double kv_cache_space_gib;       // CPU KV cache size (0: $TACO_CPU_KVCACHE_SPACE or 4 GiB)
  int32_t num_kv_blocks_override;  // > 0: exactly this many KV blocks (for tests)
  int32_t num_threads;             // CPU threads (0: all cores)
  int32_t enable_lora;             // serve LoRA adapters (taco_engine_add_lora) (0)
  int32_t max_loras;               // adapters in one batch: device slots (1)
  int32_t max_lora_rank;           // 8, 16, 32, 64, 128 or 256 (16)
  int32_t max_cpu_loras;           // adapters kept read in host memory (0: max_loras)
  // Speculative decoding (outputs unchanged, only faster where text repeats):
  const char* speculative_method;   // "" (off), "ngram" or "lookahead" ("")
  int32_t num_speculative_tokens;   // drafted tokens per step at most: 1-32 with a method (0)
  int32_t ngram_prompt_lookup_max;  // longest n-gram drafts are matched by: 1-32 (0)
  int32_t ngram_prompt_lookup_min;  // shortest: 1 .. ngram_prompt_lookup_max (0)
} taco_engine_options;

// Sampling options of one request. Fill with taco_sampling_options_default.
typedef struct taco_sampling_options {
  int32_t max_tokens;        // tokens to generate at most (16)
  int32_t min_tokens;        // EOS and stop ids are ignored before this many (0)
  float temperature;         // 0: greedy (1.0)
  float top_p;               // (1.0)
  int32_t top_k;             // <= 0: off (-1)
  float min_p;               // (0)
  float repetition_penalty;  // (1.0)
  float presence_penalty;    // (0)
  float frequency_penalty;   // (0)
  int32_t has_seed;          // non-zero: use seed below for this request alone
  uint64_t seed;
  int32_t ignore_eos;             // (0)
  const int32_t* stop_token_ids;  // [num_stop_token_ids] extra ids that end the output
  size_t num_stop_token_ids;
  int32_t logprobs;  // -1: none; k >= 0: sampled token's logprob plus top k
  int64_t lora_id;   // a LoRA adapter added with taco_engine_add_lora (0: the base model)
} taco_sampling_options;

TACO_API taco_engine_options taco_engine_options_default(void);
TACO_API taco_sampling_options taco_sampling_options_default(void);

// Loads the model in model_dir and allocates the KV cache. On failure *out is NULL and, when
// error is not NULL, the message is copied into error[0..error_len) (NUL-terminated).
TACO_API taco_status taco_engine_create(const char* model_dir, const taco_engine_options* options,
                                        taco_engine** out, char* error, size_t error_len);
TACO_API void taco_engine_destroy(taco_engine* engine);

// The message of the last failed call on this engine ("" when none).
TACO_API const char* taco_engine_last_error(const taco_engine* engine);

TACO_API int32_t taco_engine_vocab_size(const taco_engine* engine);
TACO_API int32_t taco_engine_max_model_len(const taco_engine* engine);

// Queues a request. request_id must be unique among unfinished requests. Rejects (and queues
// nothing) an empty or too long prompt, an out-of-range token id or a request that can never fit.
TACO_API taco_status taco_engine_add_request(taco_engine* engine, const char* request_id,
                                             const int32_t* prompt, size_t prompt_len,
                                             const taco_sampling_options* options);

// Reads the PEFT LoRA adapter in directory `path` (adapter_config.json +
// adapter_model.safetensors) for requests with lora_id == id (> 0). Adding an id again with the
// same path does nothing; another path under a known id, or a bad adapter, is
// TACO_ERR_INVALID_ARGUMENT with the message naming the problem.
TACO_API taco_status taco_engine_add_lora(taco_engine* engine, int64_t id, const char* name,
                                          const char* path);
// Forgets an adapter no unfinished request uses (TACO_ERR_NOT_FOUND when unknown).
TACO_API taco_status taco_engine_remove_lora(taco_engine* engine, int64_t id);

// Frees the request's KV blocks and marks it TACO_FINISH_ABORT.
TACO_API taco_status taco_engine_abort(taco_engine* engine, const char* request_id);

// Runs one engine step. *num_unfinished (optional) receives the requests still running.
TACO_API taco_status taco_engine_step(taco_engine* engine, int32_t* num_unfinished);

// Steps until every request has finished.
TACO_API taco_status taco_engine_run(taco_engine* engine);

// A request's output so far. tokens/logprobs point to num_tokens entries owned by the engine;
// logprobs is NULL unless the request asked for them. The output stays readable after it
// finished until taco_engine_release is called for it.
typedef struct taco_output {
  const int32_t* tokens;
  const float* logprobs;
  size_t num_tokens;
  taco_finish_reason finish_reason;
  int32_t stop_token;  // the stop id that ended it, or -1
} taco_output;

TACO_API taco_status taco_engine_get_output(taco_engine* engine, const char* request_id,
                                            taco_output* out);
// Forgets a finished request's output.
TACO_API taco_status taco_engine_release(taco_engine* engine, const char* request_id);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TACO_TACO_H
