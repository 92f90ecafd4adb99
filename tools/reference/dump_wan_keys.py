#!/usr/bin/env python3
"""Dumps the exact state-dict surface of real Wan checkpoints from the official class.

    dump_wan_keys.py --ref <diffusers src/> --out tests/fixtures/wan/keys

For each variant, WanTransformer3DModel is built on the `meta` device (no memory, no
weights) from the variant's real diffusers config, and two files are written:
    <variant>.config.json   the config as diffusers' save_config writes it
    <variant>.keys.json     {"num_parameters": N, "parameters": [[name, shape, dtype], ...]}
                            in state-dict order; dtype is what from_pretrained(
                            torch_dtype=bfloat16) gives the parameter: float32 where a dotted
                            component of the name is in _keep_in_fp32_modules, else bfloat16.

Config values are those of diffusers' scripts/convert_wan_to_diffusers.py, the script that
made the published *-Diffusers repositories; rope_max_seq_len (1024) and pos_embed_seq_len
(None) are the class defaults the script leaves out.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

COMMON = {
    "patch_size": [1, 2, 2],
    "attention_head_dim": 128,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
}
VARIANTS = {
    "Wan2.1-T2V-1.3B": {
        "num_attention_heads": 12, "in_channels": 16, "out_channels": 16, "ffn_dim": 8960, "num_layers": 30,
    },
    "Wan2.1-T2V-14B": {
        "num_attention_heads": 40, "in_channels": 16, "out_channels": 16, "ffn_dim": 13824, "num_layers": 40,
    },
    "Wan2.1-I2V-14B-480P": {
        "num_attention_heads": 40, "in_channels": 36, "out_channels": 16, "ffn_dim": 13824, "num_layers": 40,
        "image_dim": 1280, "added_kv_proj_dim": 5120,
    },
    "Wan2.2-TI2V-5B": {
        "num_attention_heads": 24, "in_channels": 48, "out_channels": 48, "ffn_dim": 14336, "num_layers": 30,
    },
}


def dump_variant(name, overrides, out, info):
    import torch

    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel.from_config({**COMMON, **overrides})
    keep = WanTransformer3DModel._keep_in_fp32_modules
    state = model.state_dict()
    rows = [[k, list(t.shape), rc.load_dtype(k, keep, "bfloat16")] for k, t in state.items()]
    count = sum(t.numel() for t in state.values())

    (out / f"{name}.config.json").write_text(model.to_json_string(), encoding="utf-8")
    header = {
        "variant": name,
        "class_name": "WanTransformer3DModel",
        "reference": f"{info['repository']}@{info['commit']}",
        "keep_in_fp32_modules": keep,
        "num_tensors": len(rows),
        "num_parameters": count,
    }
    lines = [json.dumps(header, indent=1)[:-2] + ',\n "parameters": [']
    lines += [" " + json.dumps(row) + ("," if i + 1 < len(rows) else "") for i, row in enumerate(rows)]
    lines += [" ]", "}"]
    (out / f"{name}.keys.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fp32 = sum(t.numel() for k, t in state.items() if rc.kept_in_fp32(k, keep))
    print(f"{name:22s} tensors {len(rows):5d}  params {count:>14,d} ({count / 1e9:.3f} B)  kept fp32 {fp32:,d}")


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
        dump_variant(name, overrides, out, info)


if __name__ == "__main__":
    main()
