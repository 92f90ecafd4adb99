"""Shared pieces of the reference-side fixture tools.

The reference implementation is imported from a source folder given on the command line
(never installed, never committed). This module knows how to put it on the path, which
commit it came from, how diffusers decides parameter dtypes at a bf16 load, how the
pipelines cast the transformer's inputs, and how a parity case folder is read back.
"""

import json
import os
import sys
import tempfile
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


# Inputs that the pipelines hand to the transformer in its own dtype. The Wan pipelines do
# `latents.to(transformer_dtype)`, `prompt_embeds.to(transformer_dtype)` and
# `image_embeds.to(transformer_dtype)`; the timestep is passed as the scheduler makes it
# (float32 here) and the model turns it into float32 sinusoids itself.
CAST_TO_MODEL_DTYPE = ("hidden_states", "encoder_hidden_states", "encoder_hidden_states_image")


def pipeline_inputs(inputs, dtype, device):
    """The case's float32 inputs as the pipeline feeds them to a model run in `dtype`."""
    fed = {}
    for name, tensor in inputs.items():
        if name in CAST_TO_MODEL_DTYPE:
            tensor = tensor.to(torch_dtype(dtype))
        fed[name] = tensor.to(device)
    return fed


def read_config(transformer_dir):
    with open(Path(transformer_dir) / "config.json", encoding="utf-8") as f:
        return json.load(f)


def load_case_model(case_dir, dtype, device):
    """Loads `<case>/transformer` the way diffusers loads it: `from_pretrained(torch_dtype=...)`.

    A folder in an original (non-diffusers) layout is first converted by diffusers' own
    converter into a temporary diffusers folder, then loaded the same way.
    """
    import diffusers

    transformer_dir = Path(case_dir) / "transformer"
    config = read_config(transformer_dir)
    class_name = config["_class_name"]
    with tempfile.TemporaryDirectory() as tmp:
        if class_name == "WanModel":
            import wan_layout

            wan_layout.write_diffusers_folder_from_original(transformer_dir, Path(tmp))
            transformer_dir = Path(tmp)
            class_name = "WanTransformer3DModel"
        model_class = getattr(diffusers, class_name)
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
