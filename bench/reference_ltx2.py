"""The reference side of `fastdit bench` for LTX-2: diffusers' LTX2VideoTransformer3DModel on
the shape of bench/configs/ltx2-19b-forward.json.

Runs on the GPU machine's PyTorch with the diffusers source given on the command line
(never installed, never committed):

    python3 bench/reference_ltx2.py --ref .ref/diffusers/src \
        --config tests/fixtures/ltx2/keys/LTX-2.config.json \
        --frames 16 --height 16 --width 24 --audio-frames 126 --text-len 1024 --iters 20 --compile --json ref.json

Random bf16 weights (the numbers do not matter for timing), inputs as LTX2Pipeline feeds them:
packed video latents [1, F·H·W, 128] and audio latents [1, N_a, 128] in bf16, both caption
streams [1, S, 3840] bf16 with an all-ones mask (the connectors' registers replace padding),
timestep [1] float32, the latent grid and fps as keyword arguments (the model builds its RoPE
coordinates). Reports the median forward time and the peak allocated memory eager and, with
--compile, under torch.compile (and its compile time).
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
    p.add_argument("--frames", type=int, default=16, help="latent frames (121 pixel frames)")
    p.add_argument("--height", type=int, default=16, help="latent height (512 pixels)")
    p.add_argument("--width", type=int, default=24, help="latent width (768 pixels)")
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--audio-frames", type=int, default=126, help="audio latent frames (121/24 s at 25 a second)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (reports compile time)")
    p.add_argument("--json", help="write the record here")
    return p.parse_args()


def peak_gib(torch):
    return torch.cuda.max_memory_allocated() / 2**30


def main():
    args = parse_args()
    import_diffusers(args.ref)
    import torch
    from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel

    config = {k: v for k, v in json.loads(Path(args.config).read_text()).items() if not k.startswith("_")}
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LTX2VideoTransformer3DModel(**config).to(torch.bfloat16).eval()
    for param in model.parameters():
        param.data.uniform_(-0.02, 0.02)

    g = torch.Generator("cuda").manual_seed(1)
    bf16 = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    b, n_v = args.batch, args.frames * args.height * args.width
    text_width = config["caption_channels"] if config.get("use_prompt_embeddings", True) else None
    inputs = {
        "hidden_states": torch.randn(b, n_v, config["in_channels"], **bf16),
        "audio_hidden_states": torch.randn(b, args.audio_frames, config["audio_in_channels"], **bf16),
        "encoder_hidden_states": torch.randn(b, args.text_len, text_width or config["cross_attention_dim"], **bf16),
        "audio_encoder_hidden_states": torch.randn(b, args.text_len,
                                                   text_width or config["audio_cross_attention_dim"], **bf16),
        "timestep": torch.full((b,), 500.0, device="cuda"),
        "encoder_attention_mask": torch.ones(b, args.text_len, device="cuda", dtype=torch.int64),
        "audio_encoder_attention_mask": torch.ones(b, args.text_len, device="cuda", dtype=torch.int64),
        "num_frames": args.frames, "height": args.height, "width": args.width, "fps": args.fps,
        "audio_num_frames": args.audio_frames,
    }
    record = {"reference": reference_info(args.ref), "model": "LTX2VideoTransformer3DModel", "config": args.config,
              "device_name": torch.cuda.get_device_name(), "dtype": "bfloat16",
              "shape": {"batch": b, "frames": args.frames, "height": args.height, "width": args.width,
                        "video_tokens": n_v, "audio_tokens": args.audio_frames, "text_len": args.text_len},
              "warmup": args.warmup, "iters": args.iters}
    torch.cuda.reset_peak_memory_stats()
    times = timed_forwards(model, inputs, args.warmup, args.iters)
    record["eager_times_ms"] = times
    record["eager_median_ms"] = statistics.median(times)
    record["eager_peak_gib"] = peak_gib(torch)
    print(f"diffusers eager: median {record['eager_median_ms']:.2f} ms, peak {record['eager_peak_gib']:.2f} GiB",
          flush=True)
    if args.compile:
        compiled = torch.compile(model)
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        timed_forwards(compiled, inputs, 1, 0)
        record["compile_seconds"] = time.perf_counter() - start
        times = timed_forwards(compiled, inputs, args.warmup, args.iters)
        record["compiled_times_ms"] = times
        record["compiled_median_ms"] = statistics.median(times)
        record["compiled_peak_gib"] = peak_gib(torch)
        print(f"diffusers torch.compile: median {record['compiled_median_ms']:.2f} ms, peak "
              f"{record['compiled_peak_gib']:.2f} GiB (compile {record['compile_seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
