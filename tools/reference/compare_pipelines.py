"""Runs diffusers' official pipelines twice, once with diffusers' transformer and once with
fastdit's drop-in (fastdit.diffusers), on the same random weights, initial latents and
prompt embeddings; compares the final latents (output_type="latent") and prints the time of
every denoising step side by side.

  python tools/reference/compare_pipelines.py --diffusers-src .ref/diffusers/src --work /tmp/pipes \
      [--families wan,sd3] [--fp32-reference sd3] [--steps 10] [--record out.json]

wan: WanPipeline at 480x832x81, a random-weight Wan2.1 T2V 1.3B transformer, UniPC (flow
shift 3), CFG 5. sd3: StableDiffusion3Pipeline at 256x256 on a tiny random SD3 transformer,
flow-match Euler (shift 3), CFG 7. No text encoder or VAE is built: the pipelines take
prompt embeddings and return latents. Weights: diffusers' own initialisation (seeded) in
float32, written with fastdit.save_file and config.json, then loaded by both sides in
bfloat16 (diffusers' from_pretrained keeps its float32 modules in float32, as fastdit does).

The bound is the parity one: max(1.5 x the rel_l2 of diffusers' own bf16 pipeline against
its float32 pipeline, 1e-3), for the families named by --fp32-reference (the float32 run of
Wan at this size costs about two minutes); for the others the rel_l2 is reported, not judged.
Exit status 1 when a judged family fails.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]

TINY_SD3 = {"_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 256,
            "dual_attention_layers": [], "in_channels": 16, "joint_attention_dim": 256, "num_attention_heads": 4,
            "num_layers": 4, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 128,
            "pos_embed_max_size": 96, "qk_norm": None, "sample_size": 32}


def rel_l2(out, ref):
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm())


class StepTimer:
    """callback_on_step_end that records when each step's work has finished on the GPU."""

    def __init__(self):
        torch.cuda.synchronize()
        self.marks = [time.perf_counter()]

    def __call__(self, pipe, step, timestep, tensors):
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())
        return {}

    def step_ms(self):
        return [1000 * (b - a) for a, b in zip(self.marks, self.marks[1:])]


def family_setup(name, diffusers):
    if name == "wan":
        config = json.loads((ROOT / "tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json").read_text())
        scheduler = diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                      num_train_timesteps=1000, flow_shift=3.0)
        g = torch.Generator().manual_seed(1)
        embeds = [torch.randn(1, 512, config["text_dim"], generator=g) for _ in range(2)]
        latents = torch.randn(1, config["in_channels"], 21, 60, 104, generator=g)
        call = dict(height=480, width=832, num_frames=81, guidance_scale=5.0, prompt_embeds=embeds[0],
                    negative_prompt_embeds=embeds[1])
        return config, diffusers.WanTransformer3DModel, scheduler, latents, call, "WanPipeline 480x832x81"
    config = dict(TINY_SD3)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    g = torch.Generator().manual_seed(1)
    embeds = [torch.randn(1, 333, config["joint_attention_dim"], generator=g) for _ in range(2)]
    pooled = [torch.randn(1, config["pooled_projection_dim"], generator=g) for _ in range(2)]
    latents = torch.randn(1, config["in_channels"], 32, 32, generator=g)
    call = dict(height=256, width=256, guidance_scale=7.0, prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1],
                pooled_prompt_embeds=pooled[0], negative_pooled_prompt_embeds=pooled[1])
    return config, diffusers.SD3Transformer2DModel, scheduler, latents, call, "StableDiffusion3Pipeline 256x256 (tiny)"


def write_weights(model_class, config, folder):
    import fastdit
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    fastdit.save_file({k: v.detach().float().cpu() for k, v in model.state_dict().items()},
                      folder / "diffusion_pytorch_model.safetensors")
    del model
    torch.cuda.empty_cache()


def run_pipeline(pipeline_class, transformer, scheduler, latents, call, steps, dtype):
    components = {"transformer": transformer, "scheduler": scheduler}
    pipe = pipeline_class(**{name: components.get(name) for name in pipeline_class._get_signature_keys(pipeline_class)[0]})
    pipe.set_progress_bar_config(disable=True)
    call = {k: v.to("cuda", dtype) if isinstance(v, torch.Tensor) else v for k, v in call.items()}
    timer = StepTimer()
    out = pipe(**call, latents=latents.to("cuda"), num_inference_steps=steps, output_type="latent",
               callback_on_step_end=timer, return_dict=False)[0]
    return out.float().cpu(), timer.step_ms()


