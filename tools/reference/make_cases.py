#!/usr/bin/env python3
"""Writes a family's parity cases from its official implementation, as a spec declares them.

    make_cases.py --ref <reference src/> --spec tools/reference/specs/<family>.py
                  --out tests/fixtures/<family> [--cases a,b] [--ref-commit C]
                  [--extra-ref NAME=PATH ...]

Each case is a folder (DESIGN.md, "Parity cases"):
    transformer/config.json + weights   the official class saved with save_pretrained, or
                                        written in another layout the spec declares
    inputs.safetensors                  the forward's tensor keyword args, as stored
    args.json                           the forward's non-tensor keyword args (when any)
    outputs.safetensors                 per output head: <head> = float32 forward on the
                                        CPU; <head>_bf16 = from_pretrained(torch_dtype=
                                        bfloat16) run on CUDA, inputs cast as the pipeline
                                        casts them; all stored float32
    trace.jsonl                         the float32 reference trace (cases with trace=True)
and manifest.json lists every case with its files, sizes, checks and measured errors.

Every parameter is overwritten from a seeded PCG64 generator (reference_common.
fill_parameters), inputs come from a second one, so zero- or identity-initialised paths
matter too.

A spec is a Python file defining:
    CLASS            the official class: "diffusers.Name" or "package.module:Name", imported
                     with --ref first on the path
    CONFIG           the tiny base config (constructor kwargs); a case's config updates it
    CASES            a list of make_cases.Case
    make_inputs(case, config, rng) -> {name: numpy array}   the stored tensor inputs
and optionally:
    HEADS            output head names, in the order forward(return_dict=False) returns them
                     (default ("sample",))
    PIPELINE_CASTS   inputs the family's pipeline hands over in the model dtype (the rest,
                     e.g. the timestep, are passed as stored)
    forward_extras(inputs, config) -> {kwarg: value}   what the pipeline builds from the
                     other inputs alone (a rotary table): passed to the forward, not stored
    TRACE_LAYERS     regex of module names traced (searched; default all)
    LAYOUTS          {name: layout} for cases in another checkpoint layout; a layout has
                     write(state_dict, config, transformer_dir) and
                     read(transformer_dir) -> (diffusers config, diffusers state dict), and
                     may have checks(state_dict, config, transformer_dir) -> [check sentences]
    manifest_extras(case, config) -> {key: value}   more fields of the case's manifest entry
    EXTRA_REFS       {name: what it is}: further official sources the spec's hooks may read
                     (given as --extra-ref NAME=PATH, read with make_cases.extra_ref(NAME);
                     a hook whose source is not given does without the check it enables)
    REAL_CONFIGS     {variant: config} of the released checkpoints (dump_keys.py reads them)
    REAL_CONFIG_FILE "saved" (default): keys/<variant>.config.json is the class's save_config;
                     "given": the variant's config as REAL_CONFIGS lists it (the repository's
                     file, whose missing keys take the class defaults)
"""

import argparse
import importlib
import importlib.util
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as rc  # noqa: E402
import trace_reference  # noqa: E402

if __name__ == "__main__":
    sys.modules.setdefault("make_cases", sys.modules[__name__])  # a spec's `import make_cases` is this module

TRACE_STATS = ("abs_mean", "sum", "min", "max", "mean", "std", "shape", "dtype")
EXTRA_REFS = {}  # --extra-ref NAME=PATH, for the spec's hooks


def extra_ref(name):
    """The folder given as --extra-ref NAME=PATH, or None."""
    return EXTRA_REFS.get(name)


def parse_extra_refs(values, spec):
    declared = getattr(spec, "EXTRA_REFS", {})
    for value in values or ():
        name, sep, path = value.partition("=")
        if not sep or name not in declared:
            known = ", ".join(f"{k} ({v})" for k, v in declared.items()) or "none"
            sys.exit(f"error: --extra-ref {value!r}: expected NAME=PATH with NAME one of: {known}")
        if not Path(path).is_dir():
            sys.exit(f"error: --extra-ref {name}={path}: no such folder")
        EXTRA_REFS[name] = path


@dataclass
class Case:
    name: str
    seed: int
    about: str
    config: dict = field(default_factory=dict)  # updates the spec's CONFIG
    inputs: dict = field(default_factory=dict)  # the spec's make_inputs reads these
    args: dict = field(default_factory=dict)  # non-tensor forward kwargs -> args.json
    layout: str = "diffusers"  # or a key of the spec's LAYOUTS
    weights_from: str | None = None  # reuse an earlier case's weights and inputs
    shards: int = 1
    trace: bool = False
    bf16: bool = True


