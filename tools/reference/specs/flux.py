"""Parity cases of diffusers' FluxTransformer2DModel (FLUX.1 dev and schnell), for make_cases.py.

Inputs, as FluxPipeline hands them to the transformer:
    hidden_states          [B, N, C·4] the packed latents: 2x2 patches, features (c, py, px)
    encoder_hidden_states  [B, L, joint_attention_dim] T5 states
    pooled_projections     [B, pooled_projection_dim] CLIP pooled vector
    timestep               [B] sigma in [0, 1] (the pipeline divides by 1000; the model casts
                           it to its dtype and multiplies by 1000 again)
    guidance               [B] the guidance scale, float32 (guidance_embeds configs only;
                           the model casts it and multiplies by 1000 too)
    img_ids                [N, 3] (0, row, col) on the packed grid
    txt_ids                [L, 3] zeros in the pipeline
Both ids may come as the deprecated [B, S, 3], of which the model reads item 0 alone.
Timesteps and guidance are picked so that value and value x 1000 are exact in bfloat16
(0.5 -> 500, 4.0 -> 4000), else the reference's own bf16 run rounds them differently.
The bf16 run casts what the pipeline makes in the text encoders' (= the model's) dtype:
latents, both text embeddings, the timestep (`t.expand(B).to(latents.dtype)`) and the ids;
guidance stays float32 (`torch.full([1], guidance_scale, dtype=torch.float32)`).

The original layout is Black Forest Labs' single file (flux1-dev.safetensors): img_in,
txt_in, time_in / guidance_in / vector_in, double_blocks.N with fused img_attn.qkv and
txt_attn.qkv, single_blocks.N.linear1 = q|k|v|mlp_in, final_layer.adaLN_modulation.1 in
(shift, scale) order. It is read back through diffusers' own converter,
scripts/convert_flux_to_diffusers.py beside the reference src/ (its function, not the script).
"""

import ast
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_cases import Case  # noqa: E402

CLASS = "diffusers.FluxTransformer2DModel"
HEADS = ("sample",)
PIPELINE_CASTS = ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids")
TRACE_LAYERS = (r"^(x_embedder|time_text_embed|context_embedder|pos_embed|"
                r"transformer_blocks\.\d+(\.(norm1|norm1_context|attn|ff|ff_context))?|"
                r"single_transformer_blocks\.\d+(\.(norm|attn|proj_mlp|proj_out))?|norm_out|proj_out)$")

# Port sheet section 7.5: D 32 = 2 heads x 16, axes 4 + 6 + 6 = 16, 1 double + 2 single blocks.
CONFIG = {
    "patch_size": 1,
    "in_channels": 16,
    "out_channels": None,
    "num_layers": 1,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 12,
    "pooled_projection_dim": 8,
    "guidance_embeds": True,
    "axes_dims_rope": [4, 6, 6],
}

# black-forest-labs/FLUX.1-dev and FLUX.1-schnell transformer/config.json (port sheet 7.1).
REAL_CONFIGS = {
    variant: {
        "patch_size": 1,
        "in_channels": 64,
        "out_channels": None,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": guidance,
        "axes_dims_rope": [16, 56, 56],
    }
    for variant, guidance in (("FLUX.1-dev", True), ("FLUX.1-schnell", False))
}

SCHNELL = {"guidance_embeds": False}
DEEP = {"num_layers": 2, "num_single_layers": 3, "attention_head_dim": 24, "num_attention_heads": 3,
        "axes_dims_rope": [4, 10, 10], "in_channels": 12, "out_channels": 8, "joint_attention_dim": 20,
        "pooled_projection_dim": 10}

