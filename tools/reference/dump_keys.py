#!/usr/bin/env python3
"""Dumps the state-dict surface of a family's released configs from its official class.

    dump_keys.py --ref <reference src/> --spec tools/reference/specs/<family>.py
                 --out tests/fixtures/<family>/keys

For each variant of the spec's REAL_CONFIGS the class (the spec's CLASS) is built on the
`meta` device (no memory, no weights) and two files are written:
    <variant>.config.json   the config as diffusers' save_config writes it, or (the spec's
                            REAL_CONFIG_FILE = "given") as REAL_CONFIGS lists it
    <variant>.keys.json     {"num_parameters": N, "parameters": [[name, shape, dtype], ...]}
                            in state-dict order; dtype is what from_pretrained(
                            torch_dtype=bfloat16) gives the tensor: float32 where a dotted
                            component of the name is in _keep_in_fp32_modules, else bfloat16.
                            num_parameters counts the whole state dict; where it holds
                            persistent buffers too, num_trainable_parameters counts the
                            parameters alone.
Every value of the variant's config (but the `_` keys) is checked to be the one the class
was built with.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_cases  # noqa: E402
import reference_common as rc  # noqa: E402


def dump_variant(model_class, name, config, out, info, config_file="saved"):
    import torch

    with torch.device("meta"):
        model = model_class.from_config(config)
    for key, value in config.items():
        if key.startswith("_"):
            continue
        built = model.config[key]
        if (list(built) if isinstance(built, (list, tuple)) else built) != value:
            raise AssertionError(f"{name}: config {key} = {value!r} built as {built!r}")
    keep = getattr(model_class, "_keep_in_fp32_modules", None)
    state = model.state_dict()
    rows = [[k, list(t.shape), rc.load_dtype(k, keep, "bfloat16")] for k, t in state.items()]
    count = sum(t.numel() for t in state.values())
    trainable = sum(p.numel() for p in model.parameters())

    if config_file == "given":
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    else:
        text = model.to_json_string()
    (out / f"{name}.config.json").write_text(text, encoding="utf-8")
    header = {
        "variant": name,
        "class_name": model_class.__name__,
        "reference": f"{info['repository']}@{info['commit']}",
        "keep_in_fp32_modules": keep,
        "num_tensors": len(rows),
        "num_parameters": count,
    }
    if trainable != count:
        header["num_trainable_parameters"] = trainable
    lines = [json.dumps(header, indent=1)[:-2] + ',\n "parameters": [']
    lines += [" " + json.dumps(row) + ("," if i + 1 < len(rows) else "") for i, row in enumerate(rows)]
    lines += [" ]", "}"]
    (out / f"{name}.keys.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fp32 = sum(t.numel() for k, t in state.items() if rc.kept_in_fp32(k, keep))
    print(f"{name:22s} tensors {len(rows):5d}  params {count:>14,d} ({count / 1e9:.3f} B)  kept fp32 {fp32:,d}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="reference source folder (diffusers' src/ or an official repo)")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--spec", required=True, help="the family's case spec (tools/reference/specs/<family>.py)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    spec = make_cases.load_spec(args.spec)
    if not getattr(spec, "REAL_CONFIGS", None):
        sys.exit(f"error: spec {args.spec} defines no REAL_CONFIGS")
    make_cases.import_reference(args.ref, spec)
    model_class = make_cases.resolve_class(spec.CLASS)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']}); {spec.CLASS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = getattr(spec, "REAL_CONFIG_FILE", "saved")
    if config_file not in ("saved", "given"):
        sys.exit(f"error: spec {args.spec}: REAL_CONFIG_FILE is {config_file!r}, not 'saved' or 'given'")
    for name, config in spec.REAL_CONFIGS.items():
        dump_variant(model_class, name, config, out, info, config_file)


if __name__ == "__main__":
    main()
