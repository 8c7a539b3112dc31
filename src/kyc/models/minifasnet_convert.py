"""Convert MiniFASNet PyTorch state dicts to ONNX without PyTorch.

The passive anti-spoofing pair published by minivision-ai (``2.7_80x80_MiniFASNetV2.pth`` and
``4_0_0_80x80_MiniFASNetV1SE.pth``, Apache-2.0) are PyTorch state dicts. This module reads
them with the standard library and numpy only, works out the network from the tensor names
and shapes, and writes an ONNX graph that onnxruntime runs:

* input ``"input"``: ``(N, 3, 80, 80)`` float32, BGR, raw 0..255 (no scaling), NCHW;
* output ``"logits"``: ``(N, 3)`` float32 logits; the caller applies softmax, class 1 is live.

Two serialisations are understood:

* the *legacy* format (what these two files use): a magic-number pickle, a protocol-version
  pickle, a system-info pickle, the state-dict pickle whose tensors refer to storages by key,
  a pickled list of storage keys, then each storage as an 8-byte little-endian element count
  followed by its raw little-endian elements;
* the *zip* format written by ``torch.save`` since PyTorch 1.6: ``<prefix>/data.pkl`` plus one
  raw member ``<prefix>/data/<key>`` per storage.

Pickles are read with a restricted unpickler that resolves only the handful of names a state
dict needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` and the typed storage classes) to small local stand-ins,
so no code from the file is ever executed.

Batch norm is folded into the preceding convolution or linear layer (eval mode, eps 1e-5),
dropout is the identity at inference, and the FT-generator branch used only for training
(``FTGenerator.*`` keys) is ignored. The output bytes depend only on the weights, so the same
state dict gives the same file every run and in either serialisation.

>>> from kyc.models.minifasnet_convert import convert_minifasnet_pth
>>> convert_minifasnet_pth("2.7_80x80_MiniFASNetV2.pth", "2.7_80x80_MiniFASNetV2.onnx")
... # doctest: +SKIP
PosixPath('2.7_80x80_MiniFASNetV2.onnx')
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from kyc.errors import ConversionError

__all__ = [
    "BN_EPS",
    "INPUT_NAME",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "build_minifasnet_onnx",
    "convert_minifasnet_pth",
    "read_torch_state_dict",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SIZE = 80
NUM_CLASSES = 3
BN_EPS = 1e-5
"""PyTorch's default ``BatchNorm`` epsilon; MiniFASNet never changes it (not stored)."""

_CONVERTER_ID = "kyc.minifasnet_convert/1"
_OPSET = 13
_IR_VERSION = 8  # readable by every onnxruntime the project supports (>= 1.17)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_PICKLE_BYTES = 64 * 1024 * 1024  # a state-dict pickle is kilobytes; refuse zip bombs

# torch storage class name -> little-endian numpy dtype of its elements
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

F64 = npt.NDArray[np.float64]


class _Malformed(Exception):
    """Internal: the file's content is not what a state dict looks like (message says why)."""


