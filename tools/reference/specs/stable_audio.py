"""Parity cases of diffusers' StableAudioDiTModel (Stable Audio Open), for make_cases.py.

Inputs, as StableAudioPipeline hands them to the transformer:
    hidden_states          [B, C, L] latents
    timestep               [1] (the pipeline's t.unsqueeze(0), broadcast over the CFG batch)
                           or [B], float32; values in (0, 1) exact in bfloat16 (the model
                           casts the timestep to its dtype)
    encoder_hidden_states  [B, S, cross_attention_input_dim] text states + 2 duration tokens
    global_hidden_states   [B, 1, global_states_input_dim] the duration embedding
    attention_mask         [B, L] bool (optional; the model prepends a True for the global token)
    encoder_attention_mask [B, S] bool (optional)
The rotary table is not stored: the pipeline builds it from the inputs' lengths alone,
get_1d_rotary_pos_embed(attention_head_dim // 2, L + 1, use_real=True,
repeat_interleave_real=False) on the CPU in float32, and so does forward_extras here.
The bf16 run casts latents and both conditioning states to bfloat16 (prepare_latents makes
the latents in the text embeddings' dtype); the timestep stays float32.

The original layout is stable-audio-tools' checkpoint (what stabilityai/stable-audio-open-1.0
ships as model.safetensors): the DiT under `model.model.`, fused self-attention to_qkv and
cross-attention to_kv, LayerNorm gamma/beta, timestep_features.weight [F, 1], and the
rotary buffer transformer.rotary_pos_emb.inv_freq, which diffusers drops.
"""

import ast
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_cases import Case  # noqa: E402

CLASS = "diffusers.StableAudioDiTModel"
HEADS = ("sample",)
PIPELINE_CASTS = ("hidden_states", "encoder_hidden_states", "global_hidden_states")
TRACE_LAYERS = r"^(time_proj|timestep_proj|global_proj|cross_attention_proj|preprocess_conv|proj_in|transformer_blocks\.\d+(\.(attn1|attn2|ff))?|proj_out|postprocess_conv)$"

# Port sheet section 4.6: D 32 = 4 heads x 8, 2 kv heads (GQA factor 2), cross-attention
# width 12 = 2 x 8 is neither the text width 6 nor D, so the projections' shapes all differ.
CONFIG = {
    "sample_size": 16,
    "in_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 4,
    "num_key_value_attention_heads": 2,
    "out_channels": 4,
    "cross_attention_dim": 16,
    "time_proj_dim": 16,
    "global_states_input_dim": 10,
    "cross_attention_input_dim": 6,
}

# stabilityai/stable-audio-open-1.0 transformer/config.json (port sheet section 4.1).
REAL_CONFIGS = {
    "stable-audio-open-1.0": {
        "sample_size": 1024,
        "in_channels": 64,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 24,
        "num_key_value_attention_heads": 12,
        "out_channels": 64,
        "cross_attention_dim": 768,
        "time_proj_dim": 256,
        "global_states_input_dim": 1536,
        "cross_attention_input_dim": 768,
    },
}

CASES = [
    Case("base", 1, "the pipeline's call: batch 2 (CFG), timestep [1] broadcast, L 16, 5 text tokens; "
         "GQA factor 2, partial RoPE on 4 of 8 head dims", inputs={"batch": 2, "length": 16, "text": 5},
         trace=True),
    Case("timestep_per_item", 2, "timestep [B] = [0.25, 0.890625], odd L 13, 7 text tokens, 3 layers",
         config={"num_layers": 3}, inputs={"batch": 2, "length": 13, "text": 7, "timestep": [0.25, 0.890625]}),
    Case("gqa4_odd", 3, "GQA factor 4 (8 heads x 16, 2 kv heads), batch 1, odd L 21, 3 text tokens",
         config={"attention_head_dim": 16, "num_attention_heads": 8, "num_key_value_attention_heads": 2,
                 "cross_attention_dim": 32, "cross_attention_input_dim": 24, "global_states_input_dim": 20,
                 "time_proj_dim": 32, "in_channels": 6, "out_channels": 6},
         inputs={"batch": 1, "length": 21, "text": 3, "timestep": [0.125]}),
    Case("masks", 4, "bool attention_mask [B, L] and encoder_attention_mask [B, S], each item with some keys "
         "masked out; L 11, 9 text tokens", inputs={"batch": 2, "length": 11, "text": 9, "masks": True,
                                                     "timestep": [0.5]}),
    Case("long", 5, "130 text tokens (the real prompt length), L 133: several key blocks in every kernel; "
         "kv heads = heads (GQA factor 1)", config={"num_key_value_attention_heads": 4, "cross_attention_dim": 32},
         inputs={"batch": 2, "length": 133, "text": 130, "timestep": [0.9375]}),
    Case("base_original_layout", 1, "base's weights and inputs in stable-audio-tools' names (model.safetensors)",
         weights_from="base", layout="original"),
]


