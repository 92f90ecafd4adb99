#!/usr/bin/env python3
"""Writes a parity case for a model that is one linear layer, with its reference output.

    make_linear_case.py <case dir> <class name>

The stand-in for a reference run in tests/cli/scaffold.sh: the model `proj_out` maps
hidden_states [1, 5, 4] to sample [1, 5, 3] (y = x W^T + b, computed here in double and
stored float32). encoder_hidden_states and timestep are there because the scaffolded
model declares them. Python stdlib only.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools"))
from make_tiny_example import write_safetensors  # noqa: E402

IN, OUT, TOKENS = 4, 3, 5


def main(case, class_name):
    rng = random.Random(23)
    uniform = lambda n: [rng.uniform(-1, 1) for _ in range(n)]  # noqa: E731
    weight, bias, x = uniform(OUT * IN), uniform(OUT), uniform(TOKENS * IN)
    sample = [bias[o] + sum(x[t * IN + i] * weight[o * IN + i] for i in range(IN))
              for t in range(TOKENS) for o in range(OUT)]
    os.makedirs(os.path.join(case, "transformer"), exist_ok=True)
    config = {"_class_name": class_name, "in_channels": IN, "out_channels": OUT, "num_attention_heads": 1,
              "attention_head_dim": IN, "num_layers": 0}
    with open(os.path.join(case, "transformer", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    meta = {"format": "pt"}
    write_safetensors(os.path.join(case, "transformer", "diffusion_pytorch_model.safetensors"),
                      {"proj_out.weight": ([OUT, IN], weight), "proj_out.bias": ([OUT], bias)}, meta)
    write_safetensors(os.path.join(case, "inputs.safetensors"),
                      {"hidden_states": ([1, TOKENS, IN], x), "encoder_hidden_states": ([1, 2, IN], uniform(2 * IN)),
                       "timestep": ([1], [500.0])}, meta)
    write_safetensors(os.path.join(case, "outputs.safetensors"), {"sample": ([1, TOKENS, OUT], sample)}, meta)


if __name__ == "__main__":
    main(*sys.argv[1:])
