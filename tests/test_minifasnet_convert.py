"""Tests for the torch-free MiniFASNet .pth -> ONNX converter, on the published weights."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kyc.errors import ConversionError, ModelError
from kyc.models.minifasnet_convert import (
    BN_EPS,
    build_minifasnet_onnx,
    convert_minifasnet_pth,
    read_torch_state_dict,
)

V2 = "2.7_80x80_MiniFASNetV2"
V1SE = "4_0_0_80x80_MiniFASNetV1SE"
NAMES = (V2, V1SE)


# --- writing PyTorch-layout files without torch (for the zip format and malformed inputs) ---


class _Global:
    """A module-level name to emit as a pickle GLOBAL without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists that REDUCE targets be callable
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key = key
        self.data = np.ascontiguousarray(data).reshape(-1)
        self.kind = {"f": "FloatStorage", "i": "LongStorage"}[data.dtype.kind]
        self.data = self.data.astype("<f4" if data.dtype.kind == "f" else "<i8")


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> Any:
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        args = (self.storage, 0, self.shape, stride, False, collections.OrderedDict())
        return (rebuild, args)


def _save_global(pickler: Any, obj: _Global) -> None:
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
    pickler.memoize(obj)


class _TorchLikePickler(pickle._Pickler):
    """Pickles tensors the way torch.save does: storages as persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[_Global] = _save_global

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            kind = _Global("torch", obj.kind)
            return ("storage", kind, obj.key, "cpu", int(obj.data.size))
        return None


def _state_pickle(state: Mapping[str, np.ndarray]) -> tuple[bytes, list[_Storage]]:
    storages: list[_Storage] = []
    od: collections.OrderedDict[str, _Tensor] = collections.OrderedDict()
    for i, (name, arr) in enumerate(state.items()):
        st = _Storage(str(1000 + i), arr)
        storages.append(st)
        od[name] = _Tensor(st, tuple(arr.shape))
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(od)
    return buf.getvalue(), storages


def write_legacy(path: Path, state: Mapping[str, np.ndarray]) -> Path:
    """Write ``state`` in torch.save's legacy (non-zip) layout."""
    payload, storages = _state_pickle(state)
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    buf.write(payload)
    pickle.dump([s.key for s in storages], buf, protocol=2)
    for s in storages:
        buf.write(struct.pack("<q", s.data.size))
        buf.write(s.data.tobytes())
    path.write_bytes(buf.getvalue())
    return path