CASES = [
    Case("dev", 1, "dev-like (guidance embedding), batch 1, 4x4 packed grid, 5 text tokens, t 0.5, "
         "guidance 4.0; pipeline ids", inputs={"batch": 1, "grid": (4, 4), "text": 5, "timestep": [0.5],
                                                "guidance": [4.0]}, trace=True),
    Case("schnell_batch2", 2, "schnell-like (no guidance embedding), batch 2, odd 3x5 grid, 7 text tokens, "
         "t per item [0.25, 1.0]", config=SCHNELL,
         inputs={"batch": 2, "grid": (3, 5), "text": 7, "timestep": [0.25, 1.0]}),
    Case("dev_deep_odd", 3, "2 double + 3 single blocks, 3 heads x 24 (axes 4/10/10), in 12 / out 8, "
         "batch 2, 5x7 grid, 11 text tokens; ids not the pipeline's: text ids count up, image ids "
         "fractional and offset, so every row of the joint RoPE table matters",
         config=DEEP, inputs={"batch": 2, "grid": (5, 7), "text": 11, "timestep": [0.125, 0.0625],
                              "guidance": [2.0, 8.0], "free_ids": True}),
    Case("ids_3d", 4, "the deprecated 3-D ids [B, S, 3]: the model reads item 0 (item 1's ids differ), "
         "batch 2, 2x6 grid, 4 text tokens", inputs={"batch": 2, "grid": (2, 6), "text": 4,
                                                       "timestep": [1.0, 0.5], "guidance": [4.0, 2.0],
                                                       "ids_3d": True}),
    Case("dev_original_layout", 1, "dev's weights and inputs in Black Forest Labs' single-file names",
         weights_from="dev", layout="bfl"),
    Case("schnell_original_layout", 2, "schnell_batch2's weights and inputs in Black Forest Labs' names "
         "(no guidance_in)", weights_from="schnell_batch2", layout="bfl"),
]


