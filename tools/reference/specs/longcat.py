"""Parity cases of the official LongCat-Video DiT (LongCatVideoTransformer3DModel), for make_cases.py.

    python3 tools/reference/make_cases.py --ref <LongCat-Video checkout> --ref <diffusers src/> \
        --ref-commit <commit> --spec tools/reference/specs/longcat.py --out tests/fixtures/longcat

The class lives in the official repository (longcat_video/modules/longcat_video_dit.py), a
diffusers ModelMixin: the checkout goes first on the path, the diffusers src/ it imports
after it. Its attention has no SDPA path (flash-attn 3, flash-attn 2, xformers or Triton
block-sparse only); patch_reference stands in PyTorch's SDPA for exactly what those kernels
compute: full attention for the self-attention, and for the packed ("varlen") cross-attention
per sample b its N queries against its own L_b packed text tokens (flash_attn_varlen_func,
non-causal, default scale).

Inputs, as LongCatVideoPipeline hands them to the DiT:
    hidden_states          [B, C, T, H, W] latents (the pipeline: .to(dit dtype))
    timestep               [B] (expanded to [B, T] inside) or per latent frame [B, T]
                           (condition frames 0); the pipeline casts it to the dit dtype and
                           the forward again to the patch weight's, so values are exact in bf16
    encoder_hidden_states  [B, 1, N, C_text] umT5 states
    encoder_attention_mask [B, N] int64 tokenizer mask (optional)
    kv_cache.<i>.k / .v    [1 or B, H, S_cache, Dh]: block i's cached keys / values (after the
                           per-head norm, before RoPE) of the condition frames, from an earlier
                           forward with return_kv; passed to the forward as kv_cache_dict
                           {i: (k, v)} in the dit dtype, as the pipeline keeps them
Non-tensor args (args.json): num_cond_latents, return_kv, skip_crs_attn.
Heads: `sample` [B, C_out, T, H, W] float32, and with return_kv also each block's cache,
`kv_cache.<i>.k` and `kv_cache.<i>.v` (the official [B, H, S, Dh] tensors).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_cases import Case  # noqa: E402

CLASS = "longcat_video.modules.longcat_video_dit:LongCatVideoTransformer3DModel"
REPOSITORY = "meituan-longcat/LongCat-Video"
HEADS = ("sample",)
PIPELINE_CASTS = ("hidden_states", "timestep", "encoder_hidden_states")
TRACE_LAYERS = r"^(x_embedder|t_embedder|y_embedder|blocks\.\d+(\.(attn|cross_attn|ffn))?|final_layer)$"

# Port sheet 6.7: D 32 = 2 heads x 16 (RoPE 8/4/4), time width 16, SwiGLU hidden 256.
CONFIG = {
    "in_channels": 4,
    "out_channels": 4,
    "hidden_size": 32,
    "depth": 2,
    "num_heads": 2,
    "caption_channels": 24,
    "mlp_ratio": 4,
    "adaln_tembed_dim": 16,
    "frequency_embedding_size": 32,
    "patch_size": [1, 2, 2],
    "enable_flashattn3": False,
    "enable_flashattn2": False,
    "enable_xformers": False,
    "enable_bsa": False,
    "bsa_params": None,
    "cp_split_hw": [1, 1],
    "text_tokens_zero_pad": False,
}

# The released LongCat-Video DiT (13.6 B): the class defaults (port sheet 6.1), on one GPU.
REAL_CONFIGS = {
    "LongCat-Video": {
        "in_channels": 16,
        "out_channels": 16,
        "hidden_size": 4096,
        "depth": 48,
        "num_heads": 32,
        "caption_channels": 4096,
        "mlp_ratio": 4,
        "adaln_tembed_dim": 512,
        "frequency_embedding_size": 256,
        "patch_size": [1, 2, 2],
        "enable_flashattn3": False,
        "enable_flashattn2": True,
        "enable_xformers": False,
        "enable_bsa": False,
        "bsa_params": None,
        "cp_split_hw": [1, 1],
        "text_tokens_zero_pad": True,
    },
}

DEPTH = CONFIG["depth"]
CACHE_HEADS = tuple(f"kv_cache.{i}.{kv}" for i in range(DEPTH) for kv in ("k", "v"))
MASK_7 = [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]

CASES = [
    Case("varlen_batch2", 1, "batch 2, 3 latent frames of an 8x12 latent (3x4x6 tokens), t [700, 500] per sample; "
         "text mask [7 | 4 of 7] packed per sample (varlen cross-attention)",
         inputs={"latent": (2, 3, 8, 12), "timestep": [700.0, 500.0], "text": 7, "mask": MASK_7}, trace=True),
    Case("zero_pad", 2, "text_tokens_zero_pad: masked text rows zeroed after y_embedder, then every token attended",
         config={"text_tokens_zero_pad": True},
         inputs={"latent": (2, 3, 8, 12), "timestep": [700.0, 500.0], "text": 7, "mask": MASK_7}),
    Case("cond_latents", 3, "num_cond_latents 1: the first frame's tokens attend only to themselves and get no "
         "cross-attention; per-frame t with the condition frame at 0",
         inputs={"latent": (2, 3, 8, 12), "timestep": [[0.0, 700.0, 700.0], [0.0, 500.0, 500.0]], "text": 7,
                 "mask": MASK_7},
         args={"num_cond_latents": 1}),
    Case("per_frame_timesteps", 4, "per-latent-frame timesteps [B, T] (modulation per frame), no text mask "
         "(every one of the 5 tokens attended), 4 frames of a 6x10 latent (4x3x5 tokens)",
         inputs={"latent": (2, 4, 6, 10), "timestep": [[896.0, 600.0, 300.0, 0.0], [250.0, 500.0, 768.0, 1000.0]],
                 "text": 5}),
    Case("kv_cache", 5, "the pipeline's condition-frame pass: 2 clean frames (t 0), return_kv, skip_crs_attn, null "
         "text; heads sample and every block's K/V (after the per-head norm, before RoPE)",
         inputs={"latent": (1, 2, 8, 12), "timestep": [[0.0, 0.0]], "text": 7, "null_text": True},
         args={"return_kv": True, "skip_crs_attn": True}, heads=("sample",) + CACHE_HEADS),
    Case("kv_cache_continuation", 5, "continuation over the kv_cache case's K/V (batch 1 cache repeated over batch "
         "2): 2 new frames attend to the 2 cached ones and themselves, RoPE over the 4 frames; num_cond_latents 2",
         model_from="kv_cache", chain=("kv_cache", CACHE_HEADS),
         inputs={"latent": (2, 2, 8, 12), "timestep": [700.0, 300.0], "text": 7, "mask": MASK_7},
         args={"num_cond_latents": 2}),
    Case("dit_sharded", 1, "varlen_batch2's weights and inputs saved as LongCat-Video's dit/ folder is: "
         "two safetensors shards and their index, fused attn.qkv and cross_attn.kv_linear",
         weights_from="varlen_batch2", shards=2),
]


def make_inputs(case, config, rng):
    p = case.inputs
    b, t, h, w = p["latent"]
    text = p["text"]
    inputs = {
        "hidden_states": rng.standard_normal((b, config["in_channels"], t, h, w), dtype=np.float32),
        "timestep": np.asarray(p["timestep"], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((b, 1, text, config["caption_channels"]), dtype=np.float32),
    }
    if p.get("null_text"):
        inputs["encoder_hidden_states"] = np.zeros_like(inputs["encoder_hidden_states"])
    if "mask" in p:
        inputs["encoder_attention_mask"] = np.asarray(p["mask"], dtype=np.int64)
    return inputs


def patch_reference(model_class):
    """SDPA for the kernels this machine lacks (port sheet 6.8), the same math."""
    import torch
    import torch.nn.functional as F

    from longcat_video.modules import attention

    def process_attn(self, q, k, v, shape):  # q, k, v [B, H, S, Dh]
        if self.enable_bsa:
            raise RuntimeError("block-sparse attention is not part of the parity cases")
        return F.scaled_dot_product_attention(q, k, v, scale=self.scale)

    def process_cross_attn(self, x, cond, kv_seqlen):
        batch, n, c = x.shape
        q = self.q_linear(x).view(1, -1, self.num_heads, self.head_dim)
        kv = self.kv_linear(cond).view(1, -1, 2, self.num_heads, self.head_dim)
        k, v = kv.unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        out, start = [], 0
        for i, length in enumerate(kv_seqlen):
            qi = q[0, i * n:(i + 1) * n].transpose(0, 1)
            ki = k[0, start:start + length].transpose(0, 1)
            vi = v[0, start:start + length].transpose(0, 1)
            out.append(F.scaled_dot_product_attention(qi, ki, vi).transpose(0, 1))
            start += length
        return self.proj(torch.cat(out).reshape(batch, n, c))

    attention.Attention._process_attn = process_attn
    attention.MultiHeadCrossAttention._process_cross_attn = process_cross_attn


def call(model, kwargs):
    """The forward as the pipeline calls it: cache inputs become kv_cache_dict in the dit dtype;
    with return_kv the outputs are sample, then each block's k and v."""
    kwargs = dict(kwargs)
    dtype = model.x_embedder.proj.weight.dtype
    cache = {}
    for name in [k for k in kwargs if k.startswith("kv_cache.")]:
        _, block, which = name.split(".")
        cache.setdefault(int(block), {})[which] = kwargs.pop(name).to(dtype)
    if cache:
        kwargs["kv_cache_dict"] = {i: (c["k"], c["v"]) for i, c in sorted(cache.items())}
    out = model(**kwargs)
    if not kwargs.get("return_kv"):
        return (out,)
    sample, kv_cache = out
    return (sample, *[t for i in sorted(kv_cache) for t in kv_cache[i]])
