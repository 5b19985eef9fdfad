"""PEFT adapters for the default model, made with PEFT itself: LoRA adapters of different ranks
and target sets with random non-zero weights, and a prompt-tuning adapter whose virtual tokens
are embeddings of real tokens."""

from __future__ import annotations

from pathlib import Path

import torch

# name -> (rank, lora_alpha, target modules, rsLoRA, seed)
LORA_SPECS = {
    "attn-r8": (8, 16, ["q_proj", "k_proj", "v_proj", "o_proj"], False, 1),
    "mlp-r16": (16, 32, ["gate_proj", "up_proj", "down_proj"], False, 2),
    "all-r4-rs": (
        4,
        8,
        ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        True,
        3,
    ),
    "qk-r16": (16, 16, ["q_proj", "k_proj"], False, 4),
}


def make_lora(base_dir: str, name: str, root: Path) -> str:
    """Saves LoRA adapter `name` of LORA_SPECS under root; returns its directory."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = root / name
    if (out / "adapter_model.safetensors").exists():
        return str(out)
    rank, alpha, targets, rslora, seed = LORA_SPECS[name]
    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=targets,
        use_rslora=rslora,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_A" in pname:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
            elif "lora_B" in pname:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    model.save_pretrained(str(out), safe_serialization=True)
    return str(out)


def make_prompt_adapter(base_dir: str, root: Path, num_virtual_tokens: int = 8) -> str:
    """Saves a prompt-tuning adapter whose virtual tokens embed the words of a short
    instruction; returns its directory."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = root / f"prompt-{num_virtual_tokens}"
    if (out / "adapter_model.safetensors").exists():
        return str(out)
    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok.encode(" Answer like a pirate, in capital letters, with many exclamation marks!")
    ids = (ids * num_virtual_tokens)[:num_virtual_tokens]
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens)
    model = get_peft_model(base, config)
    with torch.no_grad():
        emb = base.get_input_embeddings().weight[torch.tensor(ids)]
        model.prompt_encoder["default"].embedding.weight.copy_(emb)
    model.save_pretrained(str(out), safe_serialization=True)
    return str(out)


def peft_greedy(base_dir: str, adapter_dir: str, prompts: list[list[int]], max_new_tokens: int):
    """HF + PEFT fp32 greedy continuations (token ids) and the chosen tokens' logprobs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids_out, lps_out = [], []
    with torch.no_grad():
        for prompt in prompts:
            x = torch.tensor([prompt])
            res = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=0,
            )
            new = res.sequences[0, len(prompt) :].tolist()
            lps = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(res.scores, new)]
            ids_out.append(new)
            lps_out.append(lps)
    return ids_out, lps_out
