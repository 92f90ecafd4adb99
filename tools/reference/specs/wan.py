"""Parity cases of diffusers' WanTransformer3DModel (Wan2.1 / Wan2.2), for make_cases.py.

Inputs, as WanPipeline and its I2V / FLF2V / TI2V siblings hand them to the transformer:
    hidden_states                [B, C, F, H, W] latents; F, H, W = 3, 6, 10 here: odd and not
                                 square, 3 x 3 x 5 = 45 tokens after the (1, 2, 2) patches
    timestep                     [B] float32, or [B, N] per token (Wan2.2 TI2V)
    encoder_hidden_states        [B, L, text_dim] T5 states, zero-padded past the real rows
                                 as the pipeline pads them (to 512 for I2V, whose
                                 cross-attention splits image / text at L - 512)
    encoder_hidden_states_image  [B or 2B, S, image_dim] CLIP image states (I2V, FLF2V)
The bf16 run casts latents, prompt and image embeddings to bfloat16 (latents.to(
transformer_dtype) and so on); the timestep stays float32. from_pretrained(torch_dtype=
bfloat16) keeps the `_keep_in_fp32_modules` (rope, time_embedder, scale_shift_table, norm1,
norm2, norm3) in float32.

The original layout is what the original Wan repositories ship: config.json with
`_class_name: WanModel` and the original module tree's names (`self_attn.q`,
`head.modulation`, ...). It is written here (diffusers' converters reversed) and read back
through diffusers' own single-file converter (loaders.single_file_utils.
convert_wan_transformer_to_diffusers); the names are also checked to invert exactly through
scripts/convert_wan_to_diffusers.py beside the reference src/ when it is there, and against
the official WanModel (github Wan-Video/Wan2.1, wan/modules/model.py) when
`--extra-ref wan=<checkout>` is given.
"""

import ast
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_common as rc  # noqa: E402
from make_cases import Case, extra_ref  # noqa: E402

CLASS = "diffusers.WanTransformer3DModel"
HEADS = ("sample",)
PIPELINE_CASTS = ("hidden_states", "encoder_hidden_states", "encoder_hidden_states_image")
EXTRA_REFS = {"wan": "official Wan2.1 checkout (the folder holding wan/modules/model.py): the original "
                     "layout's names and shapes are checked against its WanModel"}

