"""Tiny random-weight models saved as AWQ (GEMM) and GPTQ checkpoints by a round-to-nearest
quantizer that packs exactly the published layouts (AutoAWQ's WQLinear_GEMM, AutoGPTQ's v1
format), with the HF model holding the dequantized weights, the oracle."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
# Projections that read the same input.
SHARED_INPUT = {
    "q_proj": "qkv",
    "k_proj": "qkv",
    "v_proj": "qkv",
    "gate_proj": "gu",
    "up_proj": "gu",
}
# AutoAWQ packs output columns 8 c + order[i] into nibble i of int32 c.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        initializer_range=0.15,
    )
    return LlamaForCausalLM(cfg).eval()


def _pack(values: np.ndarray, bits: int, axis: int, order=None) -> np.ndarray:
    """int32s holding 32 / bits values each along axis (in `order` within each int32)."""
    per = 32 // bits
    v = np.moveaxis(values.astype(np.uint32), axis, 0)
    v = v.reshape(v.shape[0] // per, per, *v.shape[1:])
    out = np.zeros((v.shape[0], *v.shape[2:]), dtype=np.uint32)
    for i in range(per):
        out |= v[:, order[i] if order else i] << np.uint32(bits * i)
    return np.ascontiguousarray(np.moveaxis(out.view(np.int32), 0, axis))


def _quantize(w: np.ndarray, bits: int, groups: np.ndarray, n_groups: int, sym: bool, zmin: int):
    """Round-to-nearest per (group, output): w [out, in], groups [in] -> q [out, in] ints,
    scales [n_groups, out] fp16, zeros [n_groups, out] ints >= zmin (GPTQ's v1 format stores
    z - 1, so it has no zero point 0)."""
    qmax = (1 << bits) - 1
    out = w.shape[0]
    scales = np.zeros((n_groups, out), dtype=np.float16)
    zeros = np.zeros((n_groups, out), dtype=np.int64)
    q = np.zeros(w.shape, dtype=np.int64)
    for g in range(n_groups):
        cols = np.nonzero(groups == g)[0]
        wg = w[:, cols]
        if sym:
            s = np.abs(wg).max(axis=1) / ((qmax + 1) // 2 - 1 + 0.5)
            z = np.full(out, (qmax + 1) // 2)
        else:
            lo, hi = np.minimum(wg.min(axis=1), 0), np.maximum(wg.max(axis=1), 0)
            s = (hi - lo) / qmax
            z = np.clip(np.round(-lo / np.maximum(s, 1e-12)), zmin, qmax).astype(np.int64)
        s = np.maximum(s, 1e-6).astype(np.float16)
        scales[g], zeros[g] = s, z
        q[:, cols] = np.clip(np.round(wg / s.astype(np.float32)[:, None]) + z[:, None], 0, qmax)
    return q, scales, zeros


def save_quantized(
    path: str,
    model,
    method: str,
    bits: int = 4,
    group_size: int = 64,
    sym: bool = False,
    act_order: bool = False,
    shared_order: bool = True,
    seed: int = 0,
) -> None:
    """Saves model's linears quantized (method "awq" or "gptq") into the HF directory path, and
    replaces them in model by their dequantized values, so model is the oracle. With act_order,
    projections reading one input share their input order unless shared_order is False."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    perms = {}
    tensors = {}
    sd = model.state_dict()
    for name, t in sd.items():
        prefix = name[: -len(".weight")]
        if not name.endswith(".weight") or not prefix.endswith(LINEARS):
            tensors[name] = t.detach().numpy().astype(np.float32)
            continue
        w = t.detach().numpy().astype(np.float32)
        out, inp = w.shape
        g = inp if group_size == -1 else group_size
        n_groups = inp // g
        if act_order:
            # Inputs in the order GPTQ quantized them (by its Hessian of the layer's input, so
            # projections that read one input share it: q/k/v, gate/up).
            parent, leaf = prefix.rsplit(".", 1)
            key = (parent, SHARED_INPUT.get(leaf, leaf) if shared_order else leaf)
            if key not in perms:
                perms[key] = rng.permutation(inp)
            perm = perms[key]
            groups = np.empty(inp, dtype=np.int64)
            groups[perm] = np.arange(inp) // g
        else:
            groups = np.arange(inp) // g
        q, scales, zeros = _quantize(w, bits, groups, n_groups, sym, 1 if method == "gptq" else 0)
        deq = (q - zeros[groups].T) * scales[groups].T.astype(np.float32)
        with torch.no_grad():
            t.copy_(torch.from_numpy(deq.astype(np.float32)))
        if method == "awq":
            tensors[prefix + ".qweight"] = _pack(q.T, 4, 1, AWQ_ORDER)  # [in, out / 8]
            tensors[prefix + ".qzeros"] = _pack(zeros, 4, 1, AWQ_ORDER)  # [groups, out / 8]
        else:
            tensors[prefix + ".qweight"] = _pack(q.T, bits, 0)  # [in * bits / 32, out]
            tensors[prefix + ".qzeros"] = _pack(zeros - 1, bits, 1)  # z - 1 (v1 format)
            tensors[prefix + ".g_idx"] = groups.astype(np.int32)
        tensors[prefix + ".scales"] = scales
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    if method == "awq":
        qc = {
            "quant_method": "awq",
            "bits": 4,
            "group_size": group_size,
            "zero_point": True,
            "version": "gemm",
        }
    else:
        qc = {
            "quant_method": "gptq",
            "bits": bits,
            "group_size": group_size,
            "desc_act": act_order,
            "sym": sym,
            "checkpoint_format": "gptq",
        }
    cfg["quantization_config"] = qc
    cfg["architectures"] = ["LlamaForCausalLM"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