def load_spec(path):
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"spec_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    for name in ("CLASS", "CONFIG", "CASES", "make_inputs"):
        if not hasattr(module, name):
            sys.exit(f"error: spec {path} defines no {name}")
    return module


def resolve_class(name):
    module, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def import_reference(ref, spec):
    """Puts --ref first on the path (diffusers' src/ checked to be the one imported)."""
    if (Path(ref) / "diffusers" / "__init__.py").is_file():
        return rc.import_diffusers(ref)
    sys.path.insert(0, str(Path(ref).resolve()))
    return None


class Family:
    """The spec bound to its official class: how a case's model is built, loaded and fed."""

    def __init__(self, spec):
        self.spec = spec
        self.model_class = resolve_class(spec.CLASS)
        self.heads = tuple(getattr(spec, "HEADS", ("sample",)))
        self.casts = tuple(getattr(spec, "PIPELINE_CASTS", ()))
        self.layouts = getattr(spec, "LAYOUTS", {})
        self.keep = getattr(self.model_class, "_keep_in_fp32_modules", None)

    def config(self, case):
        return {**self.spec.CONFIG, **case.config}

    def layout_of(self, case_dir):
        """The layout a case folder is in: the one its manifest entry (beside the case) names;
        else diffusers when transformer/config.json names the spec's class and diffusers'
        weight files are there; else the spec's only other layout."""
        case_dir = Path(case_dir)
        transformer_dir = case_dir / "transformer"
        manifest = case_dir.parent / "manifest.json"
        if manifest.is_file():
            entry = json.loads(manifest.read_text(encoding="utf-8")).get("cases", {}).get(case_dir.name, {})
            if entry.get("layout") == "diffusers" or entry.get("layout") in self.layouts:
                return entry["layout"]
        class_name = rc.read_config(transformer_dir).get("_class_name")
        if class_name == self.model_class.__name__ and any(transformer_dir.glob("diffusion_pytorch_model*")):
            return "diffusers"
        if len(self.layouts) == 1:
            return next(iter(self.layouts))
        sys.exit(f"error: {transformer_dir}: _class_name {class_name!r}, and no manifest entry beside the case "
                 f"names its layout (one of diffusers, {', '.join(sorted(self.layouts))})")

    def loader(self, layout):
        """load(case_dir, dtype, device): the case's model as diffusers loads it,
        from_pretrained(torch_dtype=...); a folder in another layout goes through the layout's
        reader into a temporary diffusers folder first."""

        def load(case_dir, dtype, device):
            transformer_dir = Path(case_dir) / "transformer"
            with tempfile.TemporaryDirectory() as tmp:
                if layout != "diffusers":
                    config, state_dict = self.layouts[layout].read(transformer_dir)
                    model = self.model_class.from_config(config)
                    model.load_state_dict(state_dict, strict=True)
                    model.save_pretrained(tmp, safe_serialization=True)
                    transformer_dir = Path(tmp)
                model = self.model_class.from_pretrained(str(transformer_dir), torch_dtype=rc.torch_dtype(dtype))
            return model.to(device).eval()

        return load

    def feed(self, case_dir):
        """feed(model, inputs, dtype, device): the forward kwargs the pipeline would pass."""
        args = read_args(case_dir)
        extras = getattr(self.spec, "forward_extras", None)

        def feed(model, inputs, dtype, device):
            fed = {}
            for name, tensor in inputs.items():
                if name in self.casts:
                    tensor = tensor.to(rc.torch_dtype(dtype))
                fed[name] = tensor.to(device)
            if extras is not None:
                fed.update(extras(inputs, dict(model.config)))
            return {**fed, **args}

        return feed


def read_args(case_dir):
    path = Path(case_dir) / "args.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def to_torch(inputs):
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def save_transformer(family, case, model, transformer_dir, checks):
    state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
    if case.layout == "diffusers":
        max_shard = rc.shard_size_for(state_dict, case.shards) if case.shards > 1 else "10GB"
        model.save_pretrained(str(transformer_dir), safe_serialization=True, max_shard_size=max_shard)
        return
    layout = family.layouts[case.layout]
    config = dict(model.config)
    layout.write(state_dict, config, transformer_dir)
    checks.append(f"{case.layout}-layout config.json and weights written")
    for check in getattr(layout, "checks", lambda *_: [])(state_dict, config, transformer_dir):
        checks.append(check)
    config_back, state_back = layout.read(transformer_dir)
    import torch

    if sorted(state_back) != sorted(state_dict) or any(not torch.equal(state_back[k], v) for k, v in state_dict.items()):
        raise AssertionError(f"{case.layout} layout does not read back into the same state dict")
    checks.append(f"{case.layout} layout reads back into the diffusers state dict bit for bit")


