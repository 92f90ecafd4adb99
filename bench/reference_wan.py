"""The reference side of `fastdit bench`: diffusers' WanTransformer3DModel on the same shapes.

Runs on the GPU machine's PyTorch with the diffusers source given on the command line
(never installed, never committed):

    python3 bench/reference_wan.py --ref .ref/diffusers/src \
        --config tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json \
        --frames 81 --height 480 --width 832 --text-len 512 --iters 5 --json ref.json

Random bf16 weights (the numbers do not matter for timing), inputs as WanPipeline feeds
them (latents, prompt embeddings bf16; timestep float32). Reports the median forward time,
peak GPU memory, and optionally torch.compile's time and a checkpoint load time.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "reference"))
from reference_common import import_diffusers, reference_info  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="diffusers src/ folder")
    p.add_argument("--config", required=True, help="transformer config.json")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (reports compile time)")
    p.add_argument("--attention", default="default", choices=["default", "flash", "cudnn", "efficient"],
                   help="pin PyTorch's SDPA backend (default: PyTorch's own choice)")
    p.add_argument("--save-checkpoint", help="also save the random model here (diffusers layout, bf16)")
    p.add_argument("--load-checkpoint", help="time from_pretrained(bf16) + .to('cuda') of this folder")
    p.add_argument("--json", help="write the record here")
    return p.parse_args()


def timed_forwards(model, inputs, warmup, iters):
    import torch

    with torch.inference_mode():
        for _ in range(warmup):
            model(**inputs, return_dict=False)
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            model(**inputs, return_dict=False)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return times


def sdpa_context(choice):
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    return contextlib.nullcontext() if choice == "default" else sdpa_kernel([backends[choice]])


def main():
    args = parse_args()
    import_diffusers(args.ref)
    import torch
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

    config = json.loads(Path(args.config).read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = WanTransformer3DModel(**config).to(torch.bfloat16).eval()
    # Keep what diffusers keeps in float32 at a bf16 load.
    keep = WanTransformer3DModel._keep_in_fp32_modules or []
    for name, param in model.named_parameters():
        if any(part in keep for part in name.split(".")):
            param.data = param.data.float()
    for param in model.parameters():
        param.data.uniform_(-0.05, 0.05)

    latent = ((args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    g = torch.Generator("cuda").manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(1, config["in_channels"], *latent, generator=g, device="cuda", dtype=torch.bfloat16),
        "timestep": torch.tensor([500.0], device="cuda"),
        "encoder_hidden_states": torch.randn(1, args.text_len, config["text_dim"], generator=g, device="cuda",
                                             dtype=torch.bfloat16),
    }
    tokens = latent[0] * (latent[1] // 2) * (latent[2] // 2)
    record = {"reference": reference_info(args.ref), "model": "WanTransformer3DModel", "config": args.config,
              "device_name": torch.cuda.get_device_name(), "dtype": "bfloat16",
              "shape": {"frames": args.frames, "height": args.height, "width": args.width,
                        "latent": list(latent), "tokens": tokens, "text_len": args.text_len},
              "attention": args.attention, "warmup": args.warmup, "iters": args.iters}

    with sdpa_context(args.attention):
        torch.cuda.reset_peak_memory_stats()
        times = timed_forwards(model, inputs, args.warmup, args.iters)
        record["eager_times_ms"] = times
        record["eager_median_ms"] = statistics.median(times)
        record["eager_peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        print(f"diffusers eager: median {record['eager_median_ms']:.1f} ms, "
              f"peak {record['eager_peak_memory_bytes'] / 2**20:.0f} MiB", flush=True)
        if args.compile:
            compiled = torch.compile(model)
            start = time.perf_counter()
            timed_forwards(compiled, inputs, 1, 0)
            record["compile_seconds"] = time.perf_counter() - start
            times = timed_forwards(compiled, inputs, args.warmup, args.iters)
            record["compiled_times_ms"] = times
            record["compiled_median_ms"] = statistics.median(times)
            print(f"diffusers torch.compile: median {record['compiled_median_ms']:.1f} ms "
                  f"(compile {record['compile_seconds']:.0f} s)", flush=True)

    if args.save_checkpoint:
        model.save_pretrained(args.save_checkpoint, safe_serialization=True, max_shard_size="20GB")
        print(f"saved checkpoint to {args.save_checkpoint}", flush=True)
    del model
    torch.cuda.empty_cache()
    if args.load_checkpoint:
        torch.cuda.synchronize()
        start = time.perf_counter()
        loaded = WanTransformer3DModel.from_pretrained(args.load_checkpoint, torch_dtype=torch.bfloat16).to("cuda")
        torch.cuda.synchronize()
        record["load_seconds"] = time.perf_counter() - start
        print(f"diffusers from_pretrained + to(cuda): {record['load_seconds']:.2f} s", flush=True)
        del loaded
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
