#!/usr/bin/env python3
"""Writes denoising-loop parity cases from the official diffusers WanPipeline and FluxPipeline.

    make_pipeline_cases.py --ref <diffusers src/> --wan-cases tests/fixtures/wan --flux-cases tests/fixtures/flux \
        --out tests/fixtures/pipeline [--cases flux_dev_tiny flux_schnell_tiny]

Each case is a diffusers pipeline folder plus the run's inputs and result:
    <case>/model_index.json                 WanPipeline's config as save_config writes it
    <case>/scheduler/scheduler_config.json
    <case>/transformer/                     the tiny random-weight DiT of tests/fixtures/wan/t2v
    <case>/transformer_2/                   (A14B case) the same DiT, weights + 0.1*N(0,1) each
    <case>/prompt_embeds.safetensors        'prompt_embeds'          [1, 7, 24]
    <case>/negative_prompt_embeds.safetensors 'negative_prompt_embeds' [1, 7, 24] (rows 3.. zero)
    <case>/noise.safetensors                'latents' [1, 4, 3, 6, 10]: the initial latents
    <case>/outputs.safetensors              'latents' = the final latents, 'latents.<i>' after step i
    <case>/sampling.json                    steps, guidance scales, sizes, timesteps, expert per step

The loop is the official one: WanPipeline(tokenizer=None, text_encoder=None, vae=None, ...) called
with prompt_embeds, negative_prompt_embeds and latents given and output_type="latent", so no text
encoder or VAE weights are needed; a callback records the latents after every step. A replica of
its loop (set_timesteps, set_begin_index(0), expert choice t >= boundary_ratio * 1000, two
forwards, uncond + scale * (cond - uncond), scheduler.step) runs too and must agree bit for bit.
Everything runs in float32 on the CPU.

Flux cases (`flux_*`): FluxPipeline(scheduler=..., transformer=..., vae/text encoders/tokenizers
None) called with prompt_embeds, pooled_prompt_embeds and packed latents given, height and width
(which fix the img_ids and mu = calculate_shift(image_seq_len) from the scheduler config), guidance
embedded for a guidance-distilled transformer, output_type="latent". The transformer is the tiny
one of tests/fixtures/flux/<case>. A replica loop (sigmas = linspace(1, 1/steps, steps), the
same mu, timestep t / 1000, scheduler.step) must agree bit for bit. Files as for Wan, plus
pooled_prompt_embeds.safetensors ('pooled_prompt_embeds') and no negative prompt; noise.safetensors
holds the packed latents [B, N, C] FluxPipeline takes as `latents`.

--cases rewrites only the named cases and keeps the other entries of the existing manifest.
"""

import argparse
import json
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

WAN_UNIPC = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}
LATENT_SHAPE = (1, 4, 3, 6, 10)
# The pixel sizes those latents stand for with Wan's VAE (4x temporal, 8x spatial).
FRAMES, HEIGHT, WIDTH = 9, 48, 80
TEXT_TOKENS, NEGATIVE_TOKENS, TEXT_DIM = 7, 3, 24  # the t2v transformer's text_dim


@dataclass
class PipelineCase:
    name: str
    about: str
    scheduler: str
    scheduler_config: dict
    steps: int
    guidance_scale: float
    guidance_scale_2: float | None = None
    boundary_ratio: float | None = None
    second_expert_seed: int | None = None
    family: str = "wan"
    # Flux: the tests/fixtures/flux case whose transformer runs, image size, batch, text tokens.
    flux_case: str | None = None
    height: int = HEIGHT
    width: int = WIDTH
    batch: int = 1
    text_tokens: int = TEXT_TOKENS


# FLUX.1-dev's and FLUX.1-schnell's scheduler_config.json.
FLUX_ANCHORS = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                "num_train_timesteps": 1000}
FLUX_DEV_SCHEDULER = {**FLUX_ANCHORS, "shift": 3.0, "use_dynamic_shifting": True}
FLUX_SCHNELL_SCHEDULER = {**FLUX_ANCHORS, "shift": 1.0, "use_dynamic_shifting": False}

