#!/usr/bin/env python3
"""Writes examples/tiny_wan/: a tiny Wan2.1-T2V-style transformer in diffusers layout.

transformer/config.json is a WanTransformer3DModel config (2 heads of 16, 2 layers) and
transformer/diffusion_pytorch_model.safetensors holds seeded random float32 weights with
the exact diffusers names and shapes for it. The weights are placeholders: fixtures made by
the official reference replace them. Python stdlib only.

usage: python3 tools/make_tiny_example.py [OUT_DIR]   (default: examples/tiny_wan)
"""
import json
import math
import os
import random
import struct
import sys

CONFIG = {
    "_class_name": "WanTransformer3DModel",
    "_diffusers_version": "0.33.0",
    "added_kv_proj_dim": None,
    "attention_head_dim": 16,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 64,
    "freq_dim": 32,
    "image_dim": None,
    "in_channels": 4,
    "num_attention_heads": 2,
    "num_layers": 2,
    "out_channels": 4,
    "patch_size": [1, 2, 2],
    "pos_embed_seq_len": None,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
    "text_dim": 24,
}


def tensor_shapes(c):
    """name -> shape, as diffusers' WanTransformer3DModel names its parameters."""
    dim = c["num_attention_heads"] * c["attention_head_dim"]
    patch = c["patch_size"]
    shapes = {
        "scale_shift_table": [1, 2, dim],
        "patch_embedding.weight": [dim, c["in_channels"], *patch],
        "patch_embedding.bias": [dim],
        "proj_out.weight": [c["out_channels"] * math.prod(patch), dim],
        "proj_out.bias": [c["out_channels"] * math.prod(patch)],
    }

    def linear(name, n_in, n_out):
        shapes[name + ".weight"] = [n_out, n_in]
        shapes[name + ".bias"] = [n_out]

    linear("condition_embedder.time_embedder.linear_1", c["freq_dim"], dim)
    linear("condition_embedder.time_embedder.linear_2", dim, dim)
    linear("condition_embedder.time_proj", dim, 6 * dim)
    linear("condition_embedder.text_embedder.linear_1", c["text_dim"], dim)
    linear("condition_embedder.text_embedder.linear_2", dim, dim)
    for i in range(c["num_layers"]):
        block = f"blocks.{i}"
        shapes[block + ".scale_shift_table"] = [1, 6, dim]
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                linear(f"{block}.{attn}.{proj}", dim, dim)
            shapes[f"{block}.{attn}.norm_q.weight"] = [dim]
            shapes[f"{block}.{attn}.norm_k.weight"] = [dim]
        shapes[block + ".norm2.weight"] = [dim]  # cross_attn_norm: affine LayerNorm
        shapes[block + ".norm2.bias"] = [dim]
        linear(f"{block}.ffn.net.0.proj", dim, c["ffn_dim"])
        linear(f"{block}.ffn.net.2", c["ffn_dim"], dim)
    return shapes


def random_values(rng, name, shape):
    """Values of the scale the reference initialises with, so activations stay sane."""
    count = math.prod(shape)
    if name.endswith("scale_shift_table"):
        return [rng.gauss(0, 1) / math.sqrt(shape[-1]) for _ in range(count)]
    if ".norm" in name and name.endswith(".weight"):
        return [1 + rng.uniform(-0.1, 0.1) for _ in range(count)]
    fan_in = math.prod(shape[1:]) if name.endswith(".weight") else shape[0]
    bound = 1 / math.sqrt(fan_in)
    return [rng.uniform(-bound, bound) for _ in range(count)]


def write_safetensors(path, tensors, metadata):
    """float32 tensors in name order, header space-padded to 8 bytes, as the reference does."""
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        data = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "examples", "tiny_wan")
    transformer = os.path.join(out, "transformer")
    os.makedirs(transformer, exist_ok=True)
    with open(os.path.join(transformer, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    rng = random.Random(0)
    tensors = {name: (shape, random_values(rng, name, shape))
               for name, shape in sorted(tensor_shapes(CONFIG).items())}
    write_safetensors(os.path.join(transformer, "diffusion_pytorch_model.safetensors"), tensors,
                      {"format": "pt"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
