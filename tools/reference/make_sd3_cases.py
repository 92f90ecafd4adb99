#!/usr/bin/env python3
"""Writes the SD3 / SD3.5 parity cases from the official diffusers implementation.

    make_sd3_cases.py --ref <diffusers src/> --out tests/fixtures/sd3 [--cases a,b]

Each case is a folder (see DESIGN.md, "Parity cases") holding a tiny
SD3Transformer2DModel saved with save_pretrained, its inputs and the reference outputs:
    sample      = float32 forward on the CPU
    sample_bf16 = from_pretrained(torch_dtype=bfloat16) run on CUDA, stored as float32

Weights: every parameter is drawn by reference_common.fill_parameters (seeded PCG64). The
pos_embed buffer is persistent, so it is part of the checkpoint; it keeps the 2-D sin-cos
table the class builds (pos_embed_max_size^2 rows), as real checkpoints do.

Inputs, as StableDiffusion3Pipeline hands them to the transformer:
    hidden_states          [B, C, H, W] latents
    encoder_hidden_states  [B, clip + t5 tokens, joint_attention_dim]: CLIP states zero-padded
                           on the feature axis from CLIP_DIM to joint_attention_dim (the
                           pipeline pads 768 + 1280 to 4096), then T5 states, on the token axis
    pooled_projections     [B, pooled_projection_dim]
    timestep               [B] float32, sigma * 1000 as FlowMatchEulerDiscreteScheduler makes it
All are stored float32 (a float32 pipeline's dtypes). The bf16 run feeds them as a bf16
pipeline does: latents (made in prompt_embeds.dtype), prompt and pooled embeddings (the
text encoders' dtype) in bfloat16, the timestep float32. SD3 keeps no module in float32
(_keep_in_fp32_modules is None), so every state-dict tensor, pos_embed too, loads as bf16.
"""

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

# Two heads of 8 (D 16): the research sheet's tiny sd3_like / sd35_like configs.
TINY_CONFIG = {
    "sample_size": 32,
    "patch_size": 2,
    "in_channels": 4,
    "out_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": 12,
    "caption_projection_dim": 16,
    "pooled_projection_dim": 10,
    "pos_embed_max_size": 16,
    "dual_attention_layers": [],
    "qk_norm": None,
}
CLIP_DIM = 8  # stands for CLIP-L + CLIP-G (2048), zero-padded to joint_attention_dim (4096)


@dataclass
class Case:
    name: str
    seed: int
    about: str
    config: dict = field(default_factory=dict)
    batch: int = 1
    latent_hw: tuple = (8, 12)
    timestep: list = field(default_factory=lambda: [500.0])
    clip_tokens: int = 3
    t5_tokens: int = 3


CASES = [
    Case(
        "sd3",
        1,
        "SD3-medium style: 2 joint blocks (the last context_pre_only), no qk norm; latent 8x12, "
        "a 4x6 token grid cropped from the 16x16 table at row 6, column 5",
    ),
    Case(
        "sd35_medium",
        2,
        "SD3.5-medium style: 3 blocks, dual attention (attn2, SD35AdaLayerNormZeroX) in block 0, "
        "per-head RMSNorm on q/k and added q/k",
        config={"num_layers": 3, "dual_attention_layers": [0], "qk_norm": "rms_norm"},
        timestep=[750.0],
    ),
    Case(
        "sd35_odd_size",
        3,
        "odd 5x9 token grid (latent 10x18) cropped at row 5, column 3; dual attention in blocks 0 "
        "and 2, so the context_pre_only block has attn2 too; qk norm",
        config={"num_layers": 3, "dual_attention_layers": [0, 2], "qk_norm": "rms_norm"},
        latent_hw=(10, 18),
        timestep=[33.0],
        clip_tokens=2,
        t5_tokens=5,
    ),
    Case(
        "sd3_batch2",
        4,
        "batch 2, fractional timesteps, SD3.5-large style (qk norm, no dual attention); 16x3 grid: "
        "the table's full height, crop at row 0, column 6",
        config={"qk_norm": "rms_norm"},
        batch=2,
        latent_hw=(32, 6),
        timestep=[999.5, 137.25],
        clip_tokens=4,
        t5_tokens=3,
    ),
]


def make_inputs(case, config):
    import torch

    rng = np.random.default_rng(1000 + case.seed)
    b, (h, w), joint = case.batch, case.latent_hw, config["joint_attention_dim"]
    hidden = rng.standard_normal((b, config["in_channels"], h, w), dtype=np.float32)
    clip = np.zeros((b, case.clip_tokens, joint), dtype=np.float32)
    clip[..., :CLIP_DIM] = rng.standard_normal((b, case.clip_tokens, CLIP_DIM), dtype=np.float32)
    t5 = rng.standard_normal((b, case.t5_tokens, joint), dtype=np.float32)
    inputs = {
        "hidden_states": hidden,
        "encoder_hidden_states": np.concatenate([clip, t5], axis=1),
        "pooled_projections": rng.standard_normal((b, config["pooled_projection_dim"]), dtype=np.float32),
        "timestep": np.asarray(case.timestep, dtype=np.float32),
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def crop_origin(case, config):
    """Where the token grid sits in the pos_embed table (PatchEmbed.cropped_pos_embed)."""
    size, patch = config["pos_embed_max_size"], config["patch_size"]
    return [(size - case.latent_hw[0] // patch) // 2, (size - case.latent_hw[1] // patch) // 2]


def write_case(case, out, info):
    from safetensors.torch import save_file

    from diffusers import SD3Transformer2DModel

    case_dir = out / case.name
    checks = []
    config = {**TINY_CONFIG, **case.config}
    model = SD3Transformer2DModel(**config).eval()
    rc.fill_parameters(model, case.seed)
    inputs = make_inputs(case, config)
    model.save_pretrained(str(case_dir / "transformer"), safe_serialization=True)
    save_file(inputs, str(case_dir / "inputs.safetensors"), metadata={"format": "pt"})

    keep = SD3Transformer2DModel._keep_in_fp32_modules
    outputs, stats = rc.reference_outputs(case_dir, model, inputs, checks, keep)
    save_file(outputs, str(case_dir / "outputs.safetensors"), metadata=rc.outputs_metadata(info, stats))
    return rc.case_entry(case.about, case_dir, model, inputs, outputs, stats, checks,
                         pos_embed_crop_origin=crop_origin(case, config))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="diffusers src/ folder")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
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
    by_name = {c.name: c for c in CASES if wanted is None or c.name in wanted}
    rc.write_case_set(args.out, list(by_name), lambda name, folder: write_case(by_name[name], folder, info),
                      info, "tools/reference/make_sd3_cases.py")


if __name__ == "__main__":
    main()