CASES = [
    PipelineCase("wan_t2v_tiny", "Wan2.1 T2V loop: UniPC flow_shift 3, 4 steps, CFG 5",
                 "UniPCMultistepScheduler", {**WAN_UNIPC, "flow_shift": 3.0}, 4, 5.0),
    PipelineCase("wan22_a14b_tiny",
                 "Wan2.2 T2V A14B loop: transformer while t >= 875, then transformer_2; guidance 4 / 3; "
                 "UniPC flow_shift 12, 6 steps",
                 "UniPCMultistepScheduler", {**WAN_UNIPC, "flow_shift": 12.0}, 6, 4.0, 3.0, 0.875, 11),
    PipelineCase("wan_t2v_tiny_euler", "Wan T2V loop with FlowMatchEulerDiscreteScheduler shift 5, 5 steps, CFG 6",
                 "FlowMatchEulerDiscreteScheduler", {"shift": 5.0}, 5, 6.0),
    PipelineCase("flux_dev_tiny",
                 "FLUX.1-dev loop: guidance embedding 3.5 (no CFG), dynamic shift mu from 24 image tokens (64x96 "
                 "pixels), 6 steps",
                 "FlowMatchEulerDiscreteScheduler", FLUX_DEV_SCHEDULER, 6, 3.5, family="flux", flux_case="dev",
                 height=64, width=96, batch=1, text_tokens=5),
    PipelineCase("flux_schnell_tiny",
                 "FLUX.1-schnell loop: no guidance embedding, static shift 1, 4 steps, batch 2, 15 image tokens "
                 "(80x48 pixels)",
                 "FlowMatchEulerDiscreteScheduler", FLUX_SCHNELL_SCHEDULER, 4, 0.0, family="flux",
                 flux_case="schnell_batch2", height=80, width=48, batch=2, text_tokens=7),
]


def perturb_parameters(model, seed):
    """A second expert: the first one's weights plus 0.1*N(0,1) each (the A14B experts share an
    architecture and a training lineage; what matters here is that they give other outputs)."""
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            param.add_(torch.from_numpy(0.1 * rng.standard_normal(tuple(param.shape), dtype=np.float32)))


def make_inputs(seed):
    import torch

    rng = np.random.default_rng(seed)
    latents = rng.standard_normal(LATENT_SHAPE, dtype=np.float32)
    prompt = rng.standard_normal((1, TEXT_TOKENS, TEXT_DIM), dtype=np.float32)
    negative = np.zeros_like(prompt)
    negative[:, :NEGATIVE_TOKENS] = rng.standard_normal((1, NEGATIVE_TOKENS, prompt.shape[2]), dtype=np.float32)
    return {k: torch.from_numpy(v) for k, v in
            {"latents": latents, "prompt_embeds": prompt, "negative_prompt_embeds": negative}.items()}


def official_loop(case, models, scheduler, inputs):
    from diffusers import WanPipeline

    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=scheduler, transformer=models[0],
                       transformer_2=models[1], boundary_ratio=case.boundary_ratio)
    pipe.set_progress_bar_config(disable=True)
    steps = []

    def record(_pipe, _i, _t, kwargs):
        steps.append(kwargs["latents"].clone())
        return {}

    final = pipe(prompt_embeds=inputs["prompt_embeds"], negative_prompt_embeds=inputs["negative_prompt_embeds"],
                 latents=inputs["latents"].clone(), height=HEIGHT, width=WIDTH, num_frames=FRAMES,
                 num_inference_steps=case.steps, guidance_scale=case.guidance_scale,
                 guidance_scale_2=case.guidance_scale_2, output_type="latent", return_dict=False,
                 callback_on_step_end=record)[0]
    return pipe, final, steps


def replica_loop(case, models, scheduler, inputs):
    import torch

    scheduler.set_timesteps(case.steps, device="cpu")
    scheduler.set_begin_index(0)
    boundary = None if case.boundary_ratio is None else case.boundary_ratio * scheduler.config.num_train_timesteps
    latents = inputs["latents"].clone()
    steps, experts = [], []
    with torch.no_grad():
        for t in scheduler.timesteps:
            high_noise = boundary is None or t >= boundary
            model = models[0] if high_noise else models[1]
            scale = case.guidance_scale if high_noise or case.guidance_scale_2 is None else case.guidance_scale_2
            timestep = t.expand(latents.shape[0])
            cond = model(hidden_states=latents, timestep=timestep, encoder_hidden_states=inputs["prompt_embeds"],
                         return_dict=False)[0]
            uncond = model(hidden_states=latents, timestep=timestep,
                           encoder_hidden_states=inputs["negative_prompt_embeds"], return_dict=False)[0]
            prediction = uncond + scale * (cond - uncond)
            latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
            steps.append(latents.clone())
            experts.append("transformer" if high_noise else "transformer_2")
    return latents, steps, experts, [float(t) for t in scheduler.timesteps]


