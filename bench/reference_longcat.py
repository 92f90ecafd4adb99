"""The reference side of `fastdit bench` for LongCat-Video: the official
LongCatVideoTransformer3DModel forward on the shape of bench/configs/longcat-video-forward.json.

Runs on the GPU machine's PyTorch with the official checkout and the diffusers src/ it imports
given on the command line (never installed, never committed); the attention kernels it needs
(flash-attn) are replaced by PyTorch's SDPA exactly as the parity cases do
(tools/reference/specs/longcat.py, patch_reference):

    python3 bench/reference_longcat.py --ref .ref/LongCat-Video --ref .ref/diffusers/src \
        --config tests/fixtures/longcat/keys/LongCat-Video.config.json \
        --frames 93 --height 480 --width 832 --text-len 512 --iters 5 --json ref.json

Random bf16 weights (the numbers do not matter for timing), inputs as LongCatVideoPipeline
feeds them: latents [1, 16, 24, 60, 104], the timestep [1] and the umT5 states
[1, 1, 512, 4096] in bf16, the tokenizer mask (every token valid). Reports the median forward
time and the peak GPU memory of the forwards.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "reference"))
from reference_common import reference_info  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, action="append",
                   help="the LongCat-Video checkout, then the diffusers src/ (repeat --ref)")
    p.add_argument("--config", required=True, help="the DiT's config.json")
    p.add_argument("--frames", type=int, default=93)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", help="write the record here")
    return p.parse_args()


def load_spec():
    path = ROOT / "tools" / "reference" / "specs" / "longcat.py"
    spec = importlib.util.spec_from_file_location("spec_longcat", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main():
    args = parse_args()
    for ref in reversed(args.ref):
        sys.path.insert(0, str(Path(ref).resolve()))
    import torch

    spec = load_spec()
    from longcat_video.modules.longcat_video_dit import LongCatVideoTransformer3DModel as Model

    spec.patch_reference(Model)
    config = {k: v for k, v in json.loads(Path(args.config).read_text()).items() if not k.startswith("_")}
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Model(**config).eval()
    torch.set_default_dtype(torch.float32)
    for param in model.parameters():
        param.data.uniform_(-0.02, 0.02)

    frames = (args.frames - 1) // 4 + 1
    g = torch.Generator("cuda").manual_seed(1)
    bf16 = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    inputs = {
        "hidden_states": torch.randn(1, config["in_channels"], frames, args.height // 8, args.width // 8, **bf16),
        "timestep": torch.tensor([700.0], device="cuda", dtype=torch.bfloat16),
        "encoder_hidden_states": torch.randn(1, 1, args.text_len, config["caption_channels"], **bf16),
        "encoder_attention_mask": torch.ones(1, args.text_len, device="cuda", dtype=torch.int64),
    }
    record = {"reference": reference_info(args.ref[-1], None, spec.REPOSITORY), "model": "LongCatVideoTransformer3DModel",
              "config": args.config, "device_name": torch.cuda.get_device_name(), "dtype": "bfloat16",
              "shape": {"batch": 1, "frames": args.frames, "height": args.height, "width": args.width,
                        "latent": list(inputs["hidden_states"].shape[2:]), "text_len": args.text_len},
              "warmup": args.warmup, "iters": args.iters}
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(**inputs)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            model(**inputs)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    record["eager_times_ms"] = times
    record["eager_median_ms"] = statistics.median(times)
    record["eager_peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(f"official forward (SDPA): median {record['eager_median_ms']:.1f} ms, "
          f"peak {record['eager_peak_memory_bytes'] / 2**30:.1f} GiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
