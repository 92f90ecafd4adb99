#!/usr/bin/env python3
"""Writes the Wan parity cases from the official diffusers implementation.

    make_wan_cases.py --ref <diffusers src/> --out tests/fixtures/wan [--wan-ref <Wan2.1 checkout>]

Each case is a folder (see DESIGN.md, "Parity cases"):
    <case>/transformer/config.json + weights   diffusers layout (or the original Wan layout)
    <case>/inputs.safetensors                  float32, named as the forward's keyword args
    <case>/outputs.safetensors                 sample      = float32 forward on the CPU
                                               sample_bf16 = the same weights loaded with
                                                 from_pretrained(torch_dtype=bfloat16) and run
                                                 on CUDA, stored as float32

Weights are tiny, seeded and non-degenerate: every parameter is overwritten from a numpy
PCG64 generator (weights 0.2*N(0,1), biases 0.1*N(0,1), norm weights 1+0.1*N(0,1)), so
zero- or identity-initialised paths matter too. Inputs come from a second generator.

bf16 run, as WanPipeline does it: the transformer is loaded with
from_pretrained(torch_dtype=torch.bfloat16), which keeps every parameter whose dotted name
has a component in `_keep_in_fp32_modules` (rope, time_embedder, scale_shift_table, norm1,
norm2, norm3) in float32; latents, prompt embeddings and image embeddings are cast to the
transformer dtype (bfloat16); the timestep is passed as float32.
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402
import wan_layout  # noqa: E402

TINY_CONFIG = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 24,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
}
I2V_CONFIG = {"in_channels": 12, "image_dim": 20, "added_kv_proj_dim": 32}

# Latent frames, height, width: odd and not square, 3 x 3 x 5 = 45 tokens after (1,2,2) patches.
LATENT_FHW = (3, 6, 10)
TOKENS = LATENT_FHW[0] * (LATENT_FHW[1] // 2) * (LATENT_FHW[2] // 2)
TOKENS_PER_FRAME = (LATENT_FHW[1] // 2) * (LATENT_FHW[2] // 2)
TEXT_LEN_PADDED = 512  # the I2V cross-attention splits image/text at context_len - 512


@dataclass
class Case:
    name: str
    seed: int
    about: str
    config: dict = field(default_factory=dict)
    batch: int = 1
    timestep: list = field(default_factory=lambda: [500.0])
    text_tokens: int = 7  # rows of real text embedding
    text_len: int = 7  # rows fed (zero-padded past text_tokens, as the pipeline pads)
    image_shape: tuple | None = None
    shards: int = 1
    weights_from: str | None = None  # reuse another case's weights and inputs
    layout: str = "diffusers"


CASES = [
    Case("t2v", 1, "text-to-video, batch 1, t=500"),
    Case(
        "t2v_batch2_sharded",
        2,
        "batch 2, fractional timesteps, 3 layers, weights in 3 shards + index json",
        config={"num_layers": 3},
        batch=2,
        timestep=[999.5, 137.25],
        shards=3,
    ),
    Case(
        "i2v",
        3,
        "Wan2.1 I2V: image embedder + added K/V; text zero-padded to 512 (9 real rows)",
        config=I2V_CONFIG,
        timestep=[700.0],
        text_tokens=9,
        text_len=TEXT_LEN_PADDED,
        image_shape=(1, 5, 20),
    ),
    Case(
        "flf2v",
        4,
        "Wan2.1 FLF2V: first+last image stacked on the batch axis [2B,S,C], pos_embed over 2S",
        config={**I2V_CONFIG, "pos_embed_seq_len": 10},
        timestep=[300.0],
        text_tokens=9,
        text_len=TEXT_LEN_PADDED,
        image_shape=(2, 5, 20),
    ),
    Case(
        "ti2v_per_token",
        5,
        "Wan2.2 TI2V: per-token timestep [B, N], 0 on the first latent frame's tokens, 500 elsewhere",
        timestep="per_token",
    ),
    Case(
        "t2v_original_layout",
        1,
        "t2v's weights and inputs, saved with the original Wan names and WanModel config.json",
        weights_from="t2v",
        layout="original",
    ),
]


def make_inputs(case, config):
    import torch

    rng = np.random.default_rng(1000 + case.seed)
    f, h, w = LATENT_FHW
    b = case.batch
    hidden = rng.standard_normal((b, config["in_channels"], f, h, w), dtype=np.float32)
    text = np.zeros((b, case.text_len, config["text_dim"]), dtype=np.float32)
    text[:, : case.text_tokens] = rng.standard_normal((b, case.text_tokens, config["text_dim"]), dtype=np.float32)
    if case.timestep == "per_token":
        timestep = np.full((b, TOKENS), 500.0, dtype=np.float32)
        timestep[:, :TOKENS_PER_FRAME] = 0.0
    else:
        timestep = np.asarray(case.timestep, dtype=np.float32)
    inputs = {
        "hidden_states": hidden,
        "timestep": timestep,
        "encoder_hidden_states": text,
    }
    if case.image_shape:
        inputs["encoder_hidden_states_image"] = rng.standard_normal(case.image_shape, dtype=np.float32)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def save_transformer(case, model, transformer_dir, info, checks):
    from safetensors.torch import save_file

    state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
    if case.layout == "diffusers":
        max_shard = rc.shard_size_for(state_dict, case.shards) if case.shards > 1 else "10GB"
        model.save_pretrained(str(transformer_dir), safe_serialization=True, max_shard_size=max_shard)
        return
    original = wan_layout.original_config(dict(model.config), info["diffusers_version"])
    transformer_dir.mkdir(parents=True)
    with open(transformer_dir / "config.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(original, indent=2, sort_keys=True) + "\n")
    save_file(
        wan_layout.to_original_state_dict(state_dict),
        str(transformer_dir / "diffusion_pytorch_model.safetensors"),
        metadata={"format": "pt"},
    )
    checks.append("original-layout config.json and weights written")


def check_original_layout(case, model, transformer_dir, args, checks):
    """The original-named weights must be what diffusers' converters turn back into this model,
    and (when the official Wan source is given) exactly the official WanModel's state dict."""
    script = Path(args.ref).resolve().parent / "scripts" / "convert_wan_to_diffusers.py"
    names = list(model.state_dict())
    for converter, mismatches in wan_layout.reverse_mapping_mismatches(names, script).items():
        if mismatches:
            raise AssertionError(f"{converter} does not invert the original names: {mismatches}")
        checks.append(f"original names invert exactly through {converter}")
    if not args.wan_ref:
        return
    config = rc.read_config(transformer_dir)
    try:
        official = wan_layout.original_model_state_shapes(args.wan_ref, config)
    except (ImportError, AttributeError, TypeError) as error:
        checks.append(f"SKIPPED official WanModel comparison: {error!r}")
        return
    from safetensors import safe_open

    with safe_open(str(transformer_dir / "diffusion_pytorch_model.safetensors"), "pt") as f:
        written = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    if official != written:
        diff = sorted(set(official) ^ set(written)) or [
            (k, official[k], written[k]) for k in official if official[k] != written[k]
        ]
        raise AssertionError(f"official WanModel state dict differs from the written one: {diff}")
    checks.append(
        "names and shapes equal the official WanModel built from this config.json "
        f"(Wan-Video/Wan2.1@{rc.commit_file_in(args.wan_ref)})"
    )


