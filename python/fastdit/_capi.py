"""ctypes declarations of include/fastdit.h and the library that holds them.

The package reaches the engine through its C API only, so it links nothing of torch's
C++ ABI: the same library serves any torch that speaks DLPack, or numpy alone.
"""

import ctypes
import os
import pathlib


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    pass


DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))),
]

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST = 1, 2, 3

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)


class LoadOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("device", ctypes.c_char_p),
        ("dtype", ctypes.c_char_p),
        ("fuse_projections", ctypes.c_int32),
        ("attention_backend", ctypes.c_char_p),
        ("progress", PROGRESS_FN),
        ("progress_user_data", ctypes.c_void_p),
        ("precision", ctypes.c_char_p),
    ]


class InputInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("required", ctypes.c_int32),
        ("element_kind", ctypes.c_int32),
        ("role", ctypes.c_int32),
        ("num_ranks", ctypes.c_int32),
        ("ranks", ctypes.POINTER(ctypes.c_int64)),
    ]


class ArgInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("type", ctypes.c_int32),
        ("required", ctypes.c_int32),
        ("default_json", ctypes.c_char_p),
    ]


class TensorArg(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("tensor", ctypes.POINTER(DLTensor))]


class TensorOut(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("tensor", ctypes.POINTER(DLManagedTensor))]


ARG_BOOL, ARG_INT, ARG_FLOAT, ARG_INT_LIST, ARG_FLOAT_LIST = range(5)
ARG_TYPE_NAMES = ("bool", "int", "float", "int list", "float list")


class ValueArg(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("type", ctypes.c_int32),
        ("int_value", ctypes.c_int64),
        ("float_value", ctypes.c_double),
        ("int_list", ctypes.POINTER(ctypes.c_int64)),
        ("float_list", ctypes.POINTER(ctypes.c_double)),
        ("list_length", ctypes.c_int64),
    ]


class ForwardOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("cuda_stream", ctypes.c_void_p),
        ("outputs_on_host", ctypes.c_int32),
        ("outputs_float32", ctypes.c_int32),
    ]


API_VERSION = 1
_STATUS_NAMES = {1: "invalid argument", 2: "engine error", 3: "out of memory", 4: "internal error"}


class FastditError(RuntimeError):
    """An error the engine reported; the message names what was wrong and where."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status  # the C API's fastdit_status; None for checks made in Python


def _candidates():
    if os.environ.get("FASTDIT_LIBRARY"):
        return [pathlib.Path(os.environ["FASTDIT_LIBRARY"])]
    package = pathlib.Path(__file__).resolve().parent
    # Installed beside the package, or the source tree's build folder (python/fastdit -> ../../build).
    return [package / "libfastdit.so", package.parent.parent / "build" / "libfastdit.so"]


def _open():
    candidates = _candidates()
    for path in candidates:
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            break
    else:
        raise ImportError("fastdit: libfastdit.so not found (looked at " + ", ".join(map(str, candidates)) +
                          "); build it (bash scripts/build.sh) or set FASTDIT_LIBRARY")
    if lib.fastdit_api_version() < API_VERSION:
        raise ImportError(f"fastdit: {path} has C API version {lib.fastdit_api_version()}, this package needs "
                          f"{API_VERSION}")
    return lib, path


def _declare(lib):
    c = ctypes
    P = c.POINTER
    model, file = c.c_void_p, c.c_void_p
    signatures = {
        "fastdit_api_version": (c.c_int32, []),
        "fastdit_last_error": (c.c_char_p, []),
        "fastdit_set_log_callback": (None, [LOG_FN, c.c_void_p]),
        "fastdit_load_options_init": (None, [P(LoadOptions)]),
        "fastdit_forward_options_init": (None, [P(ForwardOptions)]),
        "fastdit_model_load": (c.c_int, [c.c_char_p, P(LoadOptions), P(model)]),
        "fastdit_model_free": (None, [model]),
        "fastdit_model_class_name": (c.c_char_p, [model]),
        "fastdit_model_dir": (c.c_char_p, [model]),
        "fastdit_model_device": (c.c_char_p, [model]),
        "fastdit_model_dtype": (c.c_char_p, [model]),
        "fastdit_model_num_inputs": (c.c_int64, [model]),
        "fastdit_model_input": (c.c_int, [model, c.c_int64, P(InputInfo)]),
        "fastdit_model_num_args": (c.c_int64, [model]),
        "fastdit_model_arg": (c.c_int, [model, c.c_int64, P(ArgInfo)]),
        "fastdit_model_num_outputs": (c.c_int64, [model]),
        "fastdit_model_output_name": (c.c_char_p, [model, c.c_int64]),
        "fastdit_ignored_argument": (c.c_int32, [c.c_char_p]),
        "fastdit_model_forward": (c.c_int, [model, P(TensorArg), c.c_int64, P(ValueArg), c.c_int64,
                                            P(ForwardOptions), P(TensorOut), c.c_int64, P(c.c_int64)]),
        "fastdit_safetensors_open": (c.c_int, [c.c_char_p, P(file)]),
        "fastdit_safetensors_close": (None, [file]),
        "fastdit_safetensors_count": (c.c_int64, [file]),
        "fastdit_safetensors_get": (c.c_int, [file, c.c_int64, c.c_int32, P(c.c_char_p), P(P(DLManagedTensor))]),
        "fastdit_safetensors_write": (c.c_int, [c.c_char_p, P(TensorArg), c.c_int64, P(c.c_char_p), P(c.c_char_p),
                                                c.c_int64]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


lib, library_path = _open()
_declare(lib)


def check(status):
    """Raises the engine's message for a failed call."""
    if status != 0:
        message = lib.fastdit_last_error().decode("utf-8", "replace")
        raise FastditError(message or _STATUS_NAMES.get(status, f"status {status}"), status)


def text(value):
    return value.decode("utf-8") if value is not None else None
