"""Wan checkpoint layouts: diffusers (`WanTransformer3DModel`) and original (`WanModel`).

The original Wan repositories ship `config.json` with `_class_name: WanModel` and weights
named after the original module tree (`self_attn.q`, `head.modulation`, ...). diffusers
converts them with the rename table in `scripts/convert_wan_to_diffusers.py` and, for
single-file loads, `loaders/single_file_utils.convert_wan_transformer_to_diffusers`. This
module writes the reverse (diffusers -> original) and checks it against both.
"""

import ast
import json
import re
from pathlib import Path

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
_RULES = [(re.compile(pattern), replacement) for pattern, replacement in DIFFUSERS_TO_ORIGINAL]

ORIGINAL_TEXT_LEN = 512  # T5_CONTEXT_TOKEN_NUMBER in the original model
ORIGINAL_TEXT_DIM = 4096  # WanModel default; the original config never carries it
ORIGINAL_IMAGE_DIM = 1280  # MLPProj(1280, dim) is hard-coded in the original model
ORIGINAL_FLF_POS_LEN = 257 * 2  # FIRST_LAST_FRAME_CONTEXT_TOKEN_NUMBER


def to_original_name(name):
    for pattern, replacement in _RULES:
        if pattern.search(name):
            return pattern.sub(replacement, name, count=1)
    raise KeyError(f"no original Wan name for diffusers parameter '{name}'")


def to_original_state_dict(state_dict):
    renamed = {to_original_name(name): tensor for name, tensor in state_dict.items()}
    if len(renamed) != len(state_dict):
        raise ValueError("two diffusers parameters map onto one original name")
    return renamed


def script_rename_table(script_path):
    """TRANSFORMER_KEYS_RENAME_DICT read (not imported) from convert_wan_to_diffusers.py."""
    tree = ast.parse(Path(script_path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TRANSFORMER_KEYS_RENAME_DICT" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"{script_path} has no TRANSFORMER_KEYS_RENAME_DICT")


def apply_rename_table(name, table):
    """How convert_wan_to_diffusers.py renames: every pair applied in order with str.replace."""
    for old, new in table.items():
        name = name.replace(old, new)
    return name


def reverse_mapping_mismatches(diffusers_names, script_path=None):
    """Runs the original names of `diffusers_names` through diffusers' own converters.

    Returns {converter: [(original name, what it became, expected diffusers name), ...]};
    an empty list means that converter inverts to_original_name exactly on these names.
    """
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    original = {to_original_name(n): n for n in diffusers_names}
    result = {}
    mismatches = []
    for orig, name in original.items():
        got = next(iter(convert_wan_transformer_to_diffusers({orig: 0})))
        if got != name:
            mismatches.append((orig, got, name))
    result["loaders.single_file_utils.convert_wan_transformer_to_diffusers"] = mismatches
    if script_path and Path(script_path).is_file():
        table = script_rename_table(script_path)
        result["scripts/convert_wan_to_diffusers.py"] = [
            (orig, apply_rename_table(orig, table), name)
            for orig, name in original.items()
            if apply_rename_table(orig, table) != name
        ]
    return result


def original_config(diffusers_config, diffusers_version):
    """The config.json an original Wan repository ships for this model.

    WanModel saves only its non-ignored constructor arguments (`ignore_for_config` drops
    patch_size, cross_attn_norm, qk_norm, text_dim, window_size), sorted, as diffusers'
    ConfigMixin writes them. `text_dim` is added only where it differs from the 4096 that
    the original code assumes, since nothing else could say it.
    """
    c = diffusers_config
    if list(c["patch_size"]) != [1, 2, 2] or not c["cross_attn_norm"] or c["qk_norm"] != "rms_norm_across_heads":
        raise ValueError("the original WanModel hard-codes patch (1,2,2), cross_attn_norm and qk RMSNorm")
    if c.get("image_dim") is not None:
        raise ValueError("original-layout configs here are text-to-video only")
    config = {
        "_class_name": "WanModel",
        "_diffusers_version": diffusers_version,
        "dim": c["num_attention_heads"] * c["attention_head_dim"],
        "eps": c["eps"],
        "ffn_dim": c["ffn_dim"],
        "freq_dim": c["freq_dim"],
        "in_dim": c["in_channels"],
        "model_type": "t2v",
        "num_heads": c["num_attention_heads"],
        "num_layers": c["num_layers"],
        "out_dim": c["out_channels"],
        "text_len": ORIGINAL_TEXT_LEN,
    }
    if c["text_dim"] != ORIGINAL_TEXT_DIM:
        config["text_dim"] = c["text_dim"]
    return dict(sorted(config.items()))


def diffusers_config_from_original(config):
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
        "text_dim": config.get("text_dim", ORIGINAL_TEXT_DIM),
        "freq_dim": config["freq_dim"],
        "ffn_dim": config["ffn_dim"],
        "num_layers": config["num_layers"],
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": config["eps"],
        "image_dim": ORIGINAL_IMAGE_DIM if with_image else None,
        "added_kv_proj_dim": dim if with_image else None,
        "pos_embed_seq_len": ORIGINAL_FLF_POS_LEN if model_type == "flf2v" else None,
    }


def write_diffusers_folder_from_original(original_dir, out_dir):
    """Converts an original-layout folder with diffusers' single-file converter and saves it
    as a diffusers folder (config.json + safetensors) that from_pretrained can load."""
    import torch
    from safetensors.torch import load_file

    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    original_dir = Path(original_dir)
    with open(original_dir / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    state_dict = {}
    for path in sorted(original_dir.glob("*.safetensors")):
        state_dict.update(load_file(str(path)))
    converted = convert_wan_transformer_to_diffusers(state_dict)
    model = WanTransformer3DModel(**diffusers_config_from_original(config))
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"original checkpoint does not fit: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        model.save_pretrained(str(out_dir), safe_serialization=True)


def original_model_state_shapes(wan_src, config):
    """Parameter names and shapes of the official WanModel (github Wan-Video/Wan2.1,
    wan/modules/model.py) built from an original config. `wan_src` is the folder that holds
    wan/modules/. Only model.py and attention.py are imported."""
    import importlib
    import sys
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
