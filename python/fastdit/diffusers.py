"""Drop-in replacements for diffusers' transformer classes, run by fastdit:

    transformer = fastdit.diffusers.WanTransformer3DModel.from_pretrained(
        "Wan2.1-T2V-1.3B-Diffusers", subfolder="transformer", torch_dtype=torch.bfloat16, device="cuda")
    pipe = diffusers.WanPipeline.from_pretrained("Wan2.1-T2V-1.3B-Diffusers", transformer=transformer, ...)

Each class behaves as the diffusers one where a pipeline looks: `config` (attribute access,
read-only), `dtype`, `device`, `forward(..., return_dict=False)` returning a tuple of the
output heads, `cache_context` and the attention-processor hooks (no-ops: fastdit picks its
own attention kernels), `.to(device, dtype)` (reloads the weights there). A keyword argument
the model does not take is dropped with one warning instead of a TypeError, so a pipeline
newer than the port keeps running. The classes are torch modules, so that pipelines find
their device among their components, and diffusers ModelMixins when diffusers is importable,
since a pipeline's from_pretrained(..., transformer=t) accepts only those; they hold no
torch parameters.
"""

import contextlib
import inspect
import json
import pathlib
import sys
import warnings

import torch

import fastdit

try:
    from diffusers import ModelMixin as _Module
except ImportError:
    _Module = torch.nn.Module

__all__ = ["FastditTransformer", "FrozenConfig", "TransformerOutput", "WanTransformer3DModel",
           "SD3Transformer2DModel"]

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
_DTYPES = {name: dtype for dtype, name in _DTYPE_NAMES.items()}
# from_pretrained arguments of diffusers that choose what fastdit decides itself.
_LOADING_ONLY = {"variant", "use_safetensors", "low_cpu_mem_usage", "cache_dir", "local_files_only", "revision",
                 "token", "force_download", "device_map", "max_memory", "offload_folder"}


class FrozenConfig(dict):
    """A model's config.json, read-only, with attribute access (as diffusers' FrozenDict)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no '{name}'") from None

    def _frozen(self, *args, **kwargs):
        raise TypeError("the config of a loaded model is read-only")

    __setattr__ = __setitem__ = __delitem__ = update = pop = setdefault = _frozen


class TransformerOutput(tuple):
    """The heads of one forward as a tuple in declaration order and as attributes
    (`.sample`), as diffusers' Transformer2DModelOutput."""

    def __new__(cls, heads):
        out = super().__new__(cls, heads.values())
        out._heads = heads
        return out

    def __getattr__(self, name):
        try:
            return self._heads[name]
        except KeyError:
            raise AttributeError(name) from None


def _torch_device(name):
    device = torch.device(name)
    return torch.device(device.type, 0) if device.type == "cuda" and device.index is None else device


def _config(model):
    config = json.loads((pathlib.Path(model.dir) / "config.json").read_text())
    # Keys config.json leaves out take the diffusers class's defaults, as diffusers fills
    # them, when the caller has diffusers (importing it here would be slow and may fail).
    reference = getattr(sys.modules.get("diffusers"), model.class_name, None)
    if reference is not None:
        for name, parameter in inspect.signature(reference.__init__).parameters.items():
            if name != "self" and parameter.default is not inspect.Parameter.empty:
                config.setdefault(name, parameter.default)
    return FrozenConfig(config)


class FastditTransformer(_Module):
    """A fastdit model in the place of the diffusers class named `_class_name`. A family is
    one subclass that names it; everything else comes from the model's declaration."""

    _class_name = None

    def __init__(self, model):
        super().__init__()
        if model.class_name != self._class_name:
            raise fastdit.FastditError(f"{type(self).__name__}: {model.dir} holds a {model.class_name}")
        self._model = model
        self._config = _config(model)
        self._warned = set()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder="transformer", torch_dtype=None, device="cpu",
                        fuse_projections=None, attention_backend=None, **kwargs):
        """Loads a local diffusers model folder (or its `subfolder`). torch_dtype: float32
        (None), bfloat16 or float16. device: where fastdit runs it ("cpu", "cuda")."""
        path = pathlib.Path(pretrained_model_name_or_path)
        if not path.is_dir():
            raise fastdit.FastditError(f"{cls.__name__}.from_pretrained: {path} is not a local folder (fastdit reads "
                                       "local folders; fetch a hub model first, e.g. huggingface_hub.snapshot_download)")
        if subfolder and (path / subfolder).is_dir():
            path = path / subfolder
        for name in kwargs:
            warnings.warn(f"{cls.__name__}.from_pretrained: '{name}' is "
                          f"{'decided by fastdit' if name in _LOADING_ONLY else 'not an option'}; ignored",
                          stacklevel=2)
        dtype = _DTYPE_NAMES.get(torch_dtype or torch.float32)
        if dtype is None:
            raise fastdit.FastditError(f"{cls.__name__}.from_pretrained: torch_dtype {torch_dtype} is not one of "
                                       f"{', '.join(map(str, _DTYPE_NAMES))}")
        return cls(fastdit.load(path, device=device, dtype=dtype, fuse_projections=fuse_projections,
                                attention_backend=attention_backend))

    @property
    def config(self):
        return self._config

    @property
    def dtype(self):
        return _DTYPES[self._model.dtype]

    @property
    def device(self):
        return _torch_device(self._model.device)

    @property
    def fastdit_model(self):
        return self._model

    def to(self, *args, **kwargs):
        """Moves the model by loading its weights again on that device / in that dtype."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        device = _torch_device(str(device)) if device is not None else self.device
        dtype = dtype or self.dtype
        if dtype not in _DTYPE_NAMES:
            raise fastdit.FastditError(f"{type(self).__name__}.to: dtype {dtype} is not one of "
                                       f"{', '.join(map(str, _DTYPE_NAMES))}")
        if device != self.device or dtype != self.dtype:
            model = self._model
            self._model = fastdit.load(model.dir, device=str(device), dtype=_DTYPE_NAMES[dtype])
            model.close()
        return self

    def forward(self, *args, return_dict=True, **kwargs):
        """The diffusers forward: positional arguments are the declared tensor inputs in
        order (hidden_states, timestep, ... as the diffusers signature has them)."""
        inputs = list(self._model.inputs)
        if len(args) > len(inputs):
            raise TypeError(f"{type(self).__name__}.forward takes at most {len(inputs)} positional arguments")
        for name, value in zip(inputs, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}.forward: '{name}' given twice")
            kwargs[name] = value
        call = {}
        for name, value in kwargs.items():
            if value is None or self._model.takes(name):
                call[name] = value
            elif name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"{type(self).__name__}.forward: fastdit's {self._class_name} takes no '{name}'; "
                              "ignored", stacklevel=2)
        heads = self._model(**call)
        return TransformerOutput(heads) if return_dict else tuple(heads.values())

    @contextlib.contextmanager
    def cache_context(self, name):
        """diffusers' cache hooks (FirstBlockCache, ...) name the branch each forward computes;
        fastdit caches nothing between forwards."""
        yield

    # Attention-processor hooks: fastdit picks its attention kernels itself.
    @property
    def attn_processors(self):
        return {}

    def set_attn_processor(self, processor):
        pass

    def set_default_attn_processor(self):
        pass

    def fuse_qkv_projections(self):
        pass

    def unfuse_qkv_projections(self):
        pass


class WanTransformer3DModel(FastditTransformer):
    _class_name = "WanTransformer3DModel"


class SD3Transformer2DModel(FastditTransformer):
    _class_name = "SD3Transformer2DModel"
