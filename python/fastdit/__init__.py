"""fastdit from Python: the engine's diffusion transformers over its C API (ctypes).

    model = fastdit.load("case/transformer", device="cuda", dtype="bfloat16")
    heads = model(**fastdit.load_file("case/inputs.safetensors"), skip_layers=[7])
    heads["sample"]

Arrays in are numpy arrays or torch tensors (CPU or CUDA, lent without a copy through
DLPack, on the tensor's current CUDA stream); heads come back in the caller's type: numpy
in, numpy (float32, host) out; torch in, torch out on the inputs' device in the model's
dtype. `fastdit.diffusers` holds drop-in replacements for diffusers' transformer classes.
"""

import ctypes
import json
import logging

from . import _arrays, _capi
from ._capi import FastditError

__all__ = ["FastditError", "Model", "load", "load_file", "save_file"]

_logger = logging.getLogger("fastdit")
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING}


@_capi.LOG_FN
def _log(level, message, _user):
    _logger.log(_LOG_LEVELS.get(level, logging.INFO), message.decode("utf-8", "replace"))


_capi.lib.fastdit_set_log_callback(_log, None)


class InputSpec:
    """A tensor input of a model's forward."""

    KINDS = ("floating", "integer", "bool", "number")
    ROLES = ("other", "latents", "timestep", "text_embeddings")

    def __init__(self, info):
        self.name = _capi.text(info.name)
        self.required = bool(info.required)
        self.kind = self.KINDS[info.element_kind]
        self.role = self.ROLES[info.role]
        self.ranks = tuple(info.ranks[i] for i in range(info.num_ranks))

    def __repr__(self):
        return f"InputSpec({self.name!r}, kind={self.kind}, ranks={self.ranks}, required={self.required})"


class ArgSpec:
    """A non-tensor argument of a model's forward (bool, int, float, int list or float list)."""

    def __init__(self, info):
        self.name = _capi.text(info.name)
        self.type = _capi.ARG_TYPE_NAMES[info.type]
        self.required = bool(info.required)
        self.default = json.loads(info.default_json) if info.default_json is not None else None

    def __repr__(self):
        return f"ArgSpec({self.name!r}, type={self.type}, default={self.default!r})"


def _value_arg(name, value, keep):
    """A Python scalar or list (numpy and torch ones too) as a fastdit_value_arg."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    arg = _capi.ValueArg(name=name.encode())
    if isinstance(value, bool):
        arg.type, arg.int_value = _capi.ARG_BOOL, value
    elif isinstance(value, int):
        arg.type, arg.int_value = _capi.ARG_INT, value
    elif isinstance(value, float):
        arg.type, arg.float_value = _capi.ARG_FLOAT, value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        arg.list_length = len(value)
        if all(isinstance(v, int) for v in value):
            arg.type, values = _capi.ARG_INT_LIST, (ctypes.c_int64 * len(value))(*value)
            arg.int_list = values
        else:
            arg.type, values = _capi.ARG_FLOAT_LIST, (ctypes.c_double * len(value))(*value)
            arg.float_list = values
        keep.append(values)
    else:
        raise FastditError(f"argument '{name}': {type(value).__name__} {value!r} is not a bool, int, float or a "
                           "list of numbers")
    return arg


def _is_array(value):
    return hasattr(value, "__array_interface__") or hasattr(value, "__dlpack__")


class Model:
    """A loaded transformer. Call it with the official forward's keyword arguments."""

    def __init__(self, handle):
        self._handle = handle
        lib = _capi.lib
        self.class_name = _capi.text(lib.fastdit_model_class_name(handle))
        self.dir = _capi.text(lib.fastdit_model_dir(handle))  # the transformer folder read
        self.device = _capi.text(lib.fastdit_model_device(handle))
        self.dtype = _capi.text(lib.fastdit_model_dtype(handle))
        self.inputs, self.args = {}, {}
        for i in range(lib.fastdit_model_num_inputs(handle)):
            info = _capi.InputInfo()
            _capi.check(lib.fastdit_model_input(handle, i, ctypes.byref(info)))
            self.inputs[_capi.text(info.name)] = InputSpec(info)
        for i in range(lib.fastdit_model_num_args(handle)):
            info = _capi.ArgInfo()
            _capi.check(lib.fastdit_model_arg(handle, i, ctypes.byref(info)))
            self.args[_capi.text(info.name)] = ArgSpec(info)
        self.outputs = [_capi.text(lib.fastdit_model_output_name(handle, i))
                        for i in range(lib.fastdit_model_num_outputs(handle))]

    def __repr__(self):
        return f"<fastdit.Model {self.class_name} on {self.device} as {self.dtype} from {self.dir}>"

    def __del__(self):
        self.close()

    def close(self):
        """Frees the model's memory now (it is freed when the object goes, too)."""
        if getattr(self, "_handle", None):
            _capi.lib.fastdit_model_free(self._handle)
            self._handle = None

    def takes(self, name):
        """Whether a forward takes keyword argument `name`: an input, an argument, or one of
        the reference's that change nothing here (return_dict, attention_kwargs), dropped."""
        return name in self.inputs or name in self.args or bool(_capi.lib.fastdit_ignored_argument(name.encode()))

    def __call__(self, **kwargs):
        """One forward. Arrays go to the tensor inputs, Python values to the arguments; None
        means absent (as the reference's None). Returns {head: array}."""
        if not self._handle:
            raise FastditError(f"{self.class_name}: the model was closed")
        keep, tensors, values = [], [], []
        for name, value in kwargs.items():
            if value is None or (_capi.lib.fastdit_ignored_argument(name.encode()) and name not in self.inputs):
                continue
            if name in self.inputs or (name not in self.args and _is_array(value)):
                tensors.append((name, _arrays.Lent(value, f"{self.class_name}: input '{name}'")))
            else:
                values.append(_value_arg(name, value, keep))
        return self._forward(tensors, values, keep)

    def _forward(self, tensors, values, keep):
        lib = _capi.lib
        torch_in = any(lent.device is not None for _, lent in tensors)
        cuda = [lent.device for _, lent in tensors if lent.on_cuda]
        options = _capi.ForwardOptions()
        lib.fastdit_forward_options_init(ctypes.byref(options))
        options.outputs_float32 = 0 if torch_in else 1  # numpy has no bfloat16
        options.outputs_on_host = 0 if cuda else 1
        if cuda:
            import torch
            options.cuda_stream = torch.cuda.current_stream(cuda[0]).cuda_stream
        tensor_args = (_capi.TensorArg * max(len(tensors), 1))(
            *[_capi.TensorArg(name.encode(), lent.pointer) for name, lent in tensors])
        value_args = (_capi.ValueArg * max(len(values), 1))(*values)
        outputs = (_capi.TensorOut * len(self.outputs))()
        count = ctypes.c_int64()
        _capi.check(lib.fastdit_model_forward(self._handle, tensor_args, len(tensors), value_args, len(values),
                                              ctypes.byref(options), outputs, len(self.outputs),
                                              ctypes.byref(count)))
        convert = _arrays.to_torch if torch_in else _arrays.to_numpy
        return {_capi.text(outputs[i].name): convert(outputs[i].tensor) for i in range(count.value)}


