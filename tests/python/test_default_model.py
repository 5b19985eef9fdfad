"""The default model directory: made from the GGUF once, then found in the cache."""

import json
import os

from taco_llm import default_model


def test_default_model_dir_is_hf_format(smol_model_dir):
    names = set(os.listdir(smol_model_dir))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.load(open(os.path.join(smol_model_dir, "config.json")))
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["vocab_size"] == 49152


def test_complete_cache_dir_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path))
    target = tmp_path / default_model._DIR_NAME
    target.mkdir()
    (target / default_model._DONE_MARKER).write_text(default_model._RECIPE_VERSION)

    def no_convert(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(default_model, "_convert", no_convert)
    assert default_model.default_model_dir() == str(target)
