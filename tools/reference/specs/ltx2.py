"""Parity cases of diffusers' LTX2VideoTransformer3DModel (LTX-2 audio-video), for make_cases.py.

Inputs, as LTX2Pipeline / LTX2ImageToVideoPipeline hand them to the transformer:
    hidden_states                [B, N_v, C] packed video latents (token order f, h, w)
    audio_hidden_states          [B, N_a, C_a] packed audio latents
    encoder_hidden_states        [B, S, caption_channels] (2.0) or [B, S, D] (2.3: the connector
    audio_encoder_hidden_states  projects to the model widths)
    timestep                     [B], or per token [B, N_v] (image-to-video: first frame 0)
    audio_timestep               [B] (optional; defaults to timestep)
    sigma / audio_sigma          [B] (2.3: prompt modulation, cross timesteps)
    encoder_attention_mask /     [B, S] int64 0/1 (optional), turned into −10000 biases
    audio_encoder_attention_mask
    video_coords / audio_coords  [B, 3, N_v, 2] / [B, 1, N_a, 2] [start, end) (optional;
                                 otherwise built from num_frames, height, width, fps,
                                 audio_num_frames, which args.json carries)
    perturbation_mask            [B] 0/1 for STG (optional)
    video_self_attention_mask    [B, N_v, N_v] 0/1 (optional)
Outputs: `sample` (video) and `audio_sample`, both packed. The bf16 run casts latents, text
states and the perturbation mask to bfloat16 (the pipeline's transformer dtype; torch.lerp
needs its weight in the values' dtype); timesteps, sigmas, coordinates and masks stay as
stored (the model casts the masks itself).

The original layout is Lightricks' single file (`model.diffusion_model.` prefix,
patchify_proj, adaln_single, av_ca_*_adaln_single, scale_shift_table_a2v_ca_*, q_norm /
k_norm), written here and read back through diffusers' own
loaders/single_file_utils.convert_ltx2_transformer_to_diffusers.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_cases import Case  # noqa: E402

CLASS = "diffusers.LTX2VideoTransformer3DModel"
HEADS = ("sample", "audio_sample")
PIPELINE_CASTS = ("hidden_states", "audio_hidden_states", "encoder_hidden_states", "audio_encoder_hidden_states",
                  "perturbation_mask")
TRACE_LAYERS = (r"^(proj_in|audio_proj_in|caption_projection|audio_caption_projection|time_embed|audio_time_embed|"
                r"av_cross_attn_\w+|prompt_adaln|audio_prompt_adaln|transformer_blocks\.\d+"
                r"(\.(attn1|audio_attn1|attn2|audio_attn2|audio_to_video_attn|video_to_audio_attn|ff|audio_ff))?|"
                r"proj_out|audio_proj_out)$")

# Port sheet 5.7's ltx20_split: video 2 heads x 8 (D 16), audio 2 x 4 (Da 8), 2 layers. The
# video RoPE has S = 16 // 6 = 2 frequencies per axis, so 2 of its 8 angles are front padding.
CONFIG = {
    "in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 8,
    "cross_attention_dim": 16, "audio_in_channels": 4, "audio_out_channels": 4, "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 4, "audio_cross_attention_dim": 8, "num_layers": 2, "caption_channels": 16,
    "rope_type": "split", "rope_double_precision": True,
}

LTX23 = {"gated_attn": True, "cross_attn_mod": True, "audio_gated_attn": True, "audio_cross_attn_mod": True,
         "perturbed_attn": True, "use_prompt_embeddings": False}

# convert_ltx2_to_diffusers.get_ltx2_transformer_config, versions "2.0" (Lightricks/LTX-2) and "2.3".
LTX20 = {
    "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
    "attention_head_dim": 128, "cross_attention_dim": 4096, "vae_scale_factors": [8, 32, 32],
    "pos_embed_max_pos": 20, "base_height": 2048, "base_width": 2048, "gated_attn": False, "cross_attn_mod": False,
    "audio_in_channels": 128, "audio_out_channels": 128, "audio_patch_size": 1, "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32, "audio_attention_head_dim": 64, "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4, "audio_pos_embed_max_pos": 20, "audio_sampling_rate": 16000, "audio_hop_length": 160,
    "audio_gated_attn": False, "audio_cross_attn_mod": False, "num_layers": 48, "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False, "norm_eps": 1e-6, "caption_channels": 3840,
    "attention_bias": True, "attention_out_bias": True, "rope_theta": 10000.0, "rope_double_precision": True,
    "causal_offset": 1, "timestep_scale_multiplier": 1000, "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split", "use_prompt_embeddings": True, "perturbed_attn": False, "ff_bias": True,
    "audio_ff_bias": True, "use_prompt_adaln_single": True, "use_keyframes_abs_pos_embedding": False,
}
REAL_CONFIGS = {
    "LTX-2": LTX20,
    "LTX-2.3": {**LTX20, "gated_attn": True, "cross_attn_mod": True, "audio_gated_attn": True,
                "audio_cross_attn_mod": True, "use_prompt_embeddings": False, "perturbed_attn": True},
}

GRID = {"num_frames": 2, "height": 3, "width": 4, "fps": 24.0, "audio_num_frames": 5}

CASES = [
    Case("split_batch2_masks", 1, "2.0-like, split RoPE (front padding, a frequency slice per head), batch 2, "
         "text masks on both streams, t [500, 250]", inputs={"batch": 2, "text": 6, "masks": True,
                                                            "timestep": [500.0, 250.0]},
         args=GRID, trace=True),
    Case("interleaved", 2, "interleaved RoPE with float32 angles, batch 1, 3x2x5 grid at 25 fps, 7 audio frames, "
         "5 text tokens", config={"rope_type": "interleaved", "rope_double_precision": False},
         inputs={"batch": 1, "text": 5, "timestep": [750.0]},
         args={"num_frames": 3, "height": 2, "width": 5, "fps": 25.0, "audio_num_frames": 7}),
    Case("per_token_timestep", 3, "image-to-video timesteps: per-token [2, N_v] with the first frame's tokens 0, "
         "a separate audio_timestep [2]", inputs={"batch": 2, "text": 6, "per_token": True,
                                                  "timestep": [500.0, 875.0], "audio_timestep": [500.0, 750.0]},
         args=GRID),
    Case("ltx23_like", 4, "2.3 switches: per-head gates, prompt modulation from sigma / audio_sigma, "
         "use_cross_timestep, text at the model widths, masks", config=LTX23,
         inputs={"batch": 2, "text": 6, "masks": True, "timestep": [500.0, 250.0], "sigma": [0.5, 0.25],
                 "audio_sigma": [0.75, 0.5]},
         args={**GRID, "use_cross_timestep": True}),
    Case("stg_mixed", 5, "STG in block 1 with perturbation_mask [1, 0] (item 1 perturbed: lerp of the values and "
         "the attention), 2.3 config", config=LTX23,
         inputs={"batch": 2, "text": 6, "timestep": [500.0, 500.0], "sigma": [0.5, 0.5],
                 "perturbation_mask": [1.0, 0.0]},
         args={**GRID, "spatio_temporal_guidance_blocks": [1]}),
    Case("stg_all", 6, "STG in block 0 without a perturbation_mask (every item perturbed: the values stand in "
         "for self-attention), 3 layers", config={**LTX23, "num_layers": 3},
         inputs={"batch": 1, "text": 4, "timestep": [625.0], "sigma": [0.625]},
         args={**GRID, "spatio_temporal_guidance_blocks": [0]}),
    Case("isolate_modalities", 7, "isolate_modalities: no A2V / V2A in any block", inputs={"batch": 1, "text": 6,
                                                                                          "timestep": [500.0]},
         args={**GRID, "isolate_modalities": True}),
    Case("coords_given", 8, "video_coords / audio_coords given (item 1 shifted in time), no grid args; "
         "2.5-like: no video FFN bias, static prompt tables (use_prompt_adaln_single false), keyframe embedding "
         "stored, a video self-attention mask",
         config={**LTX23, "ff_bias": False, "use_prompt_adaln_single": False, "use_keyframes_abs_pos_embedding": True},
         inputs={"batch": 2, "text": 5, "coords": True, "self_mask": True, "timestep": [500.0, 375.0]}),
    Case("split_original_layout", 1, "split_batch2_masks's weights and inputs in Lightricks' single-file names",
         weights_from="split_batch2_masks", layout="lightricks", args=GRID),
]


def video_coords(config, batch, frames, height, width, fps, shift):
    """prepare_video_coords ([start, end) per axis, pixel space, time over fps) plus a time shift per item."""
    pt, p = config.get("patch_size_t", 1), config.get("patch_size", 1)
    sf = config.get("vae_scale_factors", [8, 32, 32])
    offset = config.get("causal_offset", 1)
    f, h, w = np.meshgrid(np.arange(0, frames, pt), np.arange(0, height, p), np.arange(0, width, p), indexing="ij")
    grid = np.stack([f, h, w]).reshape(3, -1).astype(np.float32)
    ends = grid + np.array([pt, p, p], dtype=np.float32)[:, None]
    coords = np.stack([grid, ends], axis=-1) * np.array(sf, dtype=np.float32)[:, None, None]
    coords[0] = np.maximum(coords[0] + offset - sf[0], 0) / np.float32(fps)
    out = np.repeat(coords[None], batch, axis=0)
    out[:, 0] += np.asarray(shift, dtype=np.float32)[:, None, None]
    return out.astype(np.float32)


def audio_coords(config, batch, frames, shift):
    s, offset = config.get("audio_scale_factor", 4), config.get("causal_offset", 1)
    hop, rate = config.get("audio_hop_length", 160), config.get("audio_sampling_rate", 16000)
    g = np.arange(frames, dtype=np.float32)
    start = np.maximum(g * s + offset - s, 0) * hop / rate
    end = np.maximum((g + 1) * s + offset - s, 0) * hop / rate
    out = np.repeat(np.stack([start, end], axis=-1)[None, None], batch, axis=0).astype(np.float32)
    out[:, 0] += np.asarray(shift, dtype=np.float32)[:, None, None]
    return out


def make_inputs(case, config, rng):
    p, a = case.inputs, case.args
    b, text = p["batch"], p["text"]
    frames, height, width = (a["num_frames"], a["height"], a["width"]) if a else (2, 3, 4)
    audio_frames = a.get("audio_num_frames", 5) if a else 5
    n_v = frames * height * width
    prompt = config.get("use_prompt_embeddings", True)
    d = config["num_attention_heads"] * config["attention_head_dim"]
    da = config["audio_num_attention_heads"] * config["audio_attention_head_dim"]
    text_width = config["caption_channels"] if prompt else d
    audio_text_width = config["caption_channels"] if prompt else da
    f32 = np.float32
    inputs = {
        "hidden_states": rng.standard_normal((b, n_v, config["in_channels"]), dtype=f32),
        "audio_hidden_states": rng.standard_normal((b, audio_frames, config["audio_in_channels"]), dtype=f32),
        "encoder_hidden_states": rng.standard_normal((b, text, text_width), dtype=f32),
        "audio_encoder_hidden_states": rng.standard_normal((b, text, audio_text_width), dtype=f32),
    }
    t = np.asarray(p["timestep"], dtype=f32)
    if p.get("per_token"):
        t = np.repeat(t[:, None], n_v, axis=1)
        t[:, : height * width] = 0.0  # the conditioning first frame
    inputs["timestep"] = t
    for name in ("audio_timestep", "sigma", "audio_sigma", "perturbation_mask"):
        if name in p:
            inputs[name] = np.asarray(p[name], dtype=f32)
    if p.get("masks"):
        mask = np.ones((b, text), dtype=np.int64)
        mask[-1, text - 2:] = 0
        inputs["encoder_attention_mask"] = mask
        audio_mask = np.ones((b, text), dtype=np.int64)
        audio_mask[0, text - 1:] = 0
        inputs["audio_encoder_attention_mask"] = audio_mask
    if p.get("coords"):
        shift = [0.0, 0.25][:b]
        inputs["video_coords"] = video_coords(config, b, frames, height, width, 24.0, shift)
        inputs["audio_coords"] = audio_coords(config, b, audio_frames, shift)
    if p.get("self_mask"):
        m = np.ones((b, n_v, n_v), dtype=f32)
        m[:, :, n_v - 5:] = 0.0  # the last tokens are hidden from every query
        m[0, 3, :7] = 0.0
        inputs["video_self_attention_mask"] = m
    return inputs


class LightricksLayout:
    """Lightricks' single-file names, the reverse of diffusers' convert_ltx2_transformer_to_diffusers."""

    PREFIX = "model.diffusion_model."
    TOP = [("proj_in.", "patchify_proj."), ("audio_proj_in.", "audio_patchify_proj."),
           ("time_embed.", "adaln_single."), ("audio_time_embed.", "audio_adaln_single."),
           ("av_cross_attn_video_scale_shift.", "av_ca_video_scale_shift_adaln_single."),
           ("av_cross_attn_video_a2v_gate.", "av_ca_a2v_gate_adaln_single."),
           ("av_cross_attn_audio_scale_shift.", "av_ca_audio_scale_shift_adaln_single."),
           ("av_cross_attn_audio_v2a_gate.", "av_ca_v2a_gate_adaln_single.")]
    BLOCK = [("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
             ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
             (".norm_q.", ".q_norm."), (".norm_k.", ".k_norm.")]
    FILE = "ltx-2.safetensors"

    def original_name(self, name):
        for new, old in self.TOP:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        if name.startswith("transformer_blocks."):
            for new, old in self.BLOCK:
                name = name.replace(new, old)
        return self.PREFIX + name

    def write(self, state_dict, config, transformer_dir):
        from safetensors.torch import save_file

        import diffusers

        transformer_dir.mkdir(parents=True)
        saved = {"_class_name": "LTX2VideoTransformer3DModel", "_diffusers_version": diffusers.__version__,
                 **{k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_")}}
        (transformer_dir / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n",
                                                     encoding="utf-8")
        out = {self.original_name(k): v.contiguous() for k, v in state_dict.items()}
        save_file(out, str(transformer_dir / self.FILE), metadata={"format": "pt"})

    def read(self, transformer_dir):
        from safetensors.torch import load_file

        from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers

        config = {k: v for k, v in json.loads((transformer_dir / "config.json").read_text()).items()
                  if not k.startswith("_")}
        original = load_file(str(transformer_dir / self.FILE))
        converted = convert_ltx2_transformer_to_diffusers(original)
        if original:
            raise AssertionError(f"the converter left original tensors unread: {sorted(original)}")
        return config, converted

    def checks(self, state_dict, config):
        return ["original names turn back into the diffusers names through diffusers' "
                "loaders/single_file_utils.convert_ltx2_transformer_to_diffusers"]


LAYOUTS = {"lightricks": LightricksLayout()}
