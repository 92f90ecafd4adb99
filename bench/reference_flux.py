"""The reference side of `fastdit bench` for Flux.1: diffusers' FluxTransformer2DModel on the
shape of bench/configs/flux1-dev-forward.json (FLUX.1-dev, 1024x1024: 4,096 image + 512 text
tokens, bf16), eager and under torch.compile, and optionally FluxPipeline's 28-step loop.

Runs on the GPU machine's PyTorch with the diffusers source given on the command line
(never installed, never committed):

    python3 bench/reference_flux.py --ref .ref/diffusers/src \
        --config tests/fixtures/flux/keys/FLUX.1-dev.config.json \
        --height 1024 --width 1024 --text-len 512 --iters 20 --compile --pipeline --json ref.json

Random bf16 weights (the numbers do not matter for timing), inputs as FluxPipeline feeds them:
packed latents [1, 4096, 64], T5 embeddings [1, 512, 4096] and CLIP pooled [1, 768] in bf16,
timestep t / 1000 in bf16, guidance 3.5 in float32, txt_ids zeros and img_ids (0, row, col).
Reports the median forward time and the peak memory eager and, with --compile, under
torch.compile (and its compile time); with --pipeline, FluxPipeline.__call__ for 28 steps
(output_type="latent", no text encoders or VAE) on the eager transformer.
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

# FLUX.1-dev's scheduler_config.json.
FLUX_DEV_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                      "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="diffusers src/ folder")
    p.add_argument("--config", required=True, help="transformer config.json")
    p.add_argument("--height", type=int, default=1024, help="image height (pixels)")
    p.add_argument("--width", type=int, default=1024, help="image width (pixels)")
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (reports compile time)")
    p.add_argument("--pipeline", action="store_true", help="also time FluxPipeline for --steps steps")
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--json", help="write the record here")
    return p.parse_args()


def peak_mib():
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def main():
    args = parse_args()
    import_diffusers(args.ref)
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

    config = {k: v for k, v in json.loads(Path(args.config).read_text()).items() if not k.startswith("_")}
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = FluxTransformer2DModel(**config).to(torch.bfloat16).eval()
    for param in model.parameters():
        param.data.uniform_(-0.02, 0.02)

    rows, cols = args.height // 16, args.width // 16
    g = torch.Generator("cuda").manual_seed(1)
    bf16 = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    img_ids = torch.zeros(rows, cols, 3)
    img_ids[..., 1] += torch.arange(rows)[:, None]
    img_ids[..., 2] += torch.arange(cols)[None, :]
    inputs = {
        "hidden_states": torch.randn(1, rows * cols, config["in_channels"], **bf16),
        "encoder_hidden_states": torch.randn(1, args.text_len, config["joint_attention_dim"], **bf16),
        "pooled_projections": torch.randn(1, config["pooled_projection_dim"], **bf16),
        "timestep": torch.tensor([500.0], device="cuda").to(torch.bfloat16) / 1000,
        "img_ids": img_ids.reshape(rows * cols, 3).to("cuda", torch.bfloat16),
        "txt_ids": torch.zeros(args.text_len, 3, device="cuda", dtype=torch.bfloat16),
    }
    if config.get("guidance_embeds", True):
        inputs["guidance"] = torch.full([1], 3.5, device="cuda", dtype=torch.float32)
    record = {"reference": reference_info(args.ref), "model": "FluxTransformer2DModel", "config": args.config,
              "device_name": torch.cuda.get_device_name(), "dtype": "bfloat16",
              "shape": {"height": args.height, "width": args.width, "image_tokens": rows * cols,
                        "text_len": args.text_len},
              "warmup": args.warmup, "iters": args.iters}
    torch.cuda.reset_peak_memory_stats()
    times = timed_forwards(model, inputs, args.warmup, args.iters)
    record["eager_times_ms"] = times
    record["eager_median_ms"] = statistics.median(times)
    record["eager_peak_memory_mib"] = peak_mib()
    print(f"diffusers eager: median {record['eager_median_ms']:.2f} ms, peak {record['eager_peak_memory_mib']:.0f} MiB",
          flush=True)

    if args.pipeline:
        pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER), vae=None,
                            text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                            transformer=model)
        pipe.set_progress_bar_config(disable=True)
        call = {"prompt_embeds": inputs["encoder_hidden_states"], "pooled_prompt_embeds": inputs["pooled_projections"],
                "height": args.height, "width": args.width, "num_inference_steps": args.steps,
                "guidance_scale": 3.5, "output_type": "latent", "return_dict": False}
        with torch.inference_mode():
            pipe(latents=inputs["hidden_states"].clone(), **call)  # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            pipe(latents=inputs["hidden_states"].clone(), **call)
            torch.cuda.synchronize()
        record["pipeline_steps"] = args.steps
        record["pipeline_seconds"] = time.perf_counter() - start
        print(f"diffusers FluxPipeline eager, {args.steps} steps: {record['pipeline_seconds']:.2f} s "
              f"({record['pipeline_seconds'] / args.steps * 1e3:.1f} ms/step)", flush=True)

    if args.compile:
        compiled = torch.compile(model)
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        timed_forwards(compiled, inputs, 1, 0)
        record["compile_seconds"] = time.perf_counter() - start
        times = timed_forwards(compiled, inputs, args.warmup, args.iters)
        record["compiled_times_ms"] = times
        record["compiled_median_ms"] = statistics.median(times)
        record["compiled_peak_memory_mib"] = peak_mib()
        print(f"diffusers torch.compile: median {record['compiled_median_ms']:.2f} ms, peak "
              f"{record['compiled_peak_memory_mib']:.0f} MiB (compile {record['compile_seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
