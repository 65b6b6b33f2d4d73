"""Read and write PyTorch ``torch.save`` files of tensors (``.pth`` / ``.pt``) without torch.

Such a file is a pickle whose tensors point at raw storages by *persistent ids*. Two layouts:

- zip (PyTorch >= 1.6): ``<name>/data.pkl`` (pickle protocol 2; persistent ids ``('storage',
  storage_type, key, location, numel)``) and raw little-endian storages ``<name>/data/<key>``;
- legacy (PyTorch < 1.6, e.g. the pretrained pix2pix / CycleGAN models, or
  ``_use_new_zipfile_serialization=False``): pickles of the magic number, protocol version,
  system info, the object (persistent ids as above plus ``view_metadata``) and the storage keys,
  then each storage as an int64 element count and its bytes.

A restricted unpickler maps only ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor``, the
storage types and ``collections.OrderedDict`` to numpy rebuilders and refuses any other global,
so reading a file cannot run code. Storages: float32/64/16, bfloat16 (read exactly as float32),
int64/32/16/8, uint8, bool. Paths go through ``etils.epath`` (local or ``gs://``).
:func:`write_pth` writes the zip format, which ``torch.load`` reads (``weights_only`` too).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, ClassVar

import numpy as np
from etils import epath

__all__ = ["PthFormatError", "read_pth", "write_pth"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

# storage type name -> numpy dtype of the stored bytes
_STORAGES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # converted to float32 when a tensor is built
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthFormatError(ValueError):
    """The file is not a ``torch.save`` file of tensors this reader accepts."""


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` inside a pickle."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGES[name]


class _Storage:
    """A storage's bytes as a 1-D numpy array of its stored dtype."""

    def __init__(self, kind: _StorageType, data: np.ndarray):
        self.kind = kind
        self.data = data


def _tensor(storage: Any, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    if not isinstance(storage, _Storage):
        raise PthFormatError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(offset)
    if len(size) != len(stride) or min(size, default=1) < 0 or min(stride, default=0) < 0:
        raise PthFormatError(f"bad tensor geometry: size {size}, stride {stride}")
    data = storage.data
    if 0 in size:
        out = np.zeros(size, data.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if offset < 0 or last >= data.size:
            raise PthFormatError(f"tensor of size {size}, stride {stride}, offset {offset} "
                                 f"reaches past its storage of {data.size} elements")
        item = data.dtype.itemsize
        out = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        ).copy()
    if storage.kind.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


class _LazyTensor:
    """``_rebuild_tensor_v2`` / ``_rebuild_tensor`` stand-in (extra arguments ignored): legacy
    files store the bytes after the pickle, so :func:`_materialize` builds the arrays later."""

    def __init__(self, storage: Any, offset: int, size: tuple, stride: tuple, *_: Any):
        self.args = (storage, offset, size, stride)


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return _tensor(*obj.args)
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _materialize(v)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _LazyTensor,
    ("torch._utils", "_rebuild_tensor"): _LazyTensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
}


class _Unpickler(pickle.Unpickler):
    """Only tensors, storages and plain containers; any other global is refused."""

    def __init__(self, file: BinaryIO, load_storage):
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise PthFormatError(
            f"refusing to load {module}.{name}: only tensors (a state_dict) can be read "
            "without torch; save the model's state_dict(), not the module object")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise PthFormatError(f"unsupported persistent id {pid!r:.80}")
        return self._load_storage(pid[1:])