def load(path, device="cpu", dtype="float32", fuse_projections=None, attention_backend=None, progress=None,
         precision="bf16"):
    """Loads a transformer folder (config.json + safetensors) or a pipeline folder holding
    transformer/. dtype: "float32", "bfloat16" or "float16" (parameters the reference keeps
    in float32 stay float32). fuse_projections: None (on for CUDA), True, False.
    attention_backend: None (the fastest that serves), "cudnn", "flash" or "reference"
    (process-wide). progress: called as progress(stage, done, total) while weights load.
    precision: "bf16", or "fp8" for FP8 e4m3 GEMMs in the transformer blocks' attention and
    FFN linears (CUDA with dtype "bfloat16")."""
    options = _capi.LoadOptions()
    _capi.lib.fastdit_load_options_init(ctypes.byref(options))
    options.device = str(device).encode()
    options.dtype = str(dtype).removeprefix("torch.").encode()
    options.fuse_projections = -1 if fuse_projections is None else int(bool(fuse_projections))
    options.attention_backend = attention_backend.encode() if attention_backend else None
    options.precision = str(precision).encode()
    if progress is not None:
        options.progress = _capi.PROGRESS_FN(lambda stage, done, total, _user: progress(stage.decode(), done, total))
    handle = ctypes.c_void_p()
    _capi.check(_capi.lib.fastdit_model_load(str(path).encode(), ctypes.byref(options), ctypes.byref(handle)))
    return Model(handle)


def load_file(path):
    """The tensors of a .safetensors file as {name: numpy array}, read-only views of the
    mapped file (copy one to write into it). bfloat16 and float8 tensors, which numpy lacks,
    come widened to float32 (exactly)."""
    lib = _capi.lib
    handle = ctypes.c_void_p()
    _capi.check(lib.fastdit_safetensors_open(str(path).encode(), ctypes.byref(handle)))
    try:
        tensors = {}
        for i in range(lib.fastdit_safetensors_count(handle)):
            name = ctypes.c_char_p()
            managed = ctypes.POINTER(_capi.DLManagedTensor)()
            _capi.check(lib.fastdit_safetensors_get(handle, i, 1, ctypes.byref(name), ctypes.byref(managed)))
            tensors[_capi.text(name.value)] = _arrays.to_numpy(managed, readonly=True)
        return tensors
    finally:
        lib.fastdit_safetensors_close(handle)


def save_file(tensors, path, metadata=None):
    """Writes {name: array} (numpy arrays, torch tensors, anything numpy.asarray takes) and
    optional {str: str} metadata to a .safetensors file, atomically."""
    if not isinstance(tensors, dict):
        raise FastditError(f"save_file: expected a dict of name: array, got {type(tensors).__name__}")
    lent = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise FastditError(f"save_file: tensor name {name!r} is not a str")
        if _arrays.is_torch(value):
            value = value.detach().cpu()
        lent.append((name, _arrays.Lent(value, f"save_file: tensor '{name}'")))
    metadata = metadata or {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise FastditError(f"save_file: metadata must map str to str, got {key!r}: {value!r}")
    args = (_capi.TensorArg * max(len(lent), 1))(*[_capi.TensorArg(n.encode(), t.pointer) for n, t in lent])
    keys = (ctypes.c_char_p * max(len(metadata), 1))(*[k.encode() for k in metadata])
    values = (ctypes.c_char_p * max(len(metadata), 1))(*[v.encode() for v in metadata.values()])
    _capi.check(_capi.lib.fastdit_safetensors_write(str(path).encode(), args, len(lent), keys, values,
                                                    len(metadata)))