FLUX_VAE_SCALE = 8  # FluxPipeline's vae_scale_factor without a VAE


def flux_inputs(case, model, seed):
    import torch

    rows = case.height // (FLUX_VAE_SCALE * 2)
    cols = case.width // (FLUX_VAE_SCALE * 2)
    config = model.config
    rng = np.random.default_rng(seed)
    arrays = {
        "latents": rng.standard_normal((case.batch, rows * cols, config.in_channels), dtype=np.float32),
        "prompt_embeds": rng.standard_normal((case.batch, case.text_tokens, config.joint_attention_dim),
                                             dtype=np.float32),
        "pooled_prompt_embeds": rng.standard_normal((case.batch, config.pooled_projection_dim), dtype=np.float32),
    }
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def flux_official_loop(case, model, scheduler, inputs):
    from diffusers import FluxPipeline

    pipe = FluxPipeline(scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=model)
    pipe.set_progress_bar_config(disable=True)
    steps = []

    def record(_pipe, _i, _t, kwargs):
        steps.append(kwargs["latents"].clone())
        return {}

    final = pipe(prompt_embeds=inputs["prompt_embeds"], pooled_prompt_embeds=inputs["pooled_prompt_embeds"],
                 latents=inputs["latents"].clone(), height=case.height, width=case.width,
                 num_inference_steps=case.steps, guidance_scale=case.guidance_scale, output_type="latent",
                 return_dict=False, callback_on_step_end=record)[0]
    return pipe, final, steps


def flux_replica_loop(case, model, scheduler, inputs):
    import torch
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    rows = case.height // (FLUX_VAE_SCALE * 2)
    cols = case.width // (FLUX_VAE_SCALE * 2)
    img_ids = torch.zeros(rows, cols, 3)
    img_ids[..., 1] += torch.arange(rows)[:, None]
    img_ids[..., 2] += torch.arange(cols)[None, :]
    img_ids = img_ids.reshape(rows * cols, 3)
    txt_ids = torch.zeros(case.text_tokens, 3)
    latents = inputs["latents"].clone()
    mu = calculate_shift(latents.shape[1], scheduler.config.get("base_image_seq_len", 256),
                         scheduler.config.get("max_image_seq_len", 4096), scheduler.config.get("base_shift", 0.5),
                         scheduler.config.get("max_shift", 1.15))
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / case.steps, case.steps), mu=mu, device="cpu")
    scheduler.set_begin_index(0)
    guidance = (torch.full([1], case.guidance_scale, dtype=torch.float32).expand(latents.shape[0])
                if model.config.guidance_embeds else None)
    steps = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            timestep = t.expand(latents.shape[0]).to(latents.dtype)
            prediction = model(hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                               pooled_projections=inputs["pooled_prompt_embeds"],
                               encoder_hidden_states=inputs["prompt_embeds"], txt_ids=txt_ids, img_ids=img_ids,
                               return_dict=False)[0]
            latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
            steps.append(latents.clone())
    return latents, steps, ["transformer"] * len(steps), [float(t) for t in scheduler.timesteps], mu