def image_ids(grid):
    """FluxPipeline._prepare_latent_image_ids: (0, row, col) row-major over the packed grid."""
    h, w = grid
    ids = np.zeros((h, w, 3), dtype=np.float32)
    ids[..., 1] = np.arange(h)[:, None]
    ids[..., 2] = np.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def make_inputs(case, config, rng):
    p = case.inputs
    b, (h, w), text = p["batch"], p["grid"], p["text"]
    n = h * w
    inputs = {
        "hidden_states": rng.standard_normal((b, n, config["in_channels"]), dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((b, text, config["joint_attention_dim"]), dtype=np.float32),
        "pooled_projections": rng.standard_normal((b, config["pooled_projection_dim"]), dtype=np.float32),
        "timestep": np.asarray(p["timestep"], dtype=np.float32),
    }
    if config["guidance_embeds"]:
        inputs["guidance"] = np.asarray(p["guidance"], dtype=np.float32)
    img = image_ids((h, w))
    txt = np.zeros((text, 3), dtype=np.float32)
    if p.get("free_ids"):
        # Exact in bfloat16: halves and small integers.
        img = img * 0.5 + np.asarray([1.0, 0.5, 2.0], dtype=np.float32)
        txt[:, 0] = np.arange(text)
        txt[:, 2] = np.arange(text)[::-1] * 0.5
    if p.get("ids_3d"):
        img = np.stack([img, img[::-1] + 3.0])
        txt = np.stack([txt, txt + 1.0])
    inputs["img_ids"] = np.ascontiguousarray(img)
    inputs["txt_ids"] = np.ascontiguousarray(txt)
    return inputs


class BflLayout:
    """Black Forest Labs' names, written here (the converter's renames, reversed) and read back
    through diffusers' convert_flux_transformer_checkpoint_to_diffusers."""

    TOP = {
        "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
        "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
        "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
        "context_embedder": "txt_in",
        "x_embedder": "img_in",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    }
    DOUBLE = {
        "norm1.linear": "img_mod.lin",
        "norm1_context.linear": "txt_mod.lin",
        "attn.to_out.0": "img_attn.proj",
        "attn.to_add_out": "txt_attn.proj",
        "ff.net.0.proj": "img_mlp.0",
        "ff.net.2": "img_mlp.2",
        "ff_context.net.0.proj": "txt_mlp.0",
        "ff_context.net.2": "txt_mlp.2",
    }
    DOUBLE_NORMS = {
        "attn.norm_q": "img_attn.norm.query_norm",
        "attn.norm_k": "img_attn.norm.key_norm",
        "attn.norm_added_q": "txt_attn.norm.query_norm",
        "attn.norm_added_k": "txt_attn.norm.key_norm",
    }
    SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
    SINGLE_NORMS = {"attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}

    @staticmethod
    def shift_scale(tensor):
        """diffusers' (scale, shift) rows back to the original (shift, scale)."""
        import torch

        scale, shift = tensor.chunk(2, dim=0)
        return torch.cat([shift, scale], dim=0)

    def original(self, sd, config):
        import torch

        out = {}
        for new, old in self.TOP.items():
            for wb in ("weight", "bias"):
                if f"{new}.{wb}" in sd:
                    t = sd[f"{new}.{wb}"]
                    out[f"{old}.{wb}"] = self.shift_scale(t) if new == "norm_out.linear" else t
        for i in range(config["num_layers"]):
            new, old = f"transformer_blocks.{i}.", f"double_blocks.{i}."
            for wb in ("weight", "bias"):
                for a, b in self.DOUBLE.items():
                    out[f"{old}{b}.{wb}"] = sd[f"{new}{a}.{wb}"]
                out[f"{old}img_attn.qkv.{wb}"] = torch.cat([sd[f"{new}attn.to_{p}.{wb}"] for p in "qkv"])
                out[f"{old}txt_attn.qkv.{wb}"] = torch.cat([sd[f"{new}attn.add_{p}_proj.{wb}"] for p in "qkv"])
            for a, b in self.DOUBLE_NORMS.items():
                out[f"{old}{b}.scale"] = sd[f"{new}{a}.weight"]
        for i in range(config["num_single_layers"]):
            new, old = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
            for wb in ("weight", "bias"):
                for a, b in self.SINGLE.items():
                    out[f"{old}{b}.{wb}"] = sd[f"{new}{a}.{wb}"]
                out[f"{old}linear1.{wb}"] = torch.cat(
                    [sd[f"{new}attn.to_{p}.{wb}"] for p in "qkv"] + [sd[f"{new}proj_mlp.{wb}"]])
            for a, b in self.SINGLE_NORMS.items():
                out[f"{old}{b}.scale"] = sd[f"{new}{a}.weight"]
        return {k: v.contiguous() for k, v in out.items()}

    def write(self, state_dict, config, transformer_dir):
        from safetensors.torch import save_file

        import diffusers

        out = self.original(state_dict, config)
        transformer_dir.mkdir(parents=True)
        saved = {"_class_name": "FluxTransformer2DModel", "_diffusers_version": diffusers.__version__,
                 **{k: v for k, v in config.items() if not k.startswith("_")}}
        (transformer_dir / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n",
                                                     encoding="utf-8")
        save_file(out, str(transformer_dir / "flux1.safetensors"), metadata={"format": "pt"})

    def read(self, transformer_dir):
        from safetensors.torch import load_file

        config = {k: v for k, v in json.loads((transformer_dir / "config.json").read_text()).items()
                  if not k.startswith("_")}
        inner = config["num_attention_heads"] * config["attention_head_dim"]
        original = load_file(str(transformer_dir / "flux1.safetensors"))
        converted = converter()(original, config["num_layers"], config["num_single_layers"], inner)
        if original:
            raise AssertionError(f"the converter left original tensors unread: {sorted(original)}")
        return config, converted

    def checks(self, state_dict, config, transformer_dir):
        return ["original names turn back into the diffusers names through diffusers' "
                "scripts/convert_flux_to_diffusers.py (convert_flux_transformer_checkpoint_to_diffusers, "
                "which also swaps final_layer.adaLN_modulation.1 back to (scale, shift))"]


def converter():
    """convert_flux_transformer_checkpoint_to_diffusers (and the swap_scale_shift it calls), read
    (not run as a script: it imports accelerate and the hub) from
    <reference>/scripts/convert_flux_to_diffusers.py beside the src/ diffusers was imported from."""
    import torch

    import diffusers

    script = Path(diffusers.__file__).resolve().parents[2] / "scripts" / "convert_flux_to_diffusers.py"
    if not script.is_file():
        sys.exit(f"error: {script} not found: export diffusers' scripts/convert_flux_to_diffusers.py next to src/")
    tree = ast.parse(script.read_text(encoding="utf-8"))
    wanted = {"swap_scale_shift", "convert_flux_transformer_checkpoint_to_diffusers"}
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    if {f.name for f in functions} != wanted:
        sys.exit(f"error: {script} lacks one of {sorted(wanted)}")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=functions, type_ignores=[]), str(script), "exec"), namespace)
    return namespace["convert_flux_transformer_checkpoint_to_diffusers"]


LAYOUTS = {"bfl": BflLayout()}
