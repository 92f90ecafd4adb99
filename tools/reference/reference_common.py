"""Shared pieces of the reference-side fixture tools.

The reference implementation is imported from a source folder given on the command line
(never installed, never committed). This module knows how to put it on the path, which
commit it came from, how diffusers decides parameter dtypes at a bf16 load, how a parity
case folder is written (seeded weights, float32 and bf16 reference runs, manifest) and how
it is read back.
"""

import json
import os
import sys
from pathlib import Path

# Fixture tools never reach a hub: every model and input is made or read locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

DTYPES = ("float32", "bfloat16")


def import_diffusers(src):
    """Imports diffusers from `src` (the reference checkout's src/ folder) and returns it."""
    src = Path(src).resolve()
    if not (src / "diffusers" / "__init__.py").is_file():
        sys.exit(f"error: {src} holds no diffusers/ package; pass the reference's src/ folder")
    sys.path.insert(0, str(src))
    import diffusers

    loaded_from = Path(diffusers.__file__).resolve().parent
    if loaded_from != src / "diffusers":
        sys.exit(f"error: diffusers was imported from {loaded_from}, not from {src}")
    return diffusers


def reference_commit(src, given=None):
    """The commit the reference source was exported from.

    `given` wins; otherwise a COMMIT file next to src/ (written when the source is exported
    with `git archive`) is read; otherwise 'unknown'.
    """
    return given or commit_file_in(Path(src).resolve().parent)


def commit_file_in(folder):
    commit_file = Path(folder) / "COMMIT"
    return commit_file.read_text().strip() if commit_file.is_file() else "unknown"


def reference_info(src, commit=None):
    import diffusers
    import torch

    return {
        "repository": "huggingface/diffusers",
        "commit": reference_commit(src, commit),
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
    }


def kept_in_fp32(param_name, keep_in_fp32_modules):
    """diffusers' rule at a low-precision load (model_loading_utils.load_model_dict_into_meta):
    a parameter stays float32 when any dotted component of its name is listed in the
    class's `_keep_in_fp32_modules`."""
    parts = param_name.split(".")
    return any(module in parts for module in keep_in_fp32_modules or ())


def load_dtype(param_name, keep_in_fp32_modules, run_dtype):
    return "float32" if kept_in_fp32(param_name, keep_in_fp32_modules) else run_dtype


def torch_dtype(name):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def rel_l2(out, ref):
    out = out.detach().double().cpu()
    ref = ref.detach().double().cpu()
    return float((out - ref).norm() / ref.norm())


def max_abs(out, ref):
    return float((out.detach().double().cpu() - ref.detach().double().cpu()).abs().max())


def read_config(transformer_dir):
    with open(Path(transformer_dir) / "config.json", encoding="utf-8") as f:
        return json.load(f)


def load_case_model(case_dir, dtype, device):
    """Loads a diffusers-layout `<case>/transformer` the way diffusers loads it:
    `from_pretrained(torch_dtype=...)` of the config's `_class_name`. (Cases in another layout
    load through their spec: make_cases.Family.loader.)"""
    import diffusers

    transformer_dir = Path(case_dir) / "transformer"
    model_class = getattr(diffusers, read_config(transformer_dir)["_class_name"])
    model = model_class.from_pretrained(str(transformer_dir), torch_dtype=torch_dtype(dtype))
    return model.to(device).eval()


def load_case_inputs(case_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(case_dir) / "inputs.safetensors"))


def run_model(model, inputs):
    import torch

    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def default_device(dtype):
    return "cpu" if dtype == "float32" else "cuda"


def disable_tf32():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


# ---- writing parity cases (DESIGN.md, "Parity cases") ---------------------------------


