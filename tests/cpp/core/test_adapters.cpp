// Adapters in the engine core: the scheduler keeps the running requests within max_loras
// distinct LoRAs (and max_prompt_adapters), the prefix cache never shares blocks between
// adapters, and bad adapter ids and names are refused with nothing changed.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine_harness.h"

namespace taco::test {
namespace {

EngineOptions lora_options(int32_t max_loras) {
  EngineOptions o;
  o.enable_lora = true;
  o.max_loras = max_loras;
  o.max_num_seqs = 16;
  return o;
}

std::map<std::string, Collected> run_all(Engine& e) {
  std::map<std::string, Collected> acc;
  for (int i = 0; i < 1000 && e.has_unfinished(); ++i) absorb(acc, e.step());
  EXPECT_FALSE(e.has_unfinished());
  return acc;
}

TEST(Adapters, RunningLorasStayWithinTheSlots) {
  Harness h = make_engine(lora_options(2), {.num_device_blocks = 64, .block_size = 4}, 64);
  for (int64_t id = 1; id <= 4; ++id) {
    h.engine->add_adapter(AdapterKind::kLora, id, "a" + std::to_string(id),
                          "/a" + std::to_string(id));
  }
  std::map<std::string, std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) {
    SamplingOptions s = sampling(5);
    s.lora_id = i % 5;  // four adapters and the base model, interleaved
    const std::vector<int32_t> prompt = {i + 1, 2, 3, 4, 5};
    prompts["r" + std::to_string(i)] = prompt;
    h.engine->add_request("r" + std::to_string(i), prompt, s);
  }
  const auto acc = run_all(*h.engine);
  EXPECT_LE(h.exec->max_step_loras, 2);
  EXPECT_EQ(h.exec->max_step_loras, 2);  // two adapters did share steps
  for (const auto& [id, prompt] : prompts) {
    ASSERT_TRUE(acc.at(id).finished) << id;
    EXPECT_EQ(acc.at(id).tokens[0], expected_stream(prompt, 0, 5, 100)) << id;
  }
}

TEST(Adapters, PrefixCacheIsKeyedByAdapter) {
  EngineOptions o = lora_options(2);
  o.enable_prefix_caching = true;
  Harness h = make_engine(o, {.num_device_blocks = 64, .block_size = 4}, 64);
  h.engine->add_adapter(AdapterKind::kLora, 1, "a", "/a");
  h.engine->add_adapter(AdapterKind::kLora, 2, "b", "/b");
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  const auto run = [&](const std::string& id, int64_t lora) {
    SamplingOptions s = sampling(2);
    s.lora_id = lora;
    h.engine->add_request(id, prompt, s);
    return run_all(*h.engine).at(id).num_cached_tokens;
  };
  EXPECT_EQ(run("first", 1), 0);
  EXPECT_EQ(run("same adapter", 1), 12);
  EXPECT_EQ(run("other adapter", 2), 0);
  EXPECT_EQ(run("base model", 0), 0);
  EXPECT_EQ(run("base again", 0), 12);
  // The same id with other weights: none of the old KV.
  ASSERT_TRUE(h.engine->remove_adapter(AdapterKind::kLora, 1));
  h.engine->add_adapter(AdapterKind::kLora, 1, "a2", "/a2");
  EXPECT_EQ(run("re-added id", 1), 0);
  EXPECT_EQ(run("re-added id again", 1), 12);
}

TEST(Adapters, BadIdsNamesAndRequestsAreRefused) {
  Harness plain = make_engine({}, {.num_device_blocks = 16, .block_size = 4}, 32);
  EXPECT_THROW(plain.engine->add_adapter(AdapterKind::kLora, 1, "a", "/a"), std::invalid_argument);
  SamplingOptions with_lora = sampling(2);
  with_lora.lora_id = 1;
  EXPECT_THROW(plain.engine->add_request("x", {1, 2}, with_lora), std::invalid_argument);

  Harness h = make_engine(lora_options(1), {.num_device_blocks = 16, .block_size = 4}, 32);
  EXPECT_THROW(h.engine->add_adapter(AdapterKind::kLora, 0, "zero", "/z"), std::invalid_argument);
  EXPECT_THROW(h.engine->add_adapter(AdapterKind::kLora, 1, "bad", ""), std::invalid_argument);
  EXPECT_TRUE(h.engine->list_adapters(AdapterKind::kLora).empty());
  h.engine->add_adapter(AdapterKind::kLora, 1, "a", "/a");
  EXPECT_EQ(h.engine->add_adapter(AdapterKind::kLora, 1, "a", "/a").path, "/a");  // again: a no-op
  EXPECT_THROW(h.engine->add_adapter(AdapterKind::kLora, 1, "a", "/elsewhere"),
               std::invalid_argument);
  SamplingOptions unknown = sampling(2);
  unknown.lora_id = 7;
  EXPECT_THROW(h.engine->add_request("u", {1, 2}, unknown), std::invalid_argument);

  h.engine->add_request("live", {1, 2}, with_lora);
  EXPECT_THROW(h.engine->remove_adapter(AdapterKind::kLora, 1), std::invalid_argument);
  run_all(*h.engine);
  EXPECT_TRUE(h.engine->remove_adapter(AdapterKind::kLora, 1));
  EXPECT_FALSE(h.engine->remove_adapter(AdapterKind::kLora, 1));
  EXPECT_TRUE(h.engine->list_adapters(AdapterKind::kLora).empty());
}

TEST(Adapters, PromptAdapterRequestsNeedTheirVirtualTokens) {
  EngineOptions o;
  o.enable_prompt_adapter = true;
  o.max_prompt_adapters = 1;
  Harness h = make_engine(o, {.num_device_blocks = 32, .block_size = 4}, 32);
  h.engine->add_adapter(AdapterKind::kPromptAdapter, 3, "p", "/p");
  h.engine->add_adapter(AdapterKind::kPromptAdapter, 4, "q", "/q");
  SamplingOptions s = sampling(3);
  s.prompt_adapter_id = 3;
  EXPECT_THROW(h.engine->add_request("short", {0, 0}, s), std::invalid_argument);
  h.engine->add_request("a", {0, 0, 5, 6}, s);
  s.prompt_adapter_id = 4;
  h.engine->add_request("b", {0, 0, 5, 6}, s);
  const auto acc = run_all(*h.engine);
  EXPECT_EQ(acc.at("a").tokens[0].size(), 3u);
  EXPECT_EQ(acc.at("b").tokens[0].size(), 3u);
}

}  // namespace
}  // namespace taco::test
