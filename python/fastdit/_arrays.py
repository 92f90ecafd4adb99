"""Arrays across the C API: numpy arrays and torch tensors lent as DLTensors (no copy), and
the DLManagedTensors the engine hands back as numpy arrays or torch tensors (no copy).

torch is imported only when the caller passes a torch tensor, so numpy alone is enough.
"""

import ctypes
import sys

import numpy as np

from . import _capi
from ._capi import DLManagedTensor, DLTensor, FastditError

# DLPack (code, bits) of each numpy dtype; 6 is DLPack 0.8's bool code.
_NUMPY_CODES = {
    np.dtype(np.float32): (2, 32), np.dtype(np.float64): (2, 64), np.dtype(np.float16): (2, 16),
    np.dtype(np.int8): (0, 8), np.dtype(np.int16): (0, 16), np.dtype(np.int32): (0, 32), np.dtype(np.int64): (0, 64),
    np.dtype(np.uint8): (1, 8), np.dtype(np.uint16): (1, 16), np.dtype(np.uint32): (1, 32),
    np.dtype(np.uint64): (1, 64), np.dtype(np.bool_): (6, 8),
}
_CODE_TO_NUMPY = {code: dtype for dtype, code in _NUMPY_CODES.items()}

# The destructor receives the dying capsule: as a raw pointer, never a new reference to it.
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _python_api(name, restype, *argtypes):
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ctypes.pythonapi))


_capsule_pointer = _python_api("PyCapsule_GetPointer", ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)
_capsule_new = _python_api("PyCapsule_New", ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, _CAPSULE_DESTRUCTOR)
_dying_capsule_is_valid = _python_api("PyCapsule_IsValid", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)
_dying_capsule_pointer = _python_api("PyCapsule_GetPointer", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)


def release(managed):
    """Calls a DLManagedTensor's deleter (the engine's)."""
    managed.contents.deleter(managed)


@_CAPSULE_DESTRUCTOR
def _release_unconsumed(capsule):
    # A consumer renames the capsule "used_dltensor" and owns the tensor; one never consumed
    # still holds it.
    if _dying_capsule_is_valid(capsule, b"dltensor"):
        release(ctypes.cast(_dying_capsule_pointer(capsule, b"dltensor"), ctypes.POINTER(DLManagedTensor)))


def is_torch(value):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


class Lent:
    """A caller's array as a DLTensor the engine reads during one call; keeps what it points
    into alive. device: the torch tensor's device, None for numpy."""

    def __init__(self, value, what):
        self.keep = value
        if is_torch(value):
            import torch.utils.dlpack
            tensor = value.detach()
            self.device = tensor.device
            self.keep = torch.utils.dlpack.to_dlpack(tensor)  # the capsule's destructor frees it
            self.pointer = ctypes.cast(_capsule_pointer(self.keep, b"dltensor"), ctypes.POINTER(DLTensor))
            return
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if array.dtype not in _NUMPY_CODES:
            raise FastditError(f"{what}: numpy dtype {array.dtype} has no fastdit dtype")
        if any(s < 0 or s % array.itemsize for s in array.strides):
            array = np.ascontiguousarray(array)
        self.device = None
        self.keep = array
        code, bits = _NUMPY_CODES[array.dtype]
        self.shape = (ctypes.c_int64 * array.ndim)(*array.shape)
        self.strides = (ctypes.c_int64 * array.ndim)(*(s // array.itemsize for s in array.strides))
        self.tensor = DLTensor(array.ctypes.data, _capi.DLDevice(_capi.KDL_CPU, 0), array.ndim,
                               _capi.DLDataType(code, bits, 1), self.shape, self.strides, 0)
        self.pointer = ctypes.pointer(self.tensor)

    @property
    def on_cuda(self):
        return self.device is not None and self.device.type == "cuda"


class _HostArray:
    """Presents an engine-owned CPU tensor to numpy (__array_interface__); the deleter runs
    when the last array viewing it goes."""

    def __init__(self, managed, readonly):
        self.managed = managed
        t = managed.contents.dl_tensor
        key = (t.dtype.code, t.dtype.bits)
        if key not in _CODE_TO_NUMPY:
            release(managed)
            raise FastditError(f"DLPack dtype code {t.dtype.code} with {t.dtype.bits} bits has no numpy dtype")
        dtype = _CODE_TO_NUMPY[key]
        shape = tuple(t.shape[i] for i in range(t.ndim))
        strides = tuple(t.strides[i] * dtype.itemsize for i in range(t.ndim))
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str, "strides": strides,
                                    "data": (t.data or 0, readonly), "version": 3}

    def __del__(self):
        release(self.managed)


def to_numpy(managed, readonly=False):
    return np.asarray(_HostArray(managed, readonly))


def to_torch(managed):
    import torch.utils.dlpack
    capsule = _capsule_new(ctypes.cast(managed, ctypes.c_void_p), b"dltensor", _release_unconsumed)
    return torch.utils.dlpack.from_dlpack(capsule)