def write_case(case, out, args, info, built):
    import torch
    from safetensors.torch import save_file

    from diffusers import WanTransformer3DModel

    keep = WanTransformer3DModel._keep_in_fp32_modules
    case_dir = out / case.name
    transformer_dir = case_dir / "transformer"
    checks = []
    if case.weights_from:
        model, inputs = built[case.weights_from]
    else:
        config = {**TINY_CONFIG, **case.config}
        model = WanTransformer3DModel(**config).eval()
        rc.fill_parameters(model, case.seed)
        inputs = make_inputs(case, config)
        built[case.name] = (model, inputs)
    save_transformer(case, model, transformer_dir, info, checks)
    if case.layout == "original":
        check_original_layout(case, model, transformer_dir, args, checks)
    save_file(inputs, str(case_dir / "inputs.safetensors"), metadata={"format": "pt"})

    outputs, stats = rc.reference_outputs(case_dir, model, inputs, checks, keep)
    if case.weights_from:
        twin = built[case.weights_from + ":sample"]
        stats["sample_vs_" + case.weights_from + "_rel_l2"] = rc.rel_l2(outputs["sample"], twin)
        if not torch.equal(outputs["sample"], twin):
            raise AssertionError(f"{case.name} and {case.weights_from} should give the same float32 sample")
        checks.append(f"float32 sample bit-identical to {case.weights_from}'s")
    built[case.name + ":sample"] = outputs["sample"]
    save_file(outputs, str(case_dir / "outputs.safetensors"), metadata=rc.outputs_metadata(info, stats))
    return rc.case_entry(case.about, case_dir, model, inputs, outputs, stats, checks, layout=case.layout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="diffusers src/ folder")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--wan-ref", help="official Wan2.1 checkout (folder holding wan/modules/model.py)")
    parser.add_argument("--out", required=True, help="fixture folder to (re)write")
    parser.add_argument("--cases", help="comma list of case names (default: all)")
    args = parser.parse_args()

    rc.import_diffusers(args.ref)
    import torch

    torch.manual_seed(0)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']}, "
          f"torch {info['torch_version']}, cuda {torch.cuda.is_available()})", flush=True)

    wanted = set(args.cases.split(",")) if args.cases else None
    cases = [c for c in CASES if wanted is None or c.name in wanted or any(
        d.weights_from == c.name and d.name in wanted for d in CASES)]
    by_name = {c.name: c for c in cases}
    built = {}
    rc.write_case_set(
        args.out,
        [c.name for c in cases],
        lambda name, folder: write_case(by_name[name], folder, args, info, built),
        info,
        "tools/reference/make_wan_cases.py",
    )


if __name__ == "__main__":
    main()