def write_flux_case(case, index, args, out):
    import diffusers
    import torch
    from safetensors.torch import save_file

    case_dir = out / case.name
    case_dir.mkdir(parents=True)
    shutil.copytree(Path(args.flux_cases) / case.flux_case / "transformer", case_dir / "transformer")
    model = rc.load_case_model(case_dir, "float32", "cpu")
    scheduler_class = getattr(diffusers, case.scheduler)
    scheduler = scheduler_class(**case.scheduler_config)
    scheduler.save_config(str(case_dir / "scheduler"))
    inputs = flux_inputs(case, model, 3000 + index)

    replica, replica_steps, experts, timesteps, mu = flux_replica_loop(
        case, model, scheduler_class.from_config(scheduler.config), inputs)
    pipe, final, steps = flux_official_loop(case, model, scheduler, inputs)
    pipe.save_config(str(case_dir))
    loop = "official FluxPipeline.__call__ (output_type='latent'); the replica loop agrees bit for bit"
    if not torch.equal(final, replica):
        raise AssertionError(f"{case.name}: replica loop differs from FluxPipeline, rel_l2 "
                             f"{rc.rel_l2(replica, final):.3e}")

    save_file({"latents": inputs["latents"]}, str(case_dir / "noise.safetensors"))
    save_file({"prompt_embeds": inputs["prompt_embeds"]}, str(case_dir / "prompt_embeds.safetensors"))
    save_file({"pooled_prompt_embeds": inputs["pooled_prompt_embeds"]},
              str(case_dir / "pooled_prompt_embeds.safetensors"))
    outputs = {"latents": final.contiguous()}
    outputs.update({f"latents.{i}": s.contiguous() for i, s in enumerate(steps)})
    info = rc.reference_info(args.ref, args.ref_commit)
    save_file(outputs, str(case_dir / "outputs.safetensors"),
              metadata={"reference": f"{info['repository']}@{info['commit']}", "loop": loop})
    sampling = {
        "about": case.about,
        "loop": loop,
        "steps": case.steps,
        "guidance_scale": case.guidance_scale,
        "guidance_scale_2": None,
        "boundary_ratio": None,
        "height": case.height,
        "width": case.width,
        "mu": mu,
        "timesteps": timesteps,
        "experts": experts,
    }
    with open(case_dir / "sampling.json", "w", encoding="utf-8") as f:
        json.dump(sampling, f, indent=2)
        f.write("\n")
    return {**sampling, "final_abs_mean": float(final.abs().mean()),
            "noise_to_final_rel_l2": rc.rel_l2(final, inputs["latents"])}


def write_case(case, index, args, out):
    import diffusers

    if case.family == "flux":
        return write_flux_case(case, index, args, out)
    import torch
    from safetensors.torch import save_file

    case_dir = out / case.name
    case_dir.mkdir(parents=True)
    shutil.copytree(Path(args.wan_cases) / "t2v" / "transformer", case_dir / "transformer")
    models = [rc.load_case_model(case_dir, "float32", "cpu"), None]
    if case.second_expert_seed is not None:
        second = rc.load_case_model(case_dir, "float32", "cpu")
        perturb_parameters(second, case.second_expert_seed)
        second.save_pretrained(str(case_dir / "transformer_2"), safe_serialization=True)
        models[1] = diffusers.WanTransformer3DModel.from_pretrained(str(case_dir / "transformer_2")).eval()
    scheduler_class = getattr(diffusers, case.scheduler)
    scheduler = scheduler_class(**case.scheduler_config)
    scheduler.save_config(str(case_dir / "scheduler"))
    inputs = make_inputs(2000 + index)

    replica, replica_steps, experts, timesteps = replica_loop(
        case, models, scheduler_class.from_config(scheduler.config), inputs)
    try:
        pipe, final, steps = official_loop(case, models, scheduler, inputs)
    except Exception:  # noqa: BLE001 - the replica stands in, and sampling.json says so
        traceback.print_exc()
        final, steps, loop = replica, replica_steps, "replica of WanPipeline's loop (the official call failed)"
        write_model_index(case, case_dir, scheduler_class.__name__)
    else:
        pipe.save_config(str(case_dir))
        loop = "official WanPipeline.__call__ (output_type='latent'); the replica loop agrees bit for bit"
        if not torch.equal(final, replica):
            raise AssertionError(f"{case.name}: replica loop differs from WanPipeline, rel_l2 "
                                 f"{rc.rel_l2(replica, final):.3e}")
    if experts.count("transformer_2") == 0 and case.boundary_ratio is not None:
        raise AssertionError(f"{case.name}: transformer_2 never ran")

    save_file({"latents": inputs["latents"]}, str(case_dir / "noise.safetensors"))
    save_file({"prompt_embeds": inputs["prompt_embeds"]}, str(case_dir / "prompt_embeds.safetensors"))
    save_file({"negative_prompt_embeds": inputs["negative_prompt_embeds"]},
              str(case_dir / "negative_prompt_embeds.safetensors"))
    outputs = {"latents": final.contiguous()}
    outputs.update({f"latents.{i}": s.contiguous() for i, s in enumerate(steps)})
    info = rc.reference_info(args.ref, args.ref_commit)
    save_file(outputs, str(case_dir / "outputs.safetensors"),
              metadata={"reference": f"{info['repository']}@{info['commit']}", "loop": loop})
    sampling = {
        "about": case.about,
        "loop": loop,
        "steps": case.steps,
        "guidance_scale": case.guidance_scale,
        "guidance_scale_2": case.guidance_scale_2,
        "boundary_ratio": case.boundary_ratio,
        "frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
        "timesteps": timesteps,
        "experts": experts,
    }
    with open(case_dir / "sampling.json", "w", encoding="utf-8") as f:
        json.dump(sampling, f, indent=2)
        f.write("\n")
    return {**sampling, "final_abs_mean": float(final.abs().mean()),
            "noise_to_final_rel_l2": rc.rel_l2(final, inputs["latents"])}


