"""Tiny random-weight models saved as FP8 checkpoints in the published layouts: vLLM's / AutoFP8's
"fp8" (a float32 weight_scale per tensor, input_scale when static) and compressed-tensors' FP8
schemes (per tensor or per output channel), with the HF model holding the dequantized weights,
the oracle; and the per-tensor rounding quantization="fp8" applies at load."""

from __future__ import annotations

import json
import os

import torch
from group_quant_models import LINEARS

FP8_MAX = 448.0


def quantize_fp8(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest E4M3 codes of w [out, in] and float32 scales ([out, 1] per channel, [] per
    tensor): scale = max|w| / 448."""
    w = w.float()
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().max()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    codes = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return codes, scale.float()


def dequantize_(model, per_channel: bool = False) -> None:
    """Replaces model's decoder projections by their FP8 round trip (what quantization="fp8"
    serves)."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(".weight") and name[: -len(".weight")].endswith(LINEARS):
                codes, scale = quantize_fp8(t, per_channel)
                t.copy_(codes.float() * scale)


def save_fp8(path: str, model, fmt: str, per_channel: bool = False, static: bool = False) -> None:
    """Saves model with FP8 projections into the HF directory path (fmt "fp8" or
    "compressed-tensors") and replaces them in model by their dequantized values."""
    from safetensors.torch import save_file

    tensors = {}
    for name, t in model.state_dict().items():
        prefix = name[: -len(".weight")]
        if not name.endswith(".weight") or not prefix.endswith(LINEARS):
            tensors[name] = t.detach().float().contiguous()
            continue
        codes, scale = quantize_fp8(t.detach(), per_channel)
        with torch.no_grad():
            t.copy_(codes.float() * scale)
        tensors[name] = codes.contiguous()
        tensors[prefix + ".weight_scale"] = scale.reshape(-1, 1) if per_channel else scale
        if static:
            tensors[prefix + ".input_scale"] = torch.tensor(0.05, dtype=torch.float32)
    os.makedirs(path, exist_ok=True)
    # Tied tensors are saved once each (safetensors refuses shared storage).
    save_file({k: v.clone() for k, v in tensors.items()}, os.path.join(path, "model.safetensors"))
    cfg = model.config.to_dict()
    if fmt == "fp8":
        qc = {"quant_method": "fp8", "activation_scheme": "static" if static else "dynamic"}
    else:
        act = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": not static}
        act["strategy"] = "tensor" if static else "token"
        qc = {
            "quant_method": "compressed-tensors",
            "format": "float-quantized",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {
                        "num_bits": 8,
                        "type": "float",
                        "symmetric": True,
                        "dynamic": False,
                        "strategy": "channel" if per_channel else "tensor",
                    },
                    "input_activations": act,
                }
            },
            "ignore": ["lm_head"],
        }
    cfg["quantization_config"] = qc
    cfg["architectures"] = ["LlamaForCausalLM"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
