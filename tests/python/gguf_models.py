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


def write_gguf(path: str, model, arch: str, qtype: str, head_type: str | None = None) -> None:
    """Writes model as a GGUF file: 2-D weights in qtype (the untied output in head_type, if
    given), norms and biases in F32, and a placeholder vocabulary."""
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
                add(f"blk.{i}.{name}.{kind}", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