def write_zip(path: Path, state: Mapping[str, np.ndarray], prefix: str = "archive") -> Path:
    """Write ``state`` in torch.save's zip layout (``<prefix>/data.pkl`` + ``data/<key>``)."""
    payload, storages = _state_pickle(state)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", payload)
        zf.writestr(f"{prefix}/byteorder", "little")
        for s in storages:
            zf.writestr(f"{prefix}/data/{s.key}", s.data.tobytes())
        zf.writestr(f"{prefix}/version", "3\n")
    return path


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pth(model_dir: Path) -> dict[str, Path]:
    paths = {n: model_dir / f"{n}.pth" for n in NAMES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.skip(f"MiniFASNet state dicts not found: {missing}")
    return paths


@pytest.fixture(scope="session")
def converted(pth: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("minifasnet")
    return {n: convert_minifasnet_pth(p, out / f"{n}.onnx") for n, p in pth.items()}


@pytest.fixture(scope="session")
def states(pth: dict[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    return {n: read_torch_state_dict(p) for n, p in pth.items()}


@pytest.fixture(scope="session")
def sessions(converted: dict[str, Path]) -> dict[str, ort.InferenceSession]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {
        n: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for n, p in converted.items()
    }


def _crops(data_dir: Path, label: str, n: int = 20) -> np.ndarray:
    """``n`` replay_2019 crops spread over the folder, resized to 80x80, NCHW float32 BGR."""
    folder = data_dir / "pad" / "replay_2019" / label
    files = sorted(folder.glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    if len(files) < n:
        pytest.skip(f"expected at least {n} crops in {folder}")
    picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, n)]
    chips = []
    for f in picked:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert img is not None, f
        chips.append(cv2.resize(img, (80, 80), interpolation=cv2.INTER_LINEAR))
    return np.ascontiguousarray(np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- reading ----------------------------------------------------------------------------------


def test_reads_published_state_dicts(states: dict[str, dict[str, np.ndarray]]) -> None:
    for name, sd in states.items():
        assert all(k.startswith("module.") for k in sd), name
        counters = [k for k in sd if k.endswith("num_batches_tracked")]
        assert counters and all(sd[k].dtype == np.int64 and sd[k].shape == () for k in counters)
        floats = [v for k, v in sd.items() if k not in counters]
        assert all(v.dtype == np.float32 and np.all(np.isfinite(v)) for v in floats)
        assert sd["module.conv1.conv.weight"].shape == (32, 3, 3, 3)
        assert sd["module.prob.weight"].shape == (3, 128)
        assert all(np.all(sd[k] >= 0) for k in sd if k.endswith("running_var"))
    assert len(states[V2]) == 334 and len(states[V1SE]) == 370
    assert any(".se_module." in k for k in states[V1SE])
    assert not any(".se_module." in k for k in states[V2])


def test_zip_format_reads_the_same_tensors_and_converts_to_the_same_bytes(
    states: dict[str, dict[str, np.ndarray]], converted: dict[str, Path], tmp_path: Path
) -> None:
    for name, sd in states.items():
        zpath = write_zip(tmp_path / f"{name}_zip.pth", sd, prefix=f"{name}_archive")
        assert zipfile.is_zipfile(zpath)
        back = read_torch_state_dict(zpath)
        assert list(back) == list(sd)
        for k, v in sd.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
        out = convert_minifasnet_pth(zpath, tmp_path / f"{name}_zip.onnx")
        assert out.read_bytes() == converted[name].read_bytes()


def test_own_legacy_writer_round_trips(
    states: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    sd = states[V2]
    back = read_torch_state_dict(write_legacy(tmp_path / "legacy.pth", sd))
    assert list(back) == list(sd)
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in sd.items())


# --- conversion -------------------------------------------------------------------------------


def test_conversion_is_deterministic(
    pth: dict[str, Path], converted: dict[str, Path], tmp_path: Path
) -> None:
    for name, src in pth.items():
        again = convert_minifasnet_pth(str(src), str(tmp_path / "sub" / "again.onnx"))
        assert isinstance(again, Path)
        assert again.read_bytes() == converted[name].read_bytes()
        assert [p.name for p in again.parent.iterdir()] == ["again.onnx"]  # no temp files left


def test_graph_interface_and_structure(converted: dict[str, Path]) -> None:
    expected_arch = {V2: "MiniFASNetV2", V1SE: "MiniFASNetV1SE"}
    for name, path in converted.items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        (inp,) = model.graph.input
        (out,) = model.graph.output
        assert inp.name == "input" and out.name == "logits"
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert dims == ["N", 3, 80, 80]
        assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == ["N", 3]
        ops = collections.Counter(n.op_type for n in model.graph.node)
        props = {p.key: p.value for p in model.metadata_props}
        assert props["kyc.architecture"] == expected_arch[name]
        # 1 stem + 1 depthwise stem + 3 downsampling + 12 residual blocks (3 convs each) +
        # conv_6_sep + conv_6_dw; SE adds 2 convs to the last block of each of 3 stages
        n_se = 3 if name == V1SE else 0
        assert ops["Conv"] == 2 + 3 * 3 + 12 * 3 + 2 + 2 * n_se
        assert ops["Sigmoid"] == n_se and ops["GlobalAveragePool"] == n_se
        assert ops["Add"] == 12 and ops["BatchNormalization"] == 0
        assert ops["Gemm"] == 2  # linear (+BN1d folded), prob
        depthwise = [
            n
            for n in model.graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
        assert len(depthwise) == 1 + 3 + 12 + 1


def test_bn_folding_matches_explicit_batchnorm(states: dict[str, dict[str, np.ndarray]]) -> None:
    # The stem conv of the converted graph equals conv -> eval-mode BN computed by hand.
    sd = states[V2]
    model = build_minifasnet_onnx(sd)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    w = sd["module.conv1.conv.weight"].astype(np.float64)
    g, b = sd["module.conv1.bn.weight"], sd["module.conv1.bn.bias"]
    m, v = sd["module.conv1.bn.running_mean"], sd["module.conv1.bn.running_var"]
    s = g / np.sqrt(v.astype(np.float64) + BN_EPS)
    np.testing.assert_allclose(inits["conv1.conv.w"], w * s[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(inits["conv1.conv.b"], b - m * s, rtol=1e-5, atol=1e-6)


# --- running on real crops ----------------------------------------------------------------------


def test_real_crops_give_finite_probabilities_and_rank_live_above_spoof(
    sessions: dict[str, ort.InferenceSession], data_dir: Path
) -> None:
    live, spoof = _crops(data_dir, "live"), _crops(data_dir, "spoof")
    live_p: list[np.ndarray] = []
    spoof_p: list[np.ndarray] = []
    for sess in sessions.values():
        for x, acc in ((live, live_p), (spoof, spoof_p)):
            (logits,) = sess.run(["logits"], {"input": x})
            assert logits.shape == (len(x), 3) and logits.dtype == np.float32
            assert np.all(np.isfinite(logits))
            probs = _softmax(logits.astype(np.float64))
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
            acc.append(probs[:, 1])  # class 1 = live
    live_score = np.mean(live_p, axis=0)  # the two models averaged, per crop
    spoof_score = np.mean(spoof_p, axis=0)
    assert live_score.mean() > spoof_score.mean() + 0.1, (live_score.mean(), spoof_score.mean())


# PyTorch 2.13.0's logits for the reference MiniFASNet on these inputs, printed by
# `benchmarks/minifasnet_parity.py` (run with a torch venv); the inputs are central 80x80
# windows of the crops (no resampling, so no dependence on the OpenCV version).
GOLDEN_CROPS = ("live/0.png", "live/80.png", "spoof/0.png", "spoof/75.png")
TORCH_LOGITS = {
    V2: [
        [1.052256, 0.733552, -1.787591],
        [0.632167, 1.945371, -2.579869],
        [0.162600, -1.184773, 1.022707],
        [0.761878, -1.388719, 0.627331],
    ],
    V1SE: [
        [0.206027, 2.044620, -2.252014],
        [0.492241, 0.674947, -1.167972],
        [0.323923, -0.834709, 0.510737],
        [0.961144, -0.332319, -0.629254],
    ],
}


def test_logits_match_pytorch_reference(
    sessions: dict[str, ort.InferenceSession], data_dir: Path
) -> None:
    chips = []
    for rel in GOLDEN_CROPS:
        img = cv2.imread(str(data_dir / "pad" / "replay_2019" / rel), cv2.IMREAD_COLOR)
        assert img is not None, rel
        top, left = (img.shape[0] - 80) // 2, (img.shape[1] - 80) // 2
        chips.append(img[top : top + 80, left : left + 80])
    x = np.ascontiguousarray(np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2))
    for name, sess in sessions.items():
        (logits,) = sess.run(["logits"], {"input": x})
        np.testing.assert_allclose(logits, TORCH_LOGITS[name], rtol=0, atol=1e-4, err_msg=name)


def test_batch_matches_single_images(
    sessions: dict[str, ort.InferenceSession], data_dir: Path
) -> None:
    x = _crops(data_dir, "spoof", n=4)
    for sess in sessions.values():
        (batch,) = sess.run(["logits"], {"input": x})
        singles = np.concatenate(
            [sess.run(["logits"], {"input": x[i : i + 1]})[0] for i in range(4)]
        )
        np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-5)


# --- malformed input ------------------------------------------------------------------------------


def _assert_conversion_error(src: Path, dst: Path, *fragments: str) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        convert_minifasnet_pth(src, dst)
    err = info.value
    assert isinstance(err, ModelError) and err.code == "CONVERSION_ERROR"
    assert str(src) in str(err)
    for frag in fragments:
        assert frag in str(err), (frag, str(err))
    return err


@pytest.mark.parametrize("cut", [0.0, 0.0001, 0.5, 0.999])
def test_truncated_file_raises(pth: dict[str, Path], tmp_path: Path, cut: float) -> None:
    raw = pth[V2].read_bytes()
    src = tmp_path / "cut.pth"
    src.write_bytes(raw[: int(len(raw) * cut)])
    dst = tmp_path / "out.onnx"
    _assert_conversion_error(src, dst)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cut.pth"]  # no temp file left behind


def test_not_a_pickle_raises(data_dir: Path, tmp_path: Path) -> None:
    png = next((data_dir / "pad" / "replay_2019" / "live").glob("*.png"))
    _assert_conversion_error(png, tmp_path / "out.onnx")
    src = tmp_path / "text.pth"
    src.write_text("definitely not a pickle\n")
    _assert_conversion_error(src, tmp_path / "out.onnx")
    src.write_bytes(pickle.dumps({"a": 1}, protocol=2))  # a pickle, but no torch magic
    _assert_conversion_error(src, tmp_path / "out.onnx", "magic")


def test_missing_file_raises(tmp_path: Path) -> None:
    _assert_conversion_error(tmp_path / "absent.pth", tmp_path / "out.onnx", "cannot read")


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (str(self.target),))


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    pickle.dump(collections.OrderedDict(x=_Evil(target)), buf, protocol=2)
    src = tmp_path / "evil.pth"
    src.write_bytes(buf.getvalue())
    _assert_conversion_error(src, tmp_path / "out.onnx", "mkdir")
    assert not target.exists()


def test_unexpected_key_raises(states: dict[str, dict[str, np.ndarray]], tmp_path: Path) -> None:
    sd = dict(states[V2])
    sd["module.extra_head.weight"] = np.zeros((3, 128), np.float32)
    for writer in (write_legacy, write_zip):
        src = writer(tmp_path / f"extra_{writer.__name__}.pth", sd)
        _assert_conversion_error(src, tmp_path / "out.onnx", "extra_head.weight", "unexpected")


def test_wrong_shape_raises(states: dict[str, dict[str, np.ndarray]], tmp_path: Path) -> None:
    sd = dict(states[V1SE])
    sd["module.conv_3.model.3.se_module.fc1.weight"] = np.zeros((16, 64, 3, 3), np.float32)
    src = write_legacy(tmp_path / "shape.pth", sd)
    _assert_conversion_error(src, tmp_path / "out.onnx", "se_module.fc1.weight", "shape")
    sd = dict(states[V2])
    sd["module.prob.weight"] = np.zeros((2, 128), np.float32)
    _assert_conversion_error(write_zip(tmp_path / "cls.pth", sd), tmp_path / "o.onnx", "classes")


def test_missing_tensor_and_non_finite_weights_raise(
    states: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    sd = {k: v for k, v in states[V2].items() if k != "module.conv_4.model.2.project.bn.bias"}
    src = write_legacy(tmp_path / "missing.pth", sd)
    _assert_conversion_error(src, tmp_path / "out.onnx", "conv_4.model.2.project.bn.bias")
    sd = dict(states[V2])
    bad = sd["module.conv1.conv.weight"].copy()
    bad[0, 0, 0, 0] = np.nan
    sd["module.conv1.conv.weight"] = bad
    src = write_legacy(tmp_path / "nan.pth", sd)
    _assert_conversion_error(src, tmp_path / "out.onnx", "NaN")


def test_zip_with_bad_storage_raises(
    states: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    good = write_zip(tmp_path / "good.pth", states[V2])
    with zipfile.ZipFile(good) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    victim = next(n for n in members if "/data/" in n)
    for label, edit in (("missing", None), ("short", members[victim][:-4])):
        src = tmp_path / f"{label}.pth"
        with zipfile.ZipFile(src, "w") as zf:
            for name, data in members.items():
                if name != victim:
                    zf.writestr(name, data)
                elif edit is not None:
                    zf.writestr(name, edit)
        _assert_conversion_error(src, tmp_path / "out.onnx", "storage")


def test_failed_conversion_keeps_existing_destination(pth: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "model.onnx"
    dst.write_bytes(b"previous good model")
    src = tmp_path / "broken.pth"
    src.write_bytes(pth[V2].read_bytes()[:1000])
    _assert_conversion_error(src, dst)
    assert dst.read_bytes() == b"previous good model"


def test_unwritable_destination_names_it(pth: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    dst = blocker / "model.onnx"  # parent is a file
    with pytest.raises(ConversionError, match=r"model\.onnx"):
        convert_minifasnet_pth(pth[V2], dst)


def test_output_depends_only_on_weights(
    states: dict[str, dict[str, np.ndarray]], converted: dict[str, Path]
) -> None:
    model = build_minifasnet_onnx(states[V1SE])
    assert model.SerializeToString(deterministic=True) == converted[V1SE].read_bytes()
    digest = {p.key: p.value for p in model.metadata_props}["kyc.weights_sha256"]
    assert len(digest) == 64 and digest != hashlib.sha256(b"").hexdigest()
