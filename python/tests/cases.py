"""The parity cases the tests run (tests/fixtures/<family>/<case>) and how they are judged."""

import json
import os
import pathlib

import numpy as np

import fastdit

SOURCE = pathlib.Path(os.environ.get("FASTDIT_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
FIXTURES = SOURCE / "tests" / "fixtures"
FLOAT32_BOUND = 1e-4


def all_cases():
    return sorted(p for p in FIXTURES.glob("*/*") if all((p / f).exists() for f in ("transformer", "inputs.safetensors", "outputs.safetensors")))


def case(name):
    return FIXTURES / name


def inputs_and_args(case_dir):
    """The case as the held-back checks read it: inputs.safetensors and args.json."""
    inputs = fastdit.load_file(case_dir / "inputs.safetensors")
    args_file = case_dir / "args.json"
    args = json.loads(args_file.read_text()) if args_file.is_file() else {}
    return inputs, args


def references(case_dir):
    """{head: (float32 reference, the reference's own bf16 run or None)}."""
    outputs = fastdit.load_file(case_dir / "outputs.safetensors")
    return {name: (ref, outputs.get(name + "_bf16")) for name, ref in outputs.items() if not name.endswith("_bf16")}


def rel_l2(out, ref):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def bf16_bound(ref, ref_bf16):
    return max(1.5 * rel_l2(ref_bf16, ref), 1e-3) if ref_bf16 is not None else 1e-2
