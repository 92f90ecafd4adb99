#!/usr/bin/env python3
"""Writes scheduler fixtures from the official diffusers schedulers.

    make_scheduler_cases.py --ref <diffusers src/> --out tests/fixtures/schedulers

Each case is a folder:
    <case>/scheduler_config.json   the scheduler's config exactly as diffusers saves it
    <case>/steps.safetensors       timesteps      what set_timesteps made (int64 for UniPC,
                                                  float32 for FlowMatchEuler)
                                   sigmas         float32, one more than the steps
                                   sample         float32 start of the chain
                                   model_output.<i>, prev_sample.<i>
                                                  step i's input and the reference's output
                                   metadata: num_inference_steps, mu ("" when not used)

The model outputs are numpy PCG64 draws: the scheduler's arithmetic does not care where they
come from. Step i is fed the reference's own output of step i-1, as a pipeline would, after
set_begin_index(0) (what the Wan pipelines call). Runs on the CPU.
"""

import argparse
import json
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402

SAMPLE_SHAPE = (1, 4, 2, 4, 6)

# Wan's scheduler_config.json (Wan2.1/2.2 *-Diffusers): UniPC in flow-prediction mode.
WAN_UNIPC = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}


@dataclass
class Case:
    name: str
    scheduler: str  # diffusers class name
    steps: int
    about: str
    config: dict = field(default_factory=dict)
    mu: float | None = None


CASES = [
    Case("unipc_wan_shift3_50", "UniPCMultistepScheduler", 50,
         "Wan2.1 T2V 480P default: flow_shift 3, order 2, bh2, lower_order_final", {**WAN_UNIPC, "flow_shift": 3.0}),
    Case("unipc_shift12_40", "UniPCMultistepScheduler", 40,
         "Wan2.2 T2V A14B: flow_shift 12, 40 steps", {**WAN_UNIPC, "flow_shift": 12.0}),
    Case("unipc_shift5_4", "UniPCMultistepScheduler", 4, "few steps, flow_shift 5", {**WAN_UNIPC, "flow_shift": 5.0}),
    Case("unipc_shift3_1", "UniPCMultistepScheduler", 1, "a single step", {**WAN_UNIPC, "flow_shift": 3.0}),
    Case("unipc_order3_shift8_10", "UniPCMultistepScheduler", 10, "solver_order 3 (the linalg.solve path)",
         {**WAN_UNIPC, "flow_shift": 8.0, "solver_order": 3}),
    # bh1 needs a nonzero final sigma: with sigma 0 its last step computes -inf * 0 = nan.
    Case("unipc_bh1_sigma_min_shift5_6", "UniPCMultistepScheduler", 6, "solver_type bh1, final_sigmas_type sigma_min",
         {**WAN_UNIPC, "flow_shift": 5.0, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}),
    Case("unipc_no_lower_order_final_corrector_off_7", "UniPCMultistepScheduler", 7,
         "final_sigmas_type sigma_min with lower_order_final off; corrector disabled after step 2",
         {**WAN_UNIPC, "flow_shift": 3.0, "lower_order_final": False, "final_sigmas_type": "sigma_min",
          "disable_corrector": [2]}),
    Case("unipc_dynamic_mu1.2_12", "UniPCMultistepScheduler", 12, "use_dynamic_shifting, exponential, mu 1.2",
         {**WAN_UNIPC, "use_dynamic_shifting": True}, mu=1.2),
    Case("euler_shift3_50", "FlowMatchEulerDiscreteScheduler", 50, "static shift 3 (shifted twice at the tail)",
         {"shift": 3.0}),
    Case("euler_shift5_4", "FlowMatchEulerDiscreteScheduler", 4, "few steps, shift 5", {"shift": 5.0}),
    Case("euler_shift1_1", "FlowMatchEulerDiscreteScheduler", 1, "a single step, no shift", {}),
    Case("euler_dynamic_mu0.9_28", "FlowMatchEulerDiscreteScheduler", 28,
         "dynamic shifting (SD3/Flux style), exponential, mu 0.9",
         {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
          "max_image_seq_len": 4096}, mu=0.9),
    Case("euler_dynamic_linear_terminal_8", "FlowMatchEulerDiscreteScheduler", 8,
         "dynamic shifting, linear time shift, shift_terminal 0.1, mu 2.05",
         {"use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.1}, mu=2.05),
]


def run_case(case, seed, out_dir):
    import diffusers
    import torch
    from safetensors.torch import save_file

    scheduler = getattr(diffusers, case.scheduler)(**case.config)
    case_dir = out_dir / case.name
    case_dir.mkdir(parents=True)
    scheduler.save_config(str(case_dir))

    kwargs = {"mu": case.mu} if case.mu is not None else {}
    scheduler.set_timesteps(case.steps, device="cpu", **kwargs)
    scheduler.set_begin_index(0)
    rng = np.random.default_rng(seed)
    sample = torch.from_numpy(rng.standard_normal(SAMPLE_SHAPE, dtype=np.float32))
    tensors = {
        "timesteps": scheduler.timesteps.clone().contiguous(),
        "sigmas": scheduler.sigmas.clone().float().contiguous(),
        "sample": sample.clone(),
    }
    for i, t in enumerate(scheduler.timesteps):
        model_output = torch.from_numpy(rng.standard_normal(SAMPLE_SHAPE, dtype=np.float32))
        sample = scheduler.step(model_output, t, sample, return_dict=False)[0]
        if not torch.isfinite(sample).all():
            raise AssertionError(f"{case.name}: step {i} is not finite")
        tensors[f"model_output.{i}"] = model_output
        tensors[f"prev_sample.{i}"] = sample.clone().contiguous()
    metadata = {"num_inference_steps": str(case.steps), "mu": "" if case.mu is None else repr(case.mu),
                "scheduler": case.scheduler, "about": case.about}
    save_file(tensors, str(case_dir / "steps.safetensors"), metadata=metadata)
    return {
        "scheduler": case.scheduler,
        "about": case.about,
        "steps": case.steps,
        "mu": case.mu,
        "timesteps_dtype": rc.dtype_name(tensors["timesteps"].dtype),
        "timesteps": [float(t) for t in tensors["timesteps"]],
        "sigmas": [float(s) for s in tensors["sigmas"]],
        "final_abs_mean": float(sample.abs().mean()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="diffusers src/ folder")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--out", required=True, help="fixture folder to (re)write")
    args = parser.parse_args()

    rc.import_diffusers(args.ref)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']}, "
          f"torch {info['torch_version']})", flush=True)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    failed = []
    manifest = {"reference": info, "generator": "tools/reference/make_scheduler_cases.py", "cases": {}}
    for seed, case in enumerate(CASES):
        try:
            entry = run_case(case, 100 + seed, tmp)
        except Exception:  # noqa: BLE001 - report it, write the other cases, fail at the end
            traceback.print_exc()
            failed.append(case.name)
            shutil.rmtree(tmp / case.name, ignore_errors=True)
            continue
        manifest["cases"][case.name] = entry
        print(f"{case.name:44s} {case.steps:3d} steps  t[0..2] {entry['timesteps'][:3]}  "
              f"|x_final| {entry['final_abs_mean']:.4f}", flush=True)
    with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    rc.replace_entries(tmp, out, [*manifest["cases"], "manifest.json"])  # keeps README.md
    print(f"wrote {len(manifest['cases'])} cases to {out}")
    if failed:
        sys.exit(f"error: failed cases: {failed}")


if __name__ == "__main__":
    main()