def compare(name, args, diffusers):
    import fastdit.diffusers
    config, model_class, scheduler, latents, call, title = family_setup(name, diffusers)
    pipeline_class = diffusers.WanPipeline if name == "wan" else diffusers.StableDiffusion3Pipeline
    folder = pathlib.Path(args.work) / name / "transformer"
    start = time.perf_counter()
    write_weights(model_class, config, folder)
    print(f"== {name}: {title}, {args.steps} steps, CFG; weights written in {time.perf_counter() - start:.1f} s",
          flush=True)

    runs = {}
    variants = [("diffusers", torch.bfloat16), ("fastdit", torch.bfloat16)]
    if name in args.fp32_reference:
        variants.append(("diffusers_fp32", torch.float32))
    for variant, dtype in variants:
        if variant == "fastdit":
            transformer = getattr(fastdit.diffusers, model_class.__name__).from_pretrained(
                folder.parent, torch_dtype=dtype, device="cuda")
        else:
            transformer = model_class.from_pretrained(folder, torch_dtype=dtype).to("cuda")
        runs[variant] = run_pipeline(pipeline_class, transformer, type(scheduler).from_config(scheduler.config),
                                     latents, call, args.steps, dtype)
        del transformer
        torch.cuda.empty_cache()

    ms = {variant: steps for variant, (_, steps) in runs.items()}
    print(f"{'step':>4} {'diffusers ms':>13} {'fastdit ms':>11}")
    for i in range(args.steps):
        print(f"{i:>4} {ms['diffusers'][i]:>13.1f} {ms['fastdit'][i]:>11.1f}")
    steady = {v: statistics.median(s[1:]) for v, s in ms.items()}  # step 0 holds first-call set-up
    speedup = steady["diffusers"] / steady["fastdit"]
    print(f"median step (1-{args.steps - 1}): diffusers {steady['diffusers']:.1f} ms, fastdit "
          f"{steady['fastdit']:.1f} ms: {speedup:.2f}x")

    error = rel_l2(runs["fastdit"][0], runs["diffusers"][0])
    record = {"family": name, "pipeline": title, "steps": args.steps, "step_ms": ms, "median_step_ms": steady,
              "speedup": speedup, "rel_l2_fastdit_vs_diffusers_bf16": error}
    if "diffusers_fp32" in runs:
        reference = runs["diffusers_fp32"][0]
        own = rel_l2(runs["diffusers"][0], reference)
        ours = rel_l2(runs["fastdit"][0], reference)
        bound = max(1.5 * own, 1e-3)
        record |= {"rel_l2_vs_fp32": {"diffusers_bf16": own, "fastdit_bf16": ours}, "bound": bound,
                   "pass": ours <= bound}
        print(f"latents vs diffusers' float32 pipeline: fastdit bf16 rel_l2={ours:.3e}, diffusers bf16 "
              f"rel_l2={own:.3e}, bound {bound:.3e}: {'PASS' if ours <= bound else 'FAIL'}")
    print(f"latents rel_l2 fastdit vs diffusers (both bf16): {error:.3e}"
          + ("" if "diffusers_fp32" in runs else " (not judged: no float32 reference run)"), flush=True)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers-src", required=True, help="diffusers' src/ folder")
    parser.add_argument("--work", required=True, help="scratch folder for the random weights")
    parser.add_argument("--families", default="wan,sd3")
    parser.add_argument("--fp32-reference", default="sd3", help="families whose float32 pipeline gives the bound")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--record", help="JSON file for the results")
    args = parser.parse_args()
    args.fp32_reference = set(filter(None, args.fp32_reference.split(",")))
    sys.path.insert(0, args.diffusers_src)
    import diffusers
    print(f"diffusers {diffusers.__version__} from {diffusers.__file__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}", flush=True)
    records = [compare(name, args, diffusers) for name in args.families.split(",")]
    if args.record:
        pathlib.Path(args.record).write_text(json.dumps(records, indent=1))
    return 1 if any(r.get("pass") is False for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