def write_trace(family, case, case_dir, inputs):
    """trace.jsonl: the float32 CPU forward's activation trace, every stat, the spec's layers."""
    model = family.loader(case.layout)(case_dir, "float32", "cpu")
    fed = family.feed(case_dir)(model, inputs, "float32", "cpu")
    layers = re.compile(getattr(family.spec, "TRACE_LAYERS", ""))
    records = trace_reference.trace(model, fed, layers, TRACE_STATS)
    with open(Path(case_dir) / "trace.jsonl", "w", encoding="utf-8") as f:
        for entry in records:
            f.write(json.dumps(entry) + "\n")
    return len(records)


def write_case(family, case, out, info, built):
    import torch
    from safetensors.torch import save_file

    case_dir = out / case.name
    checks = []
    config = family.config(case)
    if case.weights_from:
        model, inputs = built[case.weights_from]
    else:
        model = family.model_class(**config).eval()
        rc.fill_parameters(model, case.seed)
        rng = np.random.default_rng(1000 + case.seed)
        inputs = to_torch(family.spec.make_inputs(case, config, rng))
        built[case.name] = (model, inputs)
    save_transformer(family, case, model, case_dir / "transformer", checks)
    save_file(inputs, str(case_dir / "inputs.safetensors"), metadata={"format": "pt"})
    if case.args:
        (case_dir / "args.json").write_text(json.dumps(case.args, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    outputs, stats = rc.reference_outputs(case_dir, model, inputs, checks, family.keep,
                                          load=family.loader(case.layout), feed=family.feed(case_dir),
                                          heads=family.heads, bf16=case.bf16)
    if case.weights_from:
        for head in family.heads:
            twin = built[f"{case.weights_from}:{head}"]
            if not torch.equal(outputs[head], twin):
                raise AssertionError(f"{case.name} and {case.weights_from} should give the same float32 {head}")
        checks.append(f"float32 outputs bit-identical to {case.weights_from}'s")
    for head in family.heads:
        built[f"{case.name}:{head}"] = outputs[head]
    save_file(outputs, str(case_dir / "outputs.safetensors"),
              metadata=rc.outputs_metadata(info, stats, family.heads))
    if case.trace:
        count = write_trace(family, case, case_dir, inputs)
        checks.append(f"trace.jsonl: {count} float32 records")
    extras = getattr(family.spec, "manifest_extras", lambda *_: {})(case, config)
    return rc.case_entry(case.about, case_dir, model, inputs, outputs, stats, checks, layout=case.layout,
                         args=case.args, **extras)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="reference source folder (diffusers' src/ or an official repo)")
    parser.add_argument("--ref-commit", help="commit of the reference (default: COMMIT file next to src/)")
    parser.add_argument("--spec", required=True, help="the family's case spec (tools/reference/specs/<family>.py)")
    parser.add_argument("--out", required=True, help="fixture folder to (re)write")
    parser.add_argument("--cases", help="comma list of case names (default: all)")
    parser.add_argument("--extra-ref", action="append", metavar="NAME=PATH",
                        help="a further official source the spec declares in EXTRA_REFS")
    args = parser.parse_args()

    spec = load_spec(args.spec)
    parse_extra_refs(args.extra_ref, spec)
    import_reference(args.ref, spec)
    import torch

    torch.manual_seed(0)
    family = Family(spec)
    info = rc.reference_info(args.ref, args.ref_commit)
    print(f"reference: {info['repository']}@{info['commit']} (diffusers {info['diffusers_version']}, "
          f"torch {info['torch_version']}, cuda {torch.cuda.is_available()}); {spec.CLASS}", flush=True)
    wanted = set(args.cases.split(",")) if args.cases else None
    cases = [c for c in spec.CASES if wanted is None or c.name in wanted or any(
        d.weights_from == c.name and d.name in wanted for d in spec.CASES)]
    by_name = {c.name: c for c in cases}
    built = {}
    rc.write_case_set(args.out, list(by_name), lambda name, folder: write_case(family, by_name[name], folder, info, built),
                      info, f"tools/reference/make_cases.py --spec {Path(args.spec).as_posix()}")


if __name__ == "__main__":
    main()
