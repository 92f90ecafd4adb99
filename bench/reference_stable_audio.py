"""The reference side of `fastdit bench` for Stable Audio: diffusers' StableAudioDiTModel on
the shape of bench/configs/stable-audio-open-1.0-forward.json.

Runs on the GPU machine's PyTorch with the diffusers source given on the command line
(never installed, never committed):

    python3 bench/reference_stable_audio.py --ref .ref/diffusers/src \
        --config tests/fixtures/stable_audio/keys/stable-audio-open-1.0.config.json \
        --length 1024 --batch 2 --text-len 130 --iters 50 --compile --json ref.json

Random bf16 weights (the numbers do not matter for timing), inputs as StableAudioPipeline
feeds them at guidance > 1: latents, text and global embeddings bf16 of batch 2, the
timestep [1], the rotary table built the pipeline's way. Reports the median forward time
eager and, with --compile, under torch.compile (and its compile time).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "reference"))
from reference_common import import_diffusers, reference_info  # noqa: E402
from reference_wan import timed_forwards  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="diffusers src/ folder")
    p.add_argument("--config", required=True, help="transformer config.json")
    p.add_argument("--length", type=int, default=1024, help="latent length")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--text-len", type=int, default=130)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (reports compile time)")
    p.add_argument("--json", help="write the record here")
    return p.parse_args()


def main():
    args = parse_args()
    import_diffusers(args.ref)
    import torch
    from diffusers.models.embeddings import get_1d_rotary_pos_embed
    from diffusers.models.transformers.stable_audio_transformer import StableAudioDiTModel

    config = {k: v for k, v in json.loads(Path(args.config).read_text()).items() if not k.startswith("_")}
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = StableAudioDiTModel(**config).to(torch.bfloat16).eval()
    for param in model.parameters():
        param.data.uniform_(-0.05, 0.05)

    g = torch.Generator("cuda").manual_seed(1)
    bf16 = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    rotary = get_1d_rotary_pos_embed(config["attention_head_dim"] // 2, args.length + 1, use_real=True,
                                     repeat_interleave_real=False)
    inputs = {
        "hidden_states": torch.randn(args.batch, config["in_channels"], args.length, **bf16),
        "timestep": torch.tensor([0.5], device="cuda"),
        "encoder_hidden_states": torch.randn(args.batch, args.text_len, config["cross_attention_input_dim"], **bf16),
        "global_hidden_states": torch.randn(args.batch, 1, config["global_states_input_dim"], **bf16),
        "rotary_embedding": tuple(t.to("cuda") for t in rotary),
    }
    record = {"reference": reference_info(args.ref), "model": "StableAudioDiTModel", "config": args.config,
              "device_name": torch.cuda.get_device_name(), "dtype": "bfloat16",
              "shape": {"batch": args.batch, "length": args.length, "text_len": args.text_len},
              "warmup": args.warmup, "iters": args.iters}
    times = timed_forwards(model, inputs, args.warmup, args.iters)
    record["eager_times_ms"] = times
    record["eager_median_ms"] = statistics.median(times)
    print(f"diffusers eager: median {record['eager_median_ms']:.2f} ms", flush=True)
    if args.compile:
        compiled = torch.compile(model)
        start = time.perf_counter()
        timed_forwards(compiled, inputs, 1, 0)
        record["compile_seconds"] = time.perf_counter() - start
        times = timed_forwards(compiled, inputs, args.warmup, args.iters)
        record["compiled_times_ms"] = times
        record["compiled_median_ms"] = statistics.median(times)
        print(f"diffusers torch.compile: median {record['compiled_median_ms']:.2f} ms "
              f"(compile {record['compile_seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