def write_model_index(case, case_dir, scheduler_name):
    """model_index.json as WanPipeline.save_config writes it (used only when the official call failed)."""
    import diffusers

    none = [None, None]
    index = {
        "_class_name": "WanPipeline",
        "_diffusers_version": diffusers.__version__,
        "boundary_ratio": case.boundary_ratio,
        "expand_timesteps": False,
        "scheduler": ["diffusers", scheduler_name],
        "text_encoder": none,
        "tokenizer": none,
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": ["diffusers", "WanTransformer3DModel"] if case.second_expert_seed is not None else none,
        "vae": none,
    }
    with open(case_dir / "model_index.json", "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="diffusers src/ folder")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--wan-cases", required=True, help="tests/fixtures/wan (its t2v transformer is reused)")
    parser.add_argument("--flux-cases", required=True, help="tests/fixtures/flux (its dev and schnell_batch2 "
                        "transformers are reused)")
    parser.add_argument("--cases", nargs="+", help="write only these cases (the manifest keeps the others)")
    parser.add_argument("--out", required=True, help="fixture folder to (re)write")
    args = parser.parse_args()

    rc.import_diffusers(args.ref)
    import torch

    torch.manual_seed(0)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']}, "
          f"torch {info['torch_version']})", flush=True)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    failed = []
    manifest = {"reference": info, "generator": "tools/reference/make_pipeline_cases.py", "cases": {}}
    known = [case.name for case in CASES]
    if args.cases:
        unknown = sorted(set(args.cases) - set(known))
        if unknown:
            sys.exit(f"error: --cases {unknown}: unknown (known: {known})")
        if (out / "manifest.json").is_file():
            kept = json.loads((out / "manifest.json").read_text())["cases"]
            manifest["cases"].update({k: v for k, v in kept.items() if k not in args.cases})
    written = []
    for index, case in enumerate(CASES):
        if args.cases and case.name not in args.cases:
            continue
        try:
            entry = write_case(case, index, args, tmp)
        except Exception:  # noqa: BLE001 - report it, write the other cases, fail at the end
            traceback.print_exc()
            failed.append(case.name)
            shutil.rmtree(tmp / case.name, ignore_errors=True)
            continue
        manifest["cases"][case.name] = entry
        written.append(case.name)
        print(f"{case.name:20s} {entry['loop']}\n    timesteps {entry['timesteps']}\n    experts {entry['experts']}\n"
              f"    |final| {entry['final_abs_mean']:.4f}  final vs noise rel_l2 {entry['noise_to_final_rel_l2']:.3f}",
              flush=True)
    manifest["cases"] = {name: manifest["cases"][name] for name in known if name in manifest["cases"]}
    with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    rc.replace_entries(tmp, out, [*written, "manifest.json"])  # keeps README.md and the cases not written
    print(f"wrote {len(written)} cases to {out}")
    if failed:
        sys.exit(f"error: failed cases: {failed}")


if __name__ == "__main__":
    main()
