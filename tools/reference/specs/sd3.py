"""Parity cases of diffusers' SD3Transformer2DModel (SD3 / SD3.5), for make_cases.py.

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

The pos_embed buffer is persistent, so it is part of the checkpoint; it keeps the 2-D
sin-cos table the class builds (pos_embed_max_size^2 rows), as real checkpoints do. Each
manifest entry says where the case's token grid sits in that table.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_cases import Case  # noqa: E402

CLASS = "diffusers.SD3Transformer2DModel"
HEADS = ("sample",)
PIPELINE_CASTS = ("hidden_states", "encoder_hidden_states", "pooled_projections")

# Two heads of 8 (D 16): the research sheet's tiny sd3_like / sd35_like configs.
CONFIG = {
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

# The repositories' transformer/config.json (port sheet section 3.1):
# stabilityai/stable-diffusion-3-medium-diffusers (its config predates dual_attention_layers
# and qk_norm, so those take the class defaults), stable-diffusion-3.5-medium and
# stable-diffusion-3.5-large (large-turbo has the same transformer config).
_REAL = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "attention_head_dim": 64,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 2048,
}
REAL_CONFIGS = {
    "SD3-medium": {**_REAL, "num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536,
                   "pos_embed_max_size": 192},
    "SD3.5-medium": {**_REAL, "num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536,
                     "pos_embed_max_size": 384, "dual_attention_layers": list(range(13)), "qk_norm": "rms_norm"},
    "SD3.5-large": {**_REAL, "num_layers": 38, "num_attention_heads": 38, "caption_projection_dim": 2432,
                    "pos_embed_max_size": 192, "dual_attention_layers": [], "qk_norm": "rms_norm"},
}
# keys/<variant>.config.json is the repository's file as listed above, not the class's full save.
REAL_CONFIG_FILE = "given"

CASES = [
    Case("sd3", 1, "SD3-medium style: 2 joint blocks (the last context_pre_only), no qk norm; latent 8x12, "
         "a 4x6 token grid cropped from the 16x16 table at row 6, column 5"),
    Case("sd35_medium", 2, "SD3.5-medium style: 3 blocks, dual attention (attn2, SD35AdaLayerNormZeroX) in block 0, "
         "per-head RMSNorm on q/k and added q/k",
         config={"num_layers": 3, "dual_attention_layers": [0], "qk_norm": "rms_norm"},
         inputs={"timestep": [750.0]}, trace=True),
    Case("sd35_odd_size", 3, "odd 5x9 token grid (latent 10x18) cropped at row 5, column 3; dual attention in "
         "blocks 0 and 2, so the context_pre_only block has attn2 too; qk norm",
         config={"num_layers": 3, "dual_attention_layers": [0, 2], "qk_norm": "rms_norm"},
         inputs={"latent_hw": (10, 18), "timestep": [33.0], "clip_tokens": 2, "t5_tokens": 5}),
    Case("sd3_batch2", 4, "batch 2, fractional timesteps, SD3.5-large style (qk norm, no dual attention); 16x3 "
         "grid: the table's full height, crop at row 0, column 6",
         config={"qk_norm": "rms_norm"},
         inputs={"batch": 2, "latent_hw": (32, 6), "timestep": [999.5, 137.25], "clip_tokens": 4, "t5_tokens": 3}),
]


def make_inputs(case, config, rng):
    p = case.inputs
    b, (h, w), joint = p.get("batch", 1), p.get("latent_hw", (8, 12)), config["joint_attention_dim"]
    clip_tokens, t5_tokens = p.get("clip_tokens", 3), p.get("t5_tokens", 3)
    hidden = rng.standard_normal((b, config["in_channels"], h, w), dtype=np.float32)
    clip = np.zeros((b, clip_tokens, joint), dtype=np.float32)
    clip[..., :CLIP_DIM] = rng.standard_normal((b, clip_tokens, CLIP_DIM), dtype=np.float32)
    t5 = rng.standard_normal((b, t5_tokens, joint), dtype=np.float32)
    return {
        "hidden_states": hidden,
        "encoder_hidden_states": np.concatenate([clip, t5], axis=1),
        "pooled_projections": rng.standard_normal((b, config["pooled_projection_dim"]), dtype=np.float32),
        "timestep": np.asarray(p.get("timestep", [500.0]), dtype=np.float32),
    }


def manifest_extras(case, config):
    """Where the token grid sits in the pos_embed table (PatchEmbed.cropped_pos_embed)."""
    size, patch = config["pos_embed_max_size"], config["patch_size"]
    h, w = case.inputs.get("latent_hw", (8, 12))
    return {"pos_embed_crop_origin": [(size - h // patch) // 2, (size - w // patch) // 2]}