def init_value(name, shape, rng):
    """Seeded, non-degenerate weights, so zero- or identity-initialised paths matter too:
    norm weights 1 + 0.1*N(0,1), biases 0.1*N(0,1), everything else 0.2*N(0,1)."""
    import numpy as np

    leaf = name.rsplit(".", 2)
    is_norm_weight = len(shape) == 1 and name.endswith(".weight") and leaf[-2].startswith("norm")
    noise = rng.standard_normal(shape, dtype=np.float32)
    if is_norm_weight:
        return 1.0 + 0.1 * noise
    if name.endswith(".bias"):
        return 0.1 * noise
    return 0.2 * noise


def fill_parameters(model, seed):
    """Overwrites every parameter from a numpy PCG64 generator (buffers keep their values)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.from_numpy(init_value(name, tuple(param.shape), rng)))


def shard_size_for(state_dict, shards):
    """The smallest max_shard_size (bytes) for which diffusers' save_pretrained writes `shards` files."""
    from huggingface_hub import split_torch_state_dict_into_shards

    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    for size in range(total // shards, total + 1, 64):
        split = split_torch_state_dict_into_shards(state_dict, max_shard_size=size)
        if len(split.filename_to_tensors) == shards:
            return size
    raise ValueError(f"no shard size gives {shards} shards")


def check_bf16_dtypes(model, keep):
    """Every state-dict tensor (parameters and persistent buffers) of a bf16 load is bfloat16,
    except those `_keep_in_fp32_modules` keeps in float32."""
    for name, tensor in model.state_dict().items():
        expected = load_dtype(name, keep, "bfloat16")
        if dtype_name(tensor.dtype) != expected:
            raise AssertionError(f"bf16 load left {name} in {tensor.dtype}, expected {expected}")


def head_stat(head, stat):
    """A stats key: `sample`'s stats carry their historical names, other heads are prefixed."""
    return stat if head == "sample" else f"{head}.{stat}"


def reference_outputs(case_dir, in_memory_model, inputs, checks, keep, load, feed, heads=("sample",), bf16=True):
    """Each head (the forward's outputs with return_dict=False, in order): `<head>` = the case
    reloaded with from_pretrained and run in float32 on the CPU; `<head>_bf16` = loaded with
    torch_dtype=bfloat16 and run on CUDA (CPU without a GPU), inputs cast as the family's
    pipeline casts them (skipped when bf16 is false); all float32. Also returns stats.

    load(case_dir, dtype, device) -> model and feed(model, inputs, dtype, device) -> forward
    kwargs (make_cases.Family.loader and .feed)."""
    import torch

    def run(model, kwargs):
        with torch.no_grad():
            outputs = model(**kwargs, return_dict=False)
        return {head: out.float().cpu().contiguous() for head, out in zip(heads, outputs, strict=True)}

    model = load(case_dir, "float32", "cpu")
    if in_memory_model is not None:
        reloaded = model.state_dict()
        for name, tensor in in_memory_model.state_dict().items():
            if not torch.equal(reloaded[name], tensor):
                raise AssertionError(f"{name} changed through save/load")
        checks.append("weights reload bit-exactly through from_pretrained")
    result = run(model, feed(model, inputs, "float32", "cpu"))
    stats = {}
    for head, out in result.items():
        if not torch.isfinite(out).all():
            raise AssertionError(f"float32 {head} is not finite")
        stats[head_stat(head, "sample_abs_mean")] = float(out.abs().mean())
        stats[head_stat(head, "sample_std")] = float(out.std())
    if torch.cuda.is_available():
        disable_tf32()
        cuda_fp32 = run(model.to("cuda"), feed(model, inputs, "float32", "cuda"))
        for head, out in cuda_fp32.items():
            stats[head_stat(head, "fp32_cuda_vs_cpu_rel_l2")] = rel_l2(out, result[head])
    if not bf16:
        return result, stats
    if torch.cuda.is_available():
        bf16_model = load(case_dir, "bfloat16", "cuda")
        bf16_device = "cuda"
    else:
        bf16_model = load(case_dir, "bfloat16", "cpu")
        bf16_device = "cpu"
    check_bf16_dtypes(bf16_model, keep)
    checks.append("bf16 load keeps exactly the _keep_in_fp32_modules tensors in float32")
    fed = feed(bf16_model, inputs, "bfloat16", bf16_device)
    stats["bf16_device"] = bf16_device
    stats["bf16_inputs"] = {k: dtype_name(v.dtype) for k, v in fed.items() if isinstance(v, torch.Tensor)}
    for head, out in run(bf16_model, fed).items():
        result[head + "_bf16"] = out
        stats[head_stat(head, "bf16_vs_fp32_rel_l2")] = rel_l2(out, result[head])
        stats[head_stat(head, "bf16_vs_fp32_max_abs")] = max_abs(out, result[head])
    return result, stats


def outputs_metadata(info, stats, heads=("sample",)):
    """The safetensors metadata of outputs.safetensors: where each output came from."""
    metadata = {
        "reference": f"{info['repository']}@{info['commit']}",
        "diffusers_version": info["diffusers_version"],
        "torch_version": info["torch_version"],
    }
    fed = stats.get("bf16_inputs")
    for head in heads:
        metadata[head] = "float32 forward on the CPU, weights loaded with from_pretrained"
        if fed is None:
            continue
        bf16 = [k for k, v in fed.items() if v == "bfloat16"]
        kept = [k for k, v in fed.items() if v != "bfloat16"]
        metadata[head + "_bf16"] = (
            f"from_pretrained(torch_dtype=bfloat16) on {stats['bf16_device']}; {', '.join(bf16)} cast to "
            f"bfloat16, {', '.join(kept) or 'nothing'} left float32; output cast to float32"
        )
        key = head_stat(head, "bf16_vs_fp32_rel_l2")
        metadata[key] = repr(stats[key])
    return metadata


def case_entry(about, case_dir, model, inputs, outputs, stats, checks, **extra):
    """The manifest.json entry of a written case."""
    case_dir = Path(case_dir)
    files = {str(p.relative_to(case_dir)): p.stat().st_size for p in sorted(case_dir.rglob("*")) if p.is_file()}
    return {
        "about": about,
        **extra,
        "config": read_config(case_dir / "transformer"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "inputs": {k: [list(v.shape), dtype_name(v.dtype)] for k, v in inputs.items()},
        "outputs": {k: list(v.shape) for k, v in outputs.items() if not k.endswith("_bf16")},
        "stats": stats,
        "checks": checks,
        "files": files,
        "bytes": sum(files.values()),
    }


def replace_entries(tmp, out, names):
    """Moves the freshly written entries into `out`, replacing only those entries."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (tmp / name).rename(target)
    tmp.rmdir()


def write_case_set(out, names, write_case, info, generator):
    """Writes the named cases with `write_case(name, folder) -> manifest entry` into a
    scratch folder, then replaces only those case folders and manifest.json in `out`."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {"reference": info, "generator": generator, "cases": {}}
    for name in names:
        entry = write_case(name, tmp)
        manifest["cases"][name] = entry
        s = entry["stats"]
        print(f"{name:22s} {entry['bytes']:>8d} B  params {entry['num_parameters']:>6d}  "
              f"out {entry['outputs']}  |out| {s['sample_abs_mean']:.4f}  "
              f"bf16 rel_l2 {s.get('bf16_vs_fp32_rel_l2', float('nan')):.3e}  "
              f"fp32 cuda/cpu {s.get('fp32_cuda_vs_cpu_rel_l2', float('nan')):.2e}", flush=True)
        for check in entry["checks"]:
            print(f"    ok: {check}", flush=True)
    manifest["total_bytes"] = sum(e["bytes"] for e in manifest["cases"].values())
    with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    replace_entries(tmp, out, [*manifest["cases"], "manifest.json"])
    print(f"wrote {len(manifest['cases'])} cases, {manifest['total_bytes']} bytes, to {out}")
