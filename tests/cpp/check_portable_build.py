"""Checks that the built libraries run on any x86-64 CPU: libtaco.so and the Python module hold
no 256- or 512-bit vector instructions (only the CPU kernel levels may, each within its level),
and each level's library exports nothing but its table, so no code compiled for one level can be
picked by code of another.

    python check_portable_build.py --build-dir BUILD
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import shutil
import subprocess
import sys

# Registers a library may use: baseline code none of ymm/zmm, the AVX2 level no zmm.
_FORBIDDEN = {
    "libtaco.so": r"%[yz]mm\d",
    "_C": r"%[yz]mm\d",
    "libtaco_cpu_generic.so": r"%[yz]mm\d",
    "libtaco_cpu_avx2.so": r"%zmm\d",
}


def _disassembly(path: str) -> str:
    return subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True, check=True
    ).stdout


def _exports(path: str) -> list[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[-1] for line in out.splitlines() if line.split()[1:2] != ["A"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    if platform.machine() not in ("x86_64", "AMD64") or not shutil.which("objdump"):
        print("check_portable_build: not an x86-64 machine with objdump, skipped")
        return 0
    failures = []
    libs = {}
    for path in glob.glob(os.path.join(args.build_dir, "*.so")):
        name = os.path.basename(path)
        libs["_C" if name.startswith("_C.") else name] = path
    for key, pattern in _FORBIDDEN.items():
        if key not in libs:
            failures.append(f"{key}: not built in {args.build_dir}")
            continue
        bad = [line for line in _disassembly(libs[key]).splitlines() if re.search(pattern, line)]
        if bad:
            failures.append(f"{key}: {len(bad)} instructions beyond its level, e.g. {bad[0]}")
    for key, path in libs.items():
        m = re.fullmatch(r"libtaco_cpu_(\w+)\.so", key)
        if m and _exports(path) != [f"taco_cpu_kernels_{m.group(1)}"]:
            failures.append(f"{key} exports {_exports(path)[:5]}, not only its table")
    for f in failures:
        print("FAIL", f)
    print(f"check_portable_build: {len(libs)} libraries, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