# --- restricted unpickling ------------------------------------------------------------------


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class named in a pickle."""

    name: str
    dtype: np.dtype[Any]


class _StorageRef:
    """A storage referenced by key; its elements are attached once they are read."""

    def __init__(self, key: str, dtype: np.dtype[Any], numel: int) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray[Any, Any] | None = None


class _TensorRef:
    """A tensor as ``_rebuild_tensor_v2`` describes it: a strided view of a storage."""

    def __init__(
        self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    def materialise(self) -> np.ndarray[Any, Any]:
        """Return a fresh C-contiguous array with this tensor's elements."""
        data = self.storage.data
        if data is None:
            raise _Malformed(f"storage {self.storage.key!r} is referenced but never stored")
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=data.dtype)
        if int(np.prod(self.size, dtype=np.float64)) > data.size:
            # a state-dict tensor never has more elements than its storage (no expand views)
            raise _Malformed(
                f"tensor of size {list(self.size)} is larger than its storage {self.storage.key!r}"
            )
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= data.size:
            raise _Malformed(
                f"tensor of size {list(self.size)} at offset {self.offset} overruns storage "
                f"{self.storage.key!r} of {data.size} elements"
            )
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=data.dtype.newbyteorder("="), order="C")


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise _Malformed(f"tensor {what} is not a tuple of non-negative ints: {value!r}")
    return tuple(int(v) for v in value)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, runs nothing."""
    if not isinstance(storage, _StorageRef):
        raise _Malformed("_rebuild_tensor_v2 called without a storage reference")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
        raise _Malformed(f"tensor storage offset is not an int: {storage_offset!r}")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise _Malformed(f"tensor size {shape} and stride {strides} differ in length")
    return _TensorRef(storage, storage_offset, shape, strides)


def _rebuild_parameter(data: object, requires_grad: object, backward_hooks: object) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise _Malformed("_rebuild_parameter called without a tensor")
    return data


def _allowed_globals() -> dict[tuple[str, str], object]:
    names: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        names[("torch", name)] = _StorageType(name, np.dtype(dtype))
    return names


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows a few torch names and refuses every other global."""

    def __init__(self, file: IO[bytes], storages: dict[str, _StorageRef]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Malformed(
                f"pickle refers to {module}.{name}, which a state dict never needs"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise _Malformed(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise _Malformed(f"unsupported persistent id kind {kind!r}")
        if len(pid) not in (5, 6):
            raise _Malformed(f"storage reference has {len(pid)} fields, expected 5 or 6")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise _Malformed("storage views (view_metadata) are not supported")
        if not isinstance(storage_type, _StorageType):
            raise _Malformed(f"storage type {storage_type!r} is not a torch storage class")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
            raise _Malformed(f"storage key {key!r} is not a plain name")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise _Malformed(f"storage {key!r} has an invalid element count {numel!r}")
        ref = self._storages.get(key)
        if ref is None:
            ref = _StorageRef(key, storage_type.dtype, numel)
            self._storages[key] = ref
        elif ref.dtype != storage_type.dtype or ref.numel != numel:
            raise _Malformed(f"storage {key!r} is declared twice with different types or sizes")
        return ref


def _unpickle(file: IO[bytes], storages: dict[str, _StorageRef] | None = None) -> Any:
    return _RestrictedUnpickler(file, {} if storages is None else storages).load()


def _read_legacy(f: IO[bytes]) -> tuple[Any, dict[str, _StorageRef]]:
    magic = _unpickle(f)
    if magic != _LEGACY_MAGIC:
        raise _Malformed("not a PyTorch file (the magic number is missing)")
    protocol = _unpickle(f)
    if protocol != _LEGACY_PROTOCOL:
        raise _Malformed(f"unsupported PyTorch legacy protocol version {protocol!r}")
    sys_info = _unpickle(f)
    if not isinstance(sys_info, dict):
        raise _Malformed("system-info record is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise _Malformed("big-endian PyTorch files are not supported")
    storages: dict[str, _StorageRef] = {}
    result = _unpickle(f, storages)
    keys = _unpickle(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Malformed("storage key list is not a list of strings")
    if len(set(keys)) != len(keys):
        raise _Malformed("storage key list repeats a key")
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise _Malformed(f"storage {key!r} is stored but no tensor refers to it")
        head = f.read(8)
        if len(head) != 8:
            raise _Malformed(f"file ends before storage {key!r}")
        count = int.from_bytes(head, "little")
        if count != ref.numel:
            raise _Malformed(f"storage {key!r} holds {count} elements, the pickle says {ref.numel}")
        nbytes = count * ref.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise _Malformed(f"file ends inside storage {key!r} ({len(raw)} of {nbytes} bytes)")
        ref.data = np.frombuffer(raw, dtype=ref.dtype)
    if f.read(1):
        raise _Malformed("unexpected bytes after the last storage")
    return result, storages


def _read_zip(zf: zipfile.ZipFile) -> tuple[Any, dict[str, _StorageRef]]:
    infos = {info.filename: info for info in zf.infolist()}
    pickles = [n for n in infos if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
        raise _Malformed(f"zip holds {len(pickles)} '<prefix>/data.pkl' members, expected 1")
    prefix = pickles[0][: -len("data.pkl")]
    order = infos.get(prefix + "byteorder")
    if order is not None and zf.read(order).strip() != b"little":
        raise _Malformed("big-endian PyTorch files are not supported")
    pkl = infos[pickles[0]]
    if pkl.file_size > _MAX_PICKLE_BYTES:
        raise _Malformed(f"data.pkl declares {pkl.file_size} bytes, more than a state dict needs")
    storages: dict[str, _StorageRef] = {}
    result = _unpickle(io.BytesIO(zf.read(pkl)), storages)
    for key, ref in storages.items():
        info = infos.get(f"{prefix}data/{key}")
        if info is None:
            raise _Malformed(f"storage {key!r} is missing from the zip")
        nbytes = ref.numel * ref.dtype.itemsize
        if info.file_size != nbytes:
            raise _Malformed(f"storage {key!r} has {info.file_size} bytes, expected {nbytes}")
        ref.data = np.frombuffer(zf.read(info), dtype=ref.dtype)
    return result, storages


def _state_dict_arrays(result: Any) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(result, Mapping):
        raise _Malformed(f"the pickle holds a {type(result).__name__}, not a state dict")
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in result.items():
        if not isinstance(name, str):
            raise _Malformed(f"state-dict key {name!r} is not a string")
        if not isinstance(value, _TensorRef):
            raise _Malformed(f"state-dict entry {name!r} is not a tensor")
        out[name] = value.materialise()
    return out


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray[Any, Any]]:
    """Read a PyTorch state dict (legacy or zip serialisation) into numpy arrays.

    ``path`` is a ``.pth`` file written by ``torch.save(model.state_dict(), ...)``. Returns
    ``{name: array}`` in the file's order; float tensors come back as float32 (or their own
    float type), batch-norm counters as int64. Nothing from the file is executed.

    Raises :class:`~kyc.errors.ConversionError` naming the file when it cannot be read, is not
    a PyTorch file, is truncated, or holds anything other than a flat mapping of tensors.
    """
    src = Path(path)
    try:
        if zipfile.is_zipfile(src):
            with zipfile.ZipFile(src) as zf:
                result, _ = _read_zip(zf)
        else:
            with open(src, "rb") as f:
                result, _ = _read_legacy(f)
        return _state_dict_arrays(result)
    except _Malformed as exc:
        raise ConversionError(f"{src}: {exc}") from None
    except OSError as exc:
        raise ConversionError(f"cannot read {src}: {exc.strerror or exc}") from exc
    except (pickle.UnpicklingError, EOFError) as exc:
        raise ConversionError(f"{src}: not a readable PyTorch pickle ({exc})") from exc
    except Exception as exc:  # malformed pickle opcodes surface as assorted errors
        raise ConversionError(
            f"{src}: malformed PyTorch file ({type(exc).__name__}: {exc})"
        ) from exc


# --- architecture ---------------------------------------------------------------------------


class _Weights:
    """The state dict with normalised names; remembers which entries the builder used."""

    def __init__(self, state: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self._arrays: dict[str, np.ndarray[Any, Any]] = {}
        for raw, arr in state.items():
            name = raw[len("module.") :] if raw.startswith("module.") else raw
            if name.startswith("FTGenerator."):
                continue  # training-only auxiliary branch (MultiFTNet), not in inference
            if name.startswith("model."):  # MultiFTNet wraps the classifier as .model
                name = name[len("model.") :]
            if name in self._arrays:
                raise _Malformed(f"state dict holds {name!r} twice")
            self._arrays[name] = arr
        self._used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._arrays

    def names(self) -> list[str]:
        return list(self._arrays)

    def get(self, name: str, shape: tuple[int | None, ...]) -> F64:
        """Float tensor ``name`` as float64, checked against ``shape`` (None = any)."""
        arr = self._arrays.get(name)
        if arr is None:
            raise _Malformed(f"missing tensor {name!r}")
        if arr.dtype.kind != "f":
            raise _Malformed(f"tensor {name!r} has dtype {arr.dtype}, expected float")
        if arr.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
        ):
            want_s = "x".join("?" if s is None else str(s) for s in shape)
            raise _Malformed(f"tensor {name!r} has shape {list(arr.shape)}, expected {want_s}")
        if not np.all(np.isfinite(arr)):
            raise _Malformed(f"tensor {name!r} holds NaN or infinite values")
        self._used.add(name)
        return arr.astype(np.float64)

    def mark_used(self, name: str) -> None:
        self._used.add(name)

    def unused(self) -> list[str]:
        return [n for n in self._arrays if n not in self._used]


def _batchnorm(w: _Weights, prefix: str, channels: int) -> tuple[F64, F64]:
    """Return ``(scale, shift)`` so that eval-mode BN(x) == scale * x + shift."""
    gamma = w.get(f"{prefix}.weight", (channels,))
    beta = w.get(f"{prefix}.bias", (channels,))
    mean = w.get(f"{prefix}.running_mean", (channels,))
    var = w.get(f"{prefix}.running_var", (channels,))
    if np.any(var < 0):
        raise _Malformed(f"tensor '{prefix}.running_var' has negative variances")
    counter = f"{prefix}.num_batches_tracked"
    if w.has(counter):
        w.mark_used(counter)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


@dataclass
class _Tensor:
    """A value in the graph being built: its name, channel count and spatial side."""

    name: str
    channels: int
    side: int


class _Graph:
    """Collects ONNX nodes and initializers in a fixed order (deterministic output)."""

    def __init__(self, weights: _Weights) -> None:
        import onnx

        self.onnx = onnx
        self.w = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        arr = np.ascontiguousarray(value, dtype="<f4")
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    # -- blocks ------------------------------------------------------------------------------

    def conv_bn(
        self,
        x: _Tensor,
        prefix: str,
        conv: str,
        bn: str,
        *,
        depthwise: bool,
        stride: int,
        pad: int | None,
        prelu: str | None,
    ) -> _Tensor:
        """Conv2d (no bias) + BatchNorm2d folded [+ PReLU]; ``pad=None`` keeps the size."""
        weight_name = f"{prefix}.{conv}.weight"
        w = self.w.get(weight_name, (None, None, None, None))
        out_c, in_per_group, kh, kw = (int(n) for n in w.shape)
        if depthwise:
            ok = in_per_group == 1 and out_c == x.channels
            kind = f"depthwise over {x.channels} channels"
        else:
            ok = in_per_group == x.channels
            kind = f"a dense convolution of {x.channels} input channels"
        if not ok or kh != kw or (pad is None and kh % 2 == 0):
            raise _Malformed(f"tensor {weight_name!r} of shape {list(w.shape)} is not {kind}")
        groups = x.channels if depthwise else 1
        padding = (kh - 1) // 2 if pad is None else pad
        side = (x.side + 2 * padding - kh) // stride + 1
        if side < 1:
            raise _Malformed(f"{weight_name!r}: kernel {kh} does not fit a {x.side}px map")
        scale, shift = _batchnorm(self.w, f"{prefix}.{bn}", out_c)
        base = f"{prefix}.{conv}"
        weight = self.const(f"{base}.w", w * scale[:, None, None, None])
        y = self.node(
            "Conv",
            [x.name, weight, self.const(f"{base}.b", shift)],
            base,
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            pads=[padding] * 4,
            group=groups,
        )
        if prelu is not None:
            slope = self.w.get(f"{prefix}.{prelu}.weight", (out_c,))
            y = self.node(
                "PRelu",
                [y, self.const(f"{prefix}.{prelu}.slope", slope.reshape(out_c, 1, 1))],
                f"{prefix}.{prelu}",
            )
        return _Tensor(y, out_c, side)

    def conv_block(
        self, x: _Tensor, prefix: str, *, depthwise: bool = False, stride: int = 1
    ) -> _Tensor:
        """``Conv_block``: conv -> bn -> prelu."""
        return self.conv_bn(
            x, prefix, "conv", "bn", depthwise=depthwise, stride=stride, pad=None, prelu="prelu"
        )

    def linear_block(
        self, x: _Tensor, prefix: str, *, depthwise: bool = False, pad: int | None = None
    ) -> _Tensor:
        """``Linear_block``: conv -> bn."""
        return self.conv_bn(
            x, prefix, "conv", "bn", depthwise=depthwise, stride=1, pad=pad, prelu=None
        )

    def squeeze_excite(self, x: _Tensor, prefix: str) -> _Tensor:
        """``SEModule``: x * sigmoid(bn2(fc2(relu(bn1(fc1(avgpool(x)))))))."""
        pool = self.node("GlobalAveragePool", [x.name], f"{prefix}.avg_pool")
        reduced = self.conv_bn(
            _Tensor(pool, x.channels, 1),
            prefix,
            "fc1",
            "bn1",
            depthwise=False,
            stride=1,
            pad=0,
            prelu=None,
        )
        relu = self.node("Relu", [reduced.name], f"{prefix}.relu")
        gate = self.conv_bn(
            _Tensor(relu, reduced.channels, 1),
            prefix,
            "fc2",
            "bn2",
            depthwise=False,
            stride=1,
            pad=0,
            prelu=None,
        )
        if gate.channels != x.channels or gate.side != 1:
            raise _Malformed(f"{prefix}.fc2 gives {gate.channels} channels, not {x.channels}")
        sig = self.node("Sigmoid", [gate.name], f"{prefix}.sigmoid")
        return _Tensor(self.node("Mul", [x.name, sig], f"{prefix}.scale"), x.channels, x.side)

    def depth_wise(self, x: _Tensor, prefix: str, *, stride: int, residual: bool) -> _Tensor:
        """``Depth_Wise`` / ``Depth_Wise_SE``: 1x1 expand, depthwise 3x3, 1x1 project."""
        y = self.conv_block(x, f"{prefix}.conv")
        y = self.conv_block(y, f"{prefix}.conv_dw", depthwise=True, stride=stride)
        y = self.linear_block(y, f"{prefix}.project")
        has_se = self.w.has(f"{prefix}.se_module.fc1.weight")
        if not residual:
            if has_se:
                raise _Malformed(f"{prefix} has a se_module, which only residual blocks use")
            return y
        if y.channels != x.channels or y.side != x.side:
            raise _Malformed(f"{prefix}: residual block maps {x.channels} channels to {y.channels}")
        if has_se:
            y = self.squeeze_excite(y, f"{prefix}.se_module")
        return _Tensor(self.node("Add", [x.name, y.name], f"{prefix}.add"), x.channels, x.side)

    def residual(self, x: _Tensor, prefix: str) -> _Tensor:
        """``Residual`` / ``ResidualSE``: blocks ``prefix.model.0 .. n-1``."""
        pattern = re.compile(re.escape(prefix) + r"\.model\.(\d+)\.")
        indices = sorted({int(m.group(1)) for n in self.w.names() if (m := pattern.match(n))})
        if not indices or indices != list(range(len(indices))):
            raise _Malformed(f"{prefix}: residual blocks are missing or not numbered 0..n-1")
        for i in indices:
            x = self.depth_wise(x, f"{prefix}.model.{i}", stride=1, residual=True)
        return x


def _architecture_name(w: _Weights, has_se: bool) -> str:
    expand = w.get("conv_4.model.0.conv.conv.weight", (None, None, 1, 1)).shape[0]
    family = {154: "MiniFASNetV1", 231: "MiniFASNetV2"}.get(int(expand), "MiniFASNet")
    return family + ("SE" if has_se else "")


def _weights_digest(state: Mapping[str, np.ndarray[Any, Any]]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        h.update(f"{name}|{arr.dtype.str}|{list(arr.shape)}\n".encode())
        h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def build_minifasnet_onnx(state: Mapping[str, np.ndarray[Any, Any]]) -> Any:
    """Build the ONNX model (an ``onnx.ModelProto``) for a MiniFASNet state dict.

    ``state`` maps tensor names (as in ``model.state_dict()``, optionally with a
    ``module.`` prefix) to numpy arrays, e.g. from :func:`read_torch_state_dict`. The layer
    structure (channel counts, grouped/depthwise convolutions, number of residual blocks,
    squeeze-excitation modules, embedding size) is derived from the names and shapes.
    The model takes ``"input"`` ``(N, 3, 80, 80)`` float32 BGR 0..255 and returns
    ``"logits"`` ``(N, 3)``.

    Raises :class:`~kyc.errors.ConversionError` when a tensor is missing, has an unexpected
    shape or non-finite values, or when the state dict holds names the architecture lacks.
    """
    try:
        return _build(state)
    except _Malformed as exc:
        raise ConversionError(f"not a MiniFASNet state dict: {exc}") from None


def _build(state: Mapping[str, np.ndarray[Any, Any]]) -> Any:
    import onnx
    from onnx import TensorProto, helper

    w = _Weights(state)
    g = _Graph(w)
    x = _Tensor(INPUT_NAME, 3, INPUT_SIZE)
    x = g.conv_block(x, "conv1", stride=2)
    x = g.conv_block(x, "conv2_dw", depthwise=True)
    x = g.depth_wise(x, "conv_23", stride=2, residual=False)
    x = g.residual(x, "conv_3")
    x = g.depth_wise(x, "conv_34", stride=2, residual=False)
    x = g.residual(x, "conv_4")
    x = g.depth_wise(x, "conv_45", stride=2, residual=False)
    x = g.residual(x, "conv_5")
    x = g.conv_block(x, "conv_6_sep")
    # conv_6_dw: depthwise Linear_block whose kernel covers the whole map (no padding)
    x = g.linear_block(x, "conv_6_dw", depthwise=True, pad=0)
    if x.side != 1:
        raise _Malformed(f"conv_6_dw leaves a {x.side}x{x.side} map, expected 1x1 for 80x80")
    flat = g.node("Flatten", [x.name], "conv_6_flatten", axis=1)

    embed = int(w.get("bn.weight", (None,)).shape[0])
    scale, shift = _batchnorm(w, "bn", embed)
    prob = w.get("prob.weight", (None, embed))
    if prob.shape[0] != NUM_CLASSES:
        raise _Malformed(f"prob has {prob.shape[0]} classes, expected {NUM_CLASSES}")
    if w.has("prob.bias"):
        raise _Malformed("prob.bias is present, but MiniFASNet's prob layer has no bias")
    if embed != 512:  # MiniFASNet applies `linear` only when embedding_size != 512
        lin = w.get("linear.weight", (embed, x.channels))
        hidden = g.node(
            "Gemm",
            [flat, g.const("linear_bn.w", lin * scale[:, None]), g.const("linear_bn.b", shift)],
            "embedding",
            transB=1,
        )
        logits = g.node("Gemm", [hidden, g.const("prob.w", prob)], OUTPUT_NAME, transB=1)
    else:
        if x.channels != 512:
            raise _Malformed(f"flattened features have {x.channels} values, expected 512")
        if w.has("linear.weight"):
            w.get("linear.weight", (None, None))  # present in the module but unused
        # prob(bn(x)) = (prob * scale) x + prob @ shift
        logits = g.node(
            "Gemm",
            [flat, g.const("bn_prob.w", prob * scale[None, :]), g.const("bn_prob.b", prob @ shift)],
            OUTPUT_NAME,
            transB=1,
        )
    assert logits == OUTPUT_NAME

    unused = w.unused()
    if unused:
        shown = ", ".join(repr(n) for n in unused[:5]) + (" ..." if len(unused) > 5 else "")
        raise _Malformed(f"{len(unused)} unexpected tensor(s) the architecture lacks: {shown}")

    has_se = any(".se_module." in n for n in w.names())
    arch = _architecture_name(w, has_se)
    graph = helper.make_graph(
        g.nodes,
        arch,
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="kyc",
        producer_version=_CONVERTER_ID,
        ir_version=_IR_VERSION,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        doc_string=(
            f"{arch} (minivision-ai Silent-Face-Anti-Spoofing, Apache-2.0) converted from its "
            "PyTorch state dict by kyc. Input (N,3,80,80) float32 BGR 0..255 NCHW, no "
            "scaling; output (N,3) logits, softmax them; class 1 is live."
        ),
    )
    helper.set_model_props(
        model,
        {
            "kyc.architecture": arch,
            "kyc.converter": _CONVERTER_ID,
            "kyc.weights_sha256": _weights_digest(state),
            "kyc.input": "input (N,3,80,80) float32 BGR 0..255 NCHW",
            "kyc.output": "logits (N,3); softmax; class 1 = live",
            "kyc.licence": "Apache-2.0",
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


# --- conversion -----------------------------------------------------------------------------


def _write_atomic(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def convert_minifasnet_pth(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Convert a MiniFASNet ``.pth`` state dict to an ONNX file; return ``dst`` as a Path.

    ``src`` is ``2.7_80x80_MiniFASNetV2.pth`` or ``4_0_0_80x80_MiniFASNetV1SE.pth`` (or any
    MiniFASNet V1/V2/SE state dict, legacy or zip serialisation). ``dst`` receives a model with
    input ``"input"`` ``(N, 3, 80, 80)`` float32 BGR 0..255 (no /255) and output ``"logits"``
    ``(N, 3)``; the caller applies softmax, class 1 is live. The file is written atomically
    (temporary file + ``os.replace``) and its bytes are the same on every run.

    Raises :class:`~kyc.errors.ConversionError` naming ``src`` when it is missing, truncated,
    not a PyTorch pickle, or not a MiniFASNet state dict (unexpected names or shapes), and
    naming ``dst`` when it cannot be written.
    """
    src_path, dst_path = Path(src), Path(dst)
    state = read_torch_state_dict(src_path)
    try:
        model = build_minifasnet_onnx(state)
    except ConversionError as exc:
        raise ConversionError(f"{src_path}: {exc.message}") from None
    data: bytes = model.SerializeToString(deterministic=True)
    try:
        _write_atomic(dst_path, data)
    except OSError as exc:
        raise ConversionError(f"cannot write {dst_path}: {exc.strerror or exc}") from exc
    return dst_path


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - dev convenience
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m kyc.models.minifasnet_convert SRC.pth DST.onnx", file=sys.stderr)
        return 2
    print(convert_minifasnet_pth(args[0], args[1]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
