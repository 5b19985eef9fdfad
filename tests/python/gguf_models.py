"""Tiny random-weight models written as GGUF files the way llama.cpp's converter writes them
(its tensor names, q/k rows interleaved for the Llama architecture, weights quantized by the
`gguf` package), for tests that load them through us and through HF transformers."""

from __future__ import annotations

import numpy as np
import torch

_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}

HIDDEN, HEADS, KV_HEADS, LAYERS, FFN, VOCAB, CONTEXT = 64, 4, 2, 2, 128, 256, 256


def _interleave(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's converter order of q/k rows (its rope pairs adjacent features)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def hf_model(arch: str, tied: bool = True, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    kwargs = dict(
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        vocab_size=VOCAB,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=tied,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        initializer_range=0.15,  # far from uniform logits, so greedy choices are clear
    )
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**kwargs)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**kwargs)).eval()


def write_gguf(
    path: str,
    model,
    arch: str,
    qtype: str,
    head_type: str | None = None,
    types: dict[str, str] | None = None,
) -> None:
    """Writes model as a GGUF file: 2-D weights in qtype (the untied output in head_type, if
    given; per-layer tensors named in `types`, e.g. {"attn_v": "Q8_0"}, in theirs, as llama.cpp's
    mixed files do), norms and biases in F32, and a placeholder vocabulary."""
    import gguf

    q = gguf.GGMLQuantizationType[qtype]
    w = gguf.GGUFWriter(path, arch)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_block_count(LAYERS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_vocab_size(VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(VOCAB)])
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def add(name: str, t: torch.Tensor, ty=q) -> None:
        a = t.detach().float().numpy()
        if a.ndim == 2 and ty != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(a, ty), raw_dtype=ty)
        else:
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    sd = model.state_dict()
    add("token_embd.weight", sd["model.embed_tokens.weight"])
    add("output_norm.weight", sd["model.norm.weight"])
    if "lm_head.weight" in sd and not model.config.tie_word_embeddings:
        add("output.weight", sd["lm_head.weight"], gguf.GGMLQuantizationType[head_type or qtype])
    for i in range(LAYERS):
        for hf, name in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.{hf}.{kind}"
                if key not in sd:
                    continue
                t = sd[key]
                if arch == "llama" and hf == "self_attn.q_proj":
                    t = _interleave(t, HEADS)
                if arch == "llama" and hf == "self_attn.k_proj":
                    t = _interleave(t, KV_HEADS)
                ty = gguf.GGMLQuantizationType[(types or {}).get(name, qtype)]
                add(f"blk.{i}.{name}.{kind}", t, ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Dimensions of the K-quant model: rows of 256-value super-blocks.
K_HIDDEN, K_FFN = 256, 512


def write_random_k_gguf(path: str, qtype: str, seed: int = 0) -> None:
    """A tiny Llama whose every 2-D weight is random qtype super-blocks (Q4_K, Q5_K, Q6_K: the
    gguf package dequantizes them but cannot quantize), with fp16 scales chosen so weights are
    of order 0.03; norms F32."""
    import gguf

    rng = np.random.default_rng(seed)
    q = gguf.GGMLQuantizationType[qtype]
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[q]
    scale = {"Q4_K": 1e-4, "Q5_K": 5e-5, "Q6_K": 1.5e-5}.get(qtype, 1e-4)

    def blocks(rows: int, cols: int) -> np.ndarray:
        raw = rng.integers(0, 256, size=(rows * cols // block_values, block_bytes), dtype=np.uint8)
        d = (scale * rng.uniform(0.5, 1.5, size=raw.shape[0])).astype(np.float16).view(np.uint8)
        if qtype == "Q6_K":
            raw[:, 208:210] = d.reshape(-1, 2)
        else:
            raw[:, 0:2] = d.reshape(-1, 2)
            dmin = (scale * rng.uniform(0.5, 1.5, size=raw.shape[0])).astype(np.float16)
            raw[:, 2:4] = dmin.view(np.uint8).reshape(-1, 2)
        return raw.reshape(rows, cols // block_values * block_bytes)

    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(K_HIDDEN)
    w.add_feed_forward_length(K_FFN)
    w.add_block_count(LAYERS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(K_HIDDEN // HEADS)
    w.add_vocab_size(VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(VOCAB)])
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([])
    w.add_eos_token_id(2)
    kv = KV_HEADS * K_HIDDEN // HEADS
    shapes = {
        "attn_q": (K_HIDDEN, K_HIDDEN),
        "attn_k": (kv, K_HIDDEN),
        "attn_v": (kv, K_HIDDEN),
        "attn_output": (K_HIDDEN, K_HIDDEN),
        "ffn_gate": (K_FFN, K_HIDDEN),
        "ffn_up": (K_FFN, K_HIDDEN),
        "ffn_down": (K_HIDDEN, K_FFN),
    }
    norm = np.ones(K_HIDDEN, dtype=np.float32)
    w.add_tensor("token_embd.weight", blocks(VOCAB, K_HIDDEN), raw_dtype=q)
    w.add_tensor("output_norm.weight", norm)
    for i in range(LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", norm)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", norm)
        for name, (rows, cols) in shapes.items():
            w.add_tensor(f"blk.{i}.{name}.weight", blocks(rows, cols), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