def make_inputs(case, config, rng):
    p = case.inputs
    b, length, text = p["batch"], p["length"], p["text"]
    inputs = {
        "hidden_states": rng.standard_normal((b, config["in_channels"], length), dtype=np.float32),
        "timestep": np.asarray(p.get("timestep", [0.703125]), dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((b, text, config["cross_attention_input_dim"]), dtype=np.float32),
        "global_hidden_states": rng.standard_normal((b, 1, config["global_states_input_dim"]), dtype=np.float32),
    }
    if p.get("masks"):
        # Item 0 keeps a prefix (padding at the end), item 1 a scattered set; no row is all False.
        attention = np.ones((b, length), dtype=bool)
        attention[0, length - 4:] = False
        attention[1, 1::3] = False
        text_mask = np.ones((b, text), dtype=bool)
        text_mask[0, text - 3:] = False
        text_mask[1, ::2] = False
        inputs["attention_mask"] = attention
        inputs["encoder_attention_mask"] = text_mask
    return inputs


def forward_extras(inputs, config):
    """The rotary table StableAudioPipeline builds: over the latents plus the global token."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    length = inputs["hidden_states"].shape[2] + inputs["global_hidden_states"].shape[1]
    table = get_1d_rotary_pos_embed(config["attention_head_dim"] // 2, length, use_real=True,
                                    repeat_interleave_real=False)
    return {"rotary_embedding": table}


class OriginalLayout:
    """stable-audio-tools' DiT names, written here and read back through diffusers' own
    converter (scripts/convert_stable_audio.py next to the reference src/)."""

    PREFIX = "model.model."
    INV_FREQ = "transformer.rotary_pos_emb.inv_freq"
    # diffusers name -> original name, applied in order with str.replace on the name's parts
    # (the converter's renames, reversed); fused projections are handled apart.
    RENAMES = [
        ("transformer_blocks.", "transformer.layers."),
        (".attn1.", ".self_attn."),
        (".attn2.", ".cross_attn."),
        (".ff.net.", ".ff.ff."),
        (".norm1.", ".pre_norm."),
        (".norm2.", ".cross_attend_norm."),
        (".norm3.", ".ff_norm."),
        (".to_out.0.", ".to_out."),
    ]
    TOP = {
        "time_proj.weight": "timestep_features.weight",
        "proj_in.weight": "transformer.project_in.weight",
        "proj_out.weight": "transformer.project_out.weight",
    }
    TOP_PREFIXES = {"timestep_proj.": "to_timestep_embed.", "global_proj.": "to_global_embed.",
                    "cross_attention_proj.": "to_cond_embed."}

    @classmethod
    def original_name(cls, name):
        if name in cls.TOP:
            return cls.TOP[name]
        for new, old in cls.TOP_PREFIXES.items():
            if name.startswith(new):
                return old + name[len(new):]
        if not name.startswith("transformer_blocks."):
            return name  # preprocess_conv, postprocess_conv
        for new, old in cls.RENAMES:
            name = name.replace(new, old)
        if name.endswith("norm.weight") or name.endswith("norm.bias"):
            name = name.rsplit(".", 1)[0] + (".gamma" if name.endswith(".weight") else ".beta")
        return name

    @staticmethod
    def inv_freq(config):
        """stable-audio-tools' RotaryEmbedding(max(dim_heads // 2, 32)) buffer."""
        import torch

        dim = max(config["attention_head_dim"] // 2, 32)
        return 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))

    def write(self, state_dict, config, transformer_dir):
        import torch
        from safetensors.torch import save_file

        import diffusers

        out = {}
        for name, tensor in state_dict.items():
            if ".to_k." in name or ".to_v." in name or (".attn2.to_q." not in name and ".to_q." in name):
                continue  # written fused below
            original = self.original_name(name)
            out[self.PREFIX + original] = tensor.unsqueeze(1) if name == "time_proj.weight" else tensor
        for i in range(config["num_layers"]):
            block = f"transformer_blocks.{i}"
            out[f"{self.PREFIX}transformer.layers.{i}.self_attn.to_qkv.weight"] = torch.cat(
                [state_dict[f"{block}.attn1.to_{p}.weight"] for p in "qkv"]).contiguous()
            out[f"{self.PREFIX}transformer.layers.{i}.cross_attn.to_kv.weight"] = torch.cat(
                [state_dict[f"{block}.attn2.to_{p}.weight"] for p in "kv"]).contiguous()
        out[self.PREFIX + self.INV_FREQ] = self.inv_freq(config)
        out = {k: v.contiguous() for k, v in out.items()}
        transformer_dir.mkdir(parents=True)
        saved = {"_class_name": "StableAudioDiTModel", "_diffusers_version": diffusers.__version__,
                 **{k: v for k, v in config.items() if not k.startswith("_")}}
        (transformer_dir / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n",
                                                     encoding="utf-8")
        save_file(out, str(transformer_dir / "model.safetensors"), metadata={"format": "pt"})

    def read(self, transformer_dir):
        """(config, diffusers state dict) through the official converter. It keeps two names
        the diffusers class lacks: timestep_features.weight (squeezed, not renamed to
        time_proj.weight) and rotary_pos_emb.inv_freq (which StableAudioDiTModel has no use for:
        the pipeline passes its own table); both are settled here."""
        import torch
        from safetensors.torch import load_file

        config = {k: v for k, v in json.loads((transformer_dir / "config.json").read_text()).items()
                  if not k.startswith("_")}
        converted, projection, autoencoder = converter()(load_file(str(transformer_dir / "model.safetensors")))
        if projection or autoencoder:
            raise AssertionError("the converter found conditioner or autoencoder tensors in a DiT-only file")
        inv_freq = converted.pop("rotary_pos_emb.inv_freq")
        if not torch.equal(inv_freq, self.inv_freq(config)):
            raise AssertionError("rotary_pos_emb.inv_freq differs from stable-audio-tools' table")
        converted["time_proj.weight"] = converted.pop("timestep_features.weight")
        return config, converted

    def checks(self, state_dict, config, transformer_dir):
        return ["original names turn back into the diffusers names through diffusers' "
                "scripts/convert_stable_audio.py (convert_stable_audio_state_dict_to_diffusers), "
                "which leaves timestep_features.weight unrenamed and keeps rotary_pos_emb.inv_freq"]


def converter():
    """convert_stable_audio_state_dict_to_diffusers, read (not run as a script) from
    <reference>/scripts/convert_stable_audio.py beside the src/ diffusers was imported from."""
    import torch

    import diffusers

    script = Path(diffusers.__file__).resolve().parents[2] / "scripts" / "convert_stable_audio.py"
    if not script.is_file():
        sys.exit(f"error: {script} not found: export diffusers' scripts/convert_stable_audio.py next to src/")
    tree = ast.parse(script.read_text(encoding="utf-8"))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                 and n.name == "convert_stable_audio_state_dict_to_diffusers"]
    if not functions:
        sys.exit(f"error: {script} has no convert_stable_audio_state_dict_to_diffusers")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=functions, type_ignores=[]), str(script), "exec"), namespace)
    return namespace["convert_stable_audio_state_dict_to_diffusers"]


LAYOUTS = {"original": OriginalLayout()}
