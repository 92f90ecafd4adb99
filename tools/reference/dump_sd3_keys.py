#!/usr/bin/env python3
"""Dumps the state-dict keys, shapes and bf16 load dtypes of the real SD3 / SD3.5 configs.

    dump_sd3_keys.py --ref <diffusers src/> --out tests/fixtures/sd3/keys

For each variant it writes
    <variant>.config.json  the model keys of the repository's transformer/config.json, with
                           _class_name (keys the file leaves out take the class defaults)
    <variant>.keys.json    [name, shape, dtype] in state-dict order, dtype as a
                           from_pretrained(torch_dtype=bfloat16) load gives it
The model is built from that config on the meta device, so nothing is allocated. The state
dict holds the persistent pos_embed buffer [1, pos_embed_max_size^2, D] besides the
parameters; num_parameters counts it, num_trainable_parameters does not.

Values (research sheet, port_sheets.md section 3.1): stabilityai/stable-diffusion-3-medium-diffusers
(SD3-medium; its config predates dual_attention_layers and qk_norm), stable-diffusion-3.5-medium
and stable-diffusion-3.5-large (large-turbo has the same transformer config).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

COMMON = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "attention_head_dim": 64,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 2048,
}
VARIANTS = {
    "SD3-medium": {
        "num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536, "pos_embed_max_size": 192,
    },
    "SD3.5-medium": {
        "num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536, "pos_embed_max_size": 384,
        "dual_attention_layers": list(range(13)), "qk_norm": "rms_norm",
    },
    "SD3.5-large": {
        "num_layers": 38, "num_attention_heads": 38, "caption_projection_dim": 2432, "pos_embed_max_size": 192,
        "dual_attention_layers": [], "qk_norm": "rms_norm",
    },
}


def dump_variant(name, config, out, info):
    import torch

    from diffusers import SD3Transformer2DModel

    with torch.device("meta"):
        model = SD3Transformer2DModel.from_config(config)
    for key, value in config.items():
        built = model.config[key] if not key.startswith("_") else value
        if (list(built) if isinstance(built, (list, tuple)) else built) != value:
            raise AssertionError(f"{name}: config {key} = {value!r} built as {built!r}")
    keep = SD3Transformer2DModel._keep_in_fp32_modules
    state = model.state_dict()
    rows = [[k, list(t.shape), rc.load_dtype(k, keep, "bfloat16")] for k, t in state.items()]
    count = sum(t.numel() for t in state.values())
    trainable = sum(p.numel() for p in model.parameters())

    (out / f"{name}.config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    header = {
        "variant": name,
        "class_name": "SD3Transformer2DModel",
        "reference": f"{info['repository']}@{info['commit']}",
        "keep_in_fp32_modules": keep,
        "num_tensors": len(rows),
        "num_parameters": count,
        "num_trainable_parameters": trainable,
    }
    lines = [json.dumps(header, indent=1)[:-2] + ',\n "parameters": [']
    lines += [" " + json.dumps(row) + ("," if i + 1 < len(rows) else "") for i, row in enumerate(rows)]
    lines += [" ]", "}"]
    (out / f"{name}.keys.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{name:14s} tensors {len(rows):5d}  state {count:>14,d}  trainable {trainable:>14,d} "
          f"({trainable / 1e9:.3f} B)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="diffusers src/ folder")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rc.import_diffusers(args.ref)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, overrides in VARIANTS.items():
        dump_variant(name, {**COMMON, **overrides}, out, info)


if __name__ == "__main__":
    main()
