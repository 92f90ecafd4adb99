#!/usr/bin/env python3
"""Writes the reference activation trace of one parity case.

    trace_reference.py --ref <reference src/> --spec tools/reference/specs/<family>.py
                       --case <case dir> --out trace.jsonl
                       [--dtype float32|bfloat16] [--device cpu|cuda]

Loads <case>/transformer as the family's spec loads it (from_pretrained, or through the
spec's reader for a case in another layout), runs it once on <case>/inputs.safetensors
and args.json (fed as the spec's pipeline feeds them), and writes one JSON line per output tensor per module call, in
call order, for every named module but the root:

    {"module": "blocks.0.attn1", "tensor": "out", "step": 0, "abs_mean": ..., "sum": ...}

`tensor` is "out" for a tensor output, "out[<i>]" for item i of a tuple output and
"out.<key>" for a dict item, recursively (None
items are skipped, their index is kept). Stats are computed in float64 over the float32
view of the tensor; `std` has Bessel's correction (torch's default).

Environment (the FASTVIDEO_ names are read when the FASTDIT_ one is unset):
    FASTDIT_TRACE_LAYERS  regex searched in the dotted module name; empty = all
    FASTDIT_TRACE_STATS   comma list of abs_mean,sum,min,max,mean,std,shape,dtype
                          (default abs_mean,sum)
    FASTDIT_TRACE_STEPS   comma list of step indices; this single forward is step 0
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

STATS = {
    "abs_mean": lambda x: float(x.abs().mean()),
    "sum": lambda x: float(x.sum()),
    "min": lambda x: float(x.min()),
    "max": lambda x: float(x.max()),
    "mean": lambda x: float(x.mean()),
    "std": lambda x: float(x.std()),
}
STAT_NAMES = (*STATS, "shape", "dtype")


def env(name, default=""):
    value = os.environ.get("FASTDIT_" + name)
    if value is None:
        value = os.environ.get("FASTVIDEO_" + name)
    return default if value is None else value


def parse_stats(spec):
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in STAT_NAMES]
    if unknown or not names:
        sys.exit(f"error: FASTDIT_TRACE_STATS={spec!r}: unknown {unknown}; allowed {','.join(STAT_NAMES)}")
    return names


def parse_steps(spec):
    try:
        return {int(s) for s in spec.split(",") if s.strip()} or None
    except ValueError:
        sys.exit(f"error: FASTDIT_TRACE_STEPS={spec!r} is not a comma list of integers")


def tensor_items(output, label="out"):
    """Every tensor of a module's output with its label: `out` for a tensor, `out[i]` for
    item i of a tuple or list, `out.key` for a dict item (diffusers' output dataclasses are
    dicts), recursively."""
    import torch

    if isinstance(output, torch.Tensor):
        return [(label, output)]
    if isinstance(output, (tuple, list)):
        return [item for i, t in enumerate(output) for item in tensor_items(t, f"{label}[{i}]")]
    if isinstance(output, dict):
        return [item for key, t in output.items() for item in tensor_items(t, f"{label}.{key}")]
    return []


def record(module_name, label, tensor, step, stats):
    entry = {"module": module_name, "tensor": label, "step": step}
    values = tensor.detach().float().double()
    for name in stats:
        if name == "shape":
            entry[name] = list(tensor.shape)
        elif name == "dtype":
            entry[name] = str(tensor.dtype)
        else:
            entry[name] = STATS[name](values)
    return entry


def trace(model, inputs, layers, stats, step=0):
    records = []
    hooks = []
    for name, module in model.named_modules():
        if not name or not layers.search(name):
            continue

        def hook(_module, _args, output, name=name):
            for label, tensor in tensor_items(output):
                records.append(record(name, label, tensor, step, stats))

        hooks.append(module.register_forward_hook(hook))
    try:
        rc.run_model(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="reference source folder (diffusers' src/ or an official repo)")
    parser.add_argument("--spec", required=True, help="the family's case spec (tools/reference/specs/<family>.py)")
    parser.add_argument("--case", required=True, help="parity case folder")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--dtype", choices=rc.DTYPES, default="float32")
    parser.add_argument("--device", help="cpu or cuda (default: cpu for float32, cuda for bfloat16)")
    args = parser.parse_args()

    stats = parse_stats(env("TRACE_STATS", "abs_mean,sum"))
    steps = parse_steps(env("TRACE_STEPS"))
    layers = re.compile(env("TRACE_LAYERS"))
    import make_cases

    spec = make_cases.load_spec(args.spec)
    make_cases.import_reference(args.ref, spec)
    family = make_cases.Family(spec)
    device = args.device or rc.default_device(args.dtype)
    rc.disable_tf32()

    model = family.loader(family.layout_of(args.case))(args.case, args.dtype, device)
    inputs = family.feed(args.case)(model, rc.load_case_inputs(args.case), args.dtype, device)
    records = trace(model, inputs, layers, stats) if steps is None or 0 in steps else []

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for entry in records:
            f.write(json.dumps(entry) + "\n")
    tmp.replace(out)
    info = rc.reference_info(args.ref)
    print(f"{len(records)} records from {info['repository']}@{info['commit'][:12]} "
          f"({args.dtype} on {device}) -> {out}")


if __name__ == "__main__":
    main()