CONFIG = {
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
I2V = {"in_channels": 12, "image_dim": 20, "added_kv_proj_dim": 32}

LATENT_FHW = (3, 6, 10)
TOKENS = LATENT_FHW[0] * (LATENT_FHW[1] // 2) * (LATENT_FHW[2] // 2)
TOKENS_PER_FRAME = (LATENT_FHW[1] // 2) * (LATENT_FHW[2] // 2)
TEXT_LEN_PADDED = 512  # the I2V cross-attention splits image/text at context_len - 512

# Config values of diffusers' scripts/convert_wan_to_diffusers.py, the script that made the
# published *-Diffusers repositories; rope_max_seq_len (1024) and pos_embed_seq_len (None)
# are the class defaults the script leaves out.
_REAL = {
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
REAL_CONFIGS = {
    name: {**_REAL, **overrides}
    for name, overrides in {
        "Wan2.1-T2V-1.3B": {"num_attention_heads": 12, "in_channels": 16, "out_channels": 16, "ffn_dim": 8960,
                            "num_layers": 30},
        "Wan2.1-T2V-14B": {"num_attention_heads": 40, "in_channels": 16, "out_channels": 16, "ffn_dim": 13824,
                           "num_layers": 40},
        "Wan2.1-I2V-14B-480P": {"num_attention_heads": 40, "in_channels": 36, "out_channels": 16,
                                "ffn_dim": 13824, "num_layers": 40, "image_dim": 1280, "added_kv_proj_dim": 5120},
        "Wan2.2-TI2V-5B": {"num_attention_heads": 24, "in_channels": 48, "out_channels": 48, "ffn_dim": 14336,
                           "num_layers": 30},
    }.items()
}

CASES = [
    Case("t2v", 1, "text-to-video, batch 1, t=500", trace=True),
    Case("t2v_batch2_sharded", 2, "batch 2, fractional timesteps, 3 layers, weights in 3 shards + index json",
         config={"num_layers": 3}, inputs={"batch": 2, "timestep": [999.5, 137.25]}, shards=3),
    Case("i2v", 3, "Wan2.1 I2V: image embedder + added K/V; text zero-padded to 512 (9 real rows)",
         config=I2V, inputs={"timestep": [700.0], "text_tokens": 9, "text_len": TEXT_LEN_PADDED,
                             "image_shape": (1, 5, 20)}),
    Case("flf2v", 4, "Wan2.1 FLF2V: first+last image stacked on the batch axis [2B,S,C], pos_embed over 2S",
         config={**I2V, "pos_embed_seq_len": 10},
         inputs={"timestep": [300.0], "text_tokens": 9, "text_len": TEXT_LEN_PADDED, "image_shape": (2, 5, 20)}),
    Case("ti2v_per_token", 5,
         "Wan2.2 TI2V: per-token timestep [B, N], 0 on the first latent frame's tokens, 500 elsewhere",
         inputs={"timestep": "per_token"}),
    Case("t2v_original_layout", 1,
         "t2v's weights and inputs, saved with the original Wan names and WanModel config.json",
         weights_from="t2v", layout="original"),
]


def make_inputs(case, config, rng):
    p = case.inputs
    f, h, w = LATENT_FHW
    b, text_tokens, text_len = p.get("batch", 1), p.get("text_tokens", 7), p.get("text_len", 7)
    hidden = rng.standard_normal((b, config["in_channels"], f, h, w), dtype=np.float32)
    text = np.zeros((b, text_len, config["text_dim"]), dtype=np.float32)
    text[:, :text_tokens] = rng.standard_normal((b, text_tokens, config["text_dim"]), dtype=np.float32)
    timestep = p.get("timestep", [500.0])
    if timestep == "per_token":
        timestep = np.full((b, TOKENS), 500.0, dtype=np.float32)
        timestep[:, :TOKENS_PER_FRAME] = 0.0
    inputs = {
        "hidden_states": hidden,
        "timestep": np.asarray(timestep, dtype=np.float32),
        "encoder_hidden_states": text,
    }
    if p.get("image_shape"):
        inputs["encoder_hidden_states_image"] = rng.standard_normal(p["image_shape"], dtype=np.float32)
    return inputs


class OriginalLayout:
    """The original Wan checkpoint: `WanModel` config.json, original module names."""

    # diffusers name -> original name; ordered, first match wins, every name must match one.
    DIFFUSERS_TO_ORIGINAL = [
        (r"^patch_embedding\.(weight|bias)$", r"patch_embedding.\1"),
        (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
        (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
        (r"^condition_embedder\.time_proj\.", "time_projection.1."),
        (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
        (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
        (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
        (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
        (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
        (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
        (r"^condition_embedder\.image_embedder\.pos_embed$", "img_emb.emb_pos"),
        (r"^scale_shift_table$", "head.modulation"),
        (r"^proj_out\.", "head.head."),
        (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
        (r"^(blocks\.\d+)\.attn1\.to_([qkv])\.", r"\1.self_attn.\2."),
        (r"^(blocks\.\d+)\.attn1\.to_out\.0\.", r"\1.self_attn.o."),
        (r"^(blocks\.\d+)\.attn1\.(norm_[qk])\.", r"\1.self_attn.\2."),
        (r"^(blocks\.\d+)\.attn2\.to_([qkv])\.", r"\1.cross_attn.\2."),
        (r"^(blocks\.\d+)\.attn2\.to_out\.0\.", r"\1.cross_attn.o."),
        (r"^(blocks\.\d+)\.attn2\.(norm_[qk])\.", r"\1.cross_attn.\2."),
        (r"^(blocks\.\d+)\.attn2\.add_([kv])_proj\.", r"\1.cross_attn.\2_img."),
        (r"^(blocks\.\d+)\.attn2\.norm_added_k\.", r"\1.cross_attn.norm_k_img."),
        # The original block names its norms norm1, norm3 (affine, before cross-attention),
        # norm2 (before the FFN); diffusers swaps the last two. Only the affine one has weights.
        (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
        (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
        (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
    ]
    RULES = [(re.compile(pattern), replacement) for pattern, replacement in DIFFUSERS_TO_ORIGINAL]
    WEIGHTS = "diffusion_pytorch_model.safetensors"
    TEXT_LEN = 512  # T5_CONTEXT_TOKEN_NUMBER in the original model
    TEXT_DIM = 4096  # WanModel default; the original config never carries it
    IMAGE_DIM = 1280  # MLPProj(1280, dim) is hard-coded in the original model
    FLF_POS_LEN = 257 * 2  # FIRST_LAST_FRAME_CONTEXT_TOKEN_NUMBER

    @classmethod
    def original_name(cls, name):
        for pattern, replacement in cls.RULES:
            if pattern.search(name):
                return pattern.sub(replacement, name, count=1)
        raise KeyError(f"no original Wan name for diffusers parameter '{name}'")

    @classmethod
    def original_config(cls, c):
        """The config.json an original Wan repository ships for this model: WanModel saves only
        its non-ignored constructor arguments (`ignore_for_config` drops patch_size,
        cross_attn_norm, qk_norm, text_dim, window_size), sorted. `text_dim` is added only where
        it differs from the 4096 the original code assumes, since nothing else could say it."""
        import diffusers

        if list(c["patch_size"]) != [1, 2, 2] or not c["cross_attn_norm"] or c["qk_norm"] != "rms_norm_across_heads":
            raise ValueError("the original WanModel hard-codes patch (1,2,2), cross_attn_norm and qk RMSNorm")
        if c.get("image_dim") is not None:
            raise ValueError("original-layout configs here are text-to-video only")
        config = {
            "_class_name": "WanModel",
            "_diffusers_version": diffusers.__version__,
            "dim": c["num_attention_heads"] * c["attention_head_dim"],
            "eps": c["eps"],
            "ffn_dim": c["ffn_dim"],
            "freq_dim": c["freq_dim"],
            "in_dim": c["in_channels"],
            "model_type": "t2v",
            "num_heads": c["num_attention_heads"],
            "num_layers": c["num_layers"],
            "out_dim": c["out_channels"],
            "text_len": cls.TEXT_LEN,
        }
        if c["text_dim"] != cls.TEXT_DIM:
            config["text_dim"] = c["text_dim"]
        return dict(sorted(config.items()))

    @classmethod
    def diffusers_config(cls, config):
        """WanTransformer3DModel constructor arguments for an original WanModel config.json."""
        model_type = config.get("model_type", "t2v")
        with_image = model_type in ("i2v", "flf2v")
        dim, heads = config["dim"], config["num_heads"]
        return {
            "patch_size": [1, 2, 2],
            "num_attention_heads": heads,
            "attention_head_dim": dim // heads,
            "in_channels": config["in_dim"],
            "out_channels": config["out_dim"],
            "text_dim": config.get("text_dim", cls.TEXT_DIM),
            "freq_dim": config["freq_dim"],
            "ffn_dim": config["ffn_dim"],
            "num_layers": config["num_layers"],
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": config["eps"],
            "image_dim": cls.IMAGE_DIM if with_image else None,
            "added_kv_proj_dim": dim if with_image else None,
            "pos_embed_seq_len": cls.FLF_POS_LEN if model_type == "flf2v" else None,
        }

    def write(self, state_dict, config, transformer_dir):
        from safetensors.torch import save_file

        renamed = {self.original_name(name): tensor for name, tensor in state_dict.items()}
        if len(renamed) != len(state_dict):
            raise ValueError("two diffusers parameters map onto one original name")
        transformer_dir.mkdir(parents=True)
        (transformer_dir / "config.json").write_text(json.dumps(self.original_config(config), indent=2,
                                                                sort_keys=True) + "\n", encoding="utf-8")
        save_file(renamed, str(transformer_dir / self.WEIGHTS), metadata={"format": "pt"})

    def read(self, transformer_dir):
        """(diffusers config, diffusers state dict) through diffusers' single-file converter."""
        from safetensors.torch import load_file

        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

        config = json.loads((Path(transformer_dir) / "config.json").read_text(encoding="utf-8"))
        state_dict = {}
        for path in sorted(Path(transformer_dir).glob("*.safetensors")):
            state_dict.update(load_file(str(path)))
        return self.diffusers_config(config), convert_wan_transformer_to_diffusers(state_dict)

    def checks(self, state_dict, config, transformer_dir):
        """The original names must be what diffusers' converters turn back into the diffusers
        names and, with `--extra-ref wan=...`, exactly the official WanModel's state dict."""
        checks = []
        for converter, mismatches in self.reverse_mapping_mismatches(list(state_dict)).items():
            if mismatches:
                raise AssertionError(f"{converter} does not invert the original names: {mismatches}")
            checks.append(f"original names invert exactly through {converter}")
        wan_src = extra_ref("wan")
        if wan_src is None:
            return checks
        official = official_state_shapes(wan_src, rc.read_config(transformer_dir))
        from safetensors import safe_open

        with safe_open(str(transformer_dir / self.WEIGHTS), "pt") as f:
            written = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        if official != written:
            diff = sorted(set(official) ^ set(written)) or [
                (k, official[k], written[k]) for k in official if official[k] != written[k]]
            raise AssertionError(f"official WanModel state dict differs from the written one: {diff}")
        checks.append("names and shapes equal the official WanModel built from this config.json "
                      f"(Wan-Video/Wan2.1@{rc.commit_file_in(wan_src)})")
        return checks

    def reverse_mapping_mismatches(self, names):
        """{converter: [(original name, what it became, expected diffusers name), ...]} for
        diffusers' single-file converter and, when it is beside the reference src/,
        scripts/convert_wan_to_diffusers.py (its rename table applied as the script does: every
        pair in order with str.replace)."""
        import diffusers
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

        original = {self.original_name(n): n for n in names}
        result = {"loaders.single_file_utils.convert_wan_transformer_to_diffusers": [
            (orig, got, name) for orig, name in original.items()
            if (got := next(iter(convert_wan_transformer_to_diffusers({orig: 0})))) != name]}
        script = Path(diffusers.__file__).resolve().parents[2] / "scripts" / "convert_wan_to_diffusers.py"
        if script.is_file():
            table = script_rename_table(script)
            result["scripts/convert_wan_to_diffusers.py"] = [
                (orig, renamed, name) for orig, name in original.items()
                if (renamed := apply_rename_table(orig, table)) != name]
        return result


def script_rename_table(script_path):
    """TRANSFORMER_KEYS_RENAME_DICT read (not imported) from convert_wan_to_diffusers.py."""
    tree = ast.parse(Path(script_path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "TRANSFORMER_KEYS_RENAME_DICT" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{script_path} has no TRANSFORMER_KEYS_RENAME_DICT")


def apply_rename_table(name, table):
    for old, new in table.items():
        name = name.replace(old, new)
    return name


def official_state_shapes(wan_src, config):
    """Parameter names and shapes of the official WanModel (wan/modules/model.py) built from an
    original config; only model.py and attention.py are imported."""
    import importlib
    import types

    import torch

    root = Path(wan_src).resolve()
    for package, path in (("wan", root / "wan"), ("wan.modules", root / "wan" / "modules")):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(path)]
            sys.modules[package] = module
    model_module = importlib.import_module("wan.modules.model")
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("cpu"):
        model = model_module.WanModel(**kwargs)
    return {name: list(t.shape) for name, t in model.state_dict().items()}


LAYOUTS = {"original": OriginalLayout()}
