"""Another quantization of a GGUF file, made by llama.cpp's own quantizer: the weights are
dequantized to float32 (the gguf package, metadata and tokenizer kept), then llama.cpp
quantizes that file to --ftype (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ...) through
llama-cpp-python. For benchmarks of types no shipped file has here.

    python bench/requantize_gguf.py --ftype Q4_K_M --out /tmp/smollm2.Q4_K_M.gguf \\
        --llama-python /path/to/venv/bin/python [--gguf FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

_QUANTIZE = r"""
import sys, llama_cpp
src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype)
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(rc)
"""


def dequantize(src: str, dst: str) -> None:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), value_type, sub_type=sub_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, values.reshape([int(d) for d in reversed(t.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gguf", default=None, help="source file (default: the default model's)")
    ap.add_argument("--ftype", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON", ""), required=False)
    args = ap.parse_args()
    if not args.llama_python:
        sys.exit("pass --llama-python (a venv with llama-cpp-python)")
    if args.gguf is None:
        from taco_llm.default_model import default_gguf

        args.gguf = default_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        dequantize(args.gguf, f32)
        subprocess.run(
            [args.llama_python, "-c", _QUANTIZE, f32, args.out, args.ftype.upper()], check=True
        )
    print(args.out)


if __name__ == "__main__":
    main()