def _read_zip(path: str, file: BinaryIO) -> Any:
    with zipfile.ZipFile(file) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise PthFormatError(f"{path}: a zip without <name>/data.pkl is not a torch.save "
                                 "file (a TorchScript archive? save the state_dict instead)")
        root = pkl[0][: -len("data.pkl")]
        order = root + "byteorder"
        if order in names and z.read(order).strip() not in (b"little", b""):
            raise PthFormatError(f"{path}: big-endian storages are not supported")
        cache: dict[str, _Storage] = {}

        def load_storage(args: tuple) -> _Storage:
            kind, key, _location, numel = args[:4]
            key = key.decode() if isinstance(key, bytes) else str(key)
            if not isinstance(kind, _StorageType):
                raise PthFormatError(f"{path}: storage {key} has no storage type")
            if key not in cache:
                entry = f"{root}data/{key}"
                if entry not in names:
                    raise PthFormatError(f"{path}: storage record {entry} is missing")
                raw = z.read(entry)
                data = np.frombuffer(raw, kind.dtype, count=len(raw) // kind.dtype.itemsize)
                if data.size < int(numel):
                    raise PthFormatError(f"{path}: storage {key} holds {data.size} elements, "
                                         f"{numel} expected")
                cache[key] = _Storage(kind, data)
            return cache[key]

        with z.open(pkl[0]) as f:
            return _Unpickler(io.BufferedReader(f), load_storage).load()


def _read_legacy(path: str, f: BinaryIO) -> Any:
    try:
        magic = _Unpickler(f, None).load()  # a plain int; no globals allowed
    except Exception as e:
        raise PthFormatError(f"{path} is neither a zip nor a legacy torch.save file") from e
    if magic != _MAGIC_NUMBER:
        raise PthFormatError(f"{path} is not a torch.save file (no PyTorch magic number)")
    _Unpickler(f, None).load()  # protocol version: a plain int
    _Unpickler(f, None).load()  # sys info: a dict of plain values
    storages: dict[str, tuple[_StorageType, int]] = {}
    views: list[tuple[_Storage, str, int, int]] = []
    made: dict[str, _Storage] = {}

    def load_storage(args: tuple) -> _Storage:
        kind, key, _location, numel, view = args
        key = str(key)
        if not isinstance(kind, _StorageType):
            raise PthFormatError(f"{path}: storage {key} has no storage type")
        storages.setdefault(key, (kind, int(numel)))
        if view is None:
            return made.setdefault(key, _Storage(kind, np.empty(0, kind.dtype)))
        view_key, offset, size = view
        s = made.setdefault(str(view_key), _Storage(kind, np.empty(0, kind.dtype)))
        views.append((s, key, int(offset), int(size)))
        return s

    obj = _Unpickler(f, load_storage).load()
    keys = _Unpickler(f, None).load()
    for key in keys:
        key = str(key)
        if key not in storages:
            raise PthFormatError(f"{path}: storage {key} listed but never referenced")
        kind, numel = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        nbytes = count * kind.dtype.itemsize
        raw = f.read(nbytes)
        if count != numel or len(raw) != nbytes:
            raise PthFormatError(f"{path}: storage {key} is truncated or inconsistent")
        made.setdefault(key, _Storage(kind, np.empty(0, kind.dtype))).data = np.frombuffer(
            raw, kind.dtype)
    for view, key, offset, size in views:
        view.data = made[key].data[offset: offset + size]
    return obj


def _state_dict_of(obj: Any, path: str) -> dict[str, np.ndarray]:
    """The flat {name: array} of a loaded object: a state_dict, or a checkpoint dict holding
    one under ``state_dict``, ``model``, ``model_state_dict``, ``netG`` or ``generator``."""
    if isinstance(obj, Mapping):
        arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if arrays and len(arrays) == len(obj):
            return {str(k): v for k, v in obj.items()}
        for key in ("state_dict", "model", "model_state_dict", "netG", "generator"):
            if isinstance(obj.get(key), Mapping):
                return _state_dict_of(obj[key], path)
    raise PthFormatError(
        f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensor names to "
        "tensors): save it with torch.save(net.state_dict(), path)")


def read_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` file as ``{name: numpy array}``, without torch.

    Accepts a state_dict or a checkpoint dict holding one (``state_dict``, ``model``, ...), zip or
    legacy; arrays keep the stored dtype (bfloat16 as float32) and shape. Raises
    FileNotFoundError, or :class:`PthFormatError` (naming what the file holds instead).
    """
    path = os.fspath(path)
    p = epath.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such PyTorch checkpoint: {path}")
    with p.open("rb") as f:
        file = f if f.seekable() else io.BytesIO(f.read())
        is_zip = zipfile.is_zipfile(file)
        file.seek(0)
        obj = _read_zip(path, file) if is_zip else _read_legacy(path, file)
    return _state_dict_of(_materialize(obj), path)


# ----------------------------------------------------------------------------------------------
# Writing (the zip format, as torch.save does)


class _Global:
    """A module-level name pickled by reference (GLOBAL opcode) without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce functions be callable
        raise TypeError(f"{self.module}.{self.name} is a pickle stand-in")


class _TensorRef:
    def __init__(self, key: str, array: np.ndarray, storage: str):
        self.key, self.array, self.storage = key, array, storage

    def __reduce__(self):
        shape = tuple(int(d) for d in self.array.shape)
        stride = tuple(int(s) // self.array.itemsize for s in self.array.strides)
        pid = _PersistentStorage(self.key, self.storage, self.array.size)
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (pid, 0, shape, stride, False, collections.OrderedDict()))


class _PersistentStorage:
    def __init__(self, key: str, storage: str, numel: int):
        self.key, self.storage, self.numel = key, storage, numel


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is extensible
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _PersistentStorage):
            return ("storage", _Global("torch", obj.storage), obj.key, "cpu", obj.numel)
        return None


_WRITE_DTYPES = {
    np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage", np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage", np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


def write_pth(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> None:
    """Write ``{name: array}`` as ``torch.save(state_dict)`` would (zip format), without torch;
    ``torch.load`` returns an OrderedDict of tensors in the same order. Dtypes: float32/64/16,
    int64/32/16/8, uint8, bool (after ``np.asarray``, so jax arrays work); scalars become 0-d.
    """
    path = os.fspath(path)
    root = os.path.splitext(os.path.basename(path))[0] or "archive"
    arrays: list[tuple[str, np.ndarray, str]] = []
    for name, value in state_dict.items():
        a = np.asarray(value)
        a = a.copy() if not a.flags.c_contiguous else a
        if a.dtype not in _WRITE_DTYPES:
            raise TypeError(f"{name}: cannot write dtype {a.dtype} (use float32, int64, ...)")
        arrays.append((str(name), a.astype(a.dtype.newbyteorder("<")), _WRITE_DTYPES[a.dtype]))
    obj = collections.OrderedDict(
        (name, _TensorRef(str(i), a, kind)) for i, (name, a, kind) in enumerate(arrays))
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{root}/data.pkl", buf.getvalue())
        z.writestr(f"{root}/byteorder", "little")
        for i, (_, a, _) in enumerate(arrays):
            z.writestr(f"{root}/data/{i}", a.tobytes())
        z.writestr(f"{root}/version", "3\n")
    epath.Path(path).write_bytes(out.getvalue())
