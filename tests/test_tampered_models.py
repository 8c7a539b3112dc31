"""Tampered, truncated and wrong-shape model files are refused, naming the file, never run.

Every test works on copies of the real model files in a temporary ``KYC_MODEL_DIR`` (the
shared folder is never modified) and spies on ``onnxruntime.InferenceSession`` and
``cv2.FaceDetectorYN`` to check that a refused file never reaches a runtime (or, when the
runtime must open it to find out that it is broken, that it is never run).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.errors import ModelCorrupt, ModelError, ModelInvalid
from kyc.image import load_image
from kyc.models import clear_caches, load_session, model_spec, resolve_model

YUNET = "face_detection_yunet_2023mar.onnx"
DLIB = "dlib_face_recognition_resnet_model_v1.onnx"


class Spy:
    """Records which files onnxruntime / OpenCV were asked to open, and which were run."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.ran: list[str] = []


@pytest.fixture()
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    import cv2
    import onnxruntime as ort

    record = Spy()
    real_session = ort.InferenceSession
    real_yn = cv2.FaceDetectorYN

    class SpySession(real_session):  # type: ignore[misc,valid-type]
        def __init__(self, path: Any, *args: Any, **kwargs: Any) -> None:
            record.opened.append(str(path))
            super().__init__(path, *args, **kwargs)
            self._spy_path = str(path)

        def run(self, *args: Any, **kwargs: Any) -> Any:
            record.ran.append(self._spy_path)
            return super().run(*args, **kwargs)

    class SpyYN:
        @staticmethod
        def create(model: Any, *args: Any, **kwargs: Any) -> Any:
            record.opened.append(str(model))
            record.ran.append(str(model))
            return real_yn.create(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", SpySession)
    monkeypatch.setattr(cv2, "FaceDetectorYN", SpyYN)
    return record


@pytest.fixture()
def models(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private model folder with copies of YuNet and the dlib ONNX, set as KYC_MODEL_DIR."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in (YUNET, DLIB):
        if not (model_dir / name).is_file():
            pytest.skip(f"{name} not in the model folder")
        shutil.copyfile(model_dir / name, folder / name)
    monkeypatch.setenv("KYC_MODEL_DIR", str(folder))
    monkeypatch.setenv("KYC_CACHE_DIR", str(tmp_path / "cache"))  # no user cache fallback
    clear_caches()
    yield folder
    clear_caches()


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> np.ndarray:
    path = data_dir / "faces" / "face_recognition_examples" / "examples" / "obama_small.jpg"
    if not path.is_file():
        pytest.skip("sample photo not found")
    return load_image(path)


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(spy: Spy, path: Path) -> list[str]:
    return [p for p in spy.opened if Path(p).name == path.name]


# --- sha256 mismatch ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "filename"), [("yunet_2023mar", YUNET), ("dlib_resnet_v1", DLIB)])
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_one_flipped_byte_is_model_corrupt_naming_the_file(
    models: Path, spy: Spy, name: str, filename: str, where: float
) -> None:
    target = models / filename
    _flip_byte(target, where)
    for call in (lambda: resolve_model(name), lambda: load_session(name)):
        with pytest.raises(ModelCorrupt) as info:
            call()
        assert str(target) in info.value.message and "sha256" in info.value.message
    assert not spy.opened  # never handed to a runtime


def test_tampered_embedder_stops_face_verification(models: Path, spy: Spy,
                                                   photo: np.ndarray) -> None:
    from kyc.face.verify import FaceVerifier

    _flip_byte(models / DLIB)
    with pytest.raises(ModelCorrupt, match=re.escape(str(models / DLIB))):
        FaceVerifier().verify(photo, photo)
    assert not _names(spy, models / DLIB)  # the (intact) detector may have run, not this


def test_tampered_detector_stops_detection(models: Path, spy: Spy, photo: np.ndarray) -> None:
    from kyc.face.detect import FaceDetector

    _flip_byte(models / YUNET)
    with pytest.raises(ModelCorrupt, match=re.escape(str(models / YUNET))):
        FaceDetector().detect(photo)
    assert not spy.opened


def test_tampered_liveness_model_is_not_checked_naming_the_file(
    models: Path, spy: Spy, photo: np.ndarray, model_dir: Path
) -> None:
    from kyc.liveness.passive import PassiveLiveness
    from kyc.models.registry import build_model

    for name in ("minifasnet_v2", "minifasnet_v1se"):
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"{src} not found")
        build_model(name, source=src, dest=models)
    target = models / model_spec("minifasnet_v1se").filename
    _flip_byte(target)
    engine = PassiveLiveness(model_dir=models)
    with pytest.raises(ModelCorrupt, match=re.escape(str(target))):
        engine.load()
    result = PassiveLiveness(model_dir=models).check(photo)
    assert result.status == "not_checked"
    reason = result.reasons[0]
    assert reason.code == "PAD_MODEL_UNAVAILABLE" and str(target) in reason.evidence["detail"]
    assert not _names(spy, target) and not [p for p in spy.ran if "MiniFAS" in p]


def test_a_swapped_file_under_a_manifest_name_is_refused(models: Path, spy: Spy) -> None:
    """A valid ONNX model of another kind, renamed to the detector's file name."""
    (models / YUNET).write_bytes((models / DLIB).read_bytes())
    with pytest.raises(ModelCorrupt, match=re.escape(str(models / YUNET))):
        load_session("yunet_2023mar")
    assert not spy.opened


# --- truncated files ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 16, 0.5, 0.99])
def test_truncated_manifest_model_is_refused(models: Path, spy: Spy, keep: float) -> None:
    target = models / DLIB
    data = target.read_bytes()
    target.write_bytes(data[: int(keep if keep >= 1 or keep == 0 else len(data) * keep)])
    with pytest.raises(ModelCorrupt, match=re.escape(str(target))):
        load_session("dlib_resnet_v1")
    assert not spy.opened


@pytest.mark.parametrize("keep", [0, 16, 0.5, 0.99])
def test_truncated_user_model_is_model_invalid_and_never_run(
    models: Path, spy: Spy, keep: float, photo: np.ndarray
) -> None:
    """A caller's own file, declared with its (truncated) sha256: opened, found broken."""
    from kyc.face.embed import make_embedder
    from kyc.face.verify import FaceVerifier

    target = models / "my_embedder.onnx"
    data = (models / DLIB).read_bytes()
    target.write_bytes(data[: int(keep if keep >= 1 or keep == 0 else len(data) * keep)])
    config = {"name": "my_embedder", "family": "dlib", "path": str(target),
              "sha256": _sha(target)}
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        load_session(path=target)
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        make_embedder(config).embed(np.zeros((1, 150, 150, 3), np.uint8))
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        FaceVerifier(embedder=config, profile=0.6).verify(photo, photo)
    assert str(target) not in spy.ran


def test_user_model_with_the_wrong_sha256_is_model_corrupt(models: Path, spy: Spy) -> None:
    from kyc.face.embed import make_embedder

    config = {"name": "mine", "family": "dlib", "path": str(models / DLIB), "sha256": "0" * 64}
    with pytest.raises(ModelCorrupt, match=re.escape(str(models / DLIB))):
        make_embedder(config).embed(np.zeros((1, 150, 150, 3), np.uint8))
    assert not spy.opened


# --- wrong input shapes ------------------------------------------------------------------------


def _tiny_onnx(path: Path, shapes: list[list[Any]]) -> Path:
    """A valid ONNX model: each input (of the given shape) is averaged into a (N, 4) output."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(f"in{k}", TensorProto.FLOAT, s)
              for k, s in enumerate(shapes)]
    nodes = [helper.make_node("ReduceMean", [f"in{k}"], [f"m{k}"], keepdims=0)
             for k in range(len(shapes))]
    nodes.append(helper.make_node("Sum", [f"m{k}" for k in range(len(shapes))], ["s"]))
    nodes.append(helper.make_node("Expand", ["s", "four"], ["out"]))
    four = helper.make_tensor("four", TensorProto.INT64, [2], [1, 4])
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
                              initializer=[four])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("shape", "layout"), [
    ([1, 3, 64, 64], "NCHW"),        # wrong spatial size for the dlib family (150)
    (["N", 1, 150, 150], "NCHW"),    # one channel
    ([1, 150, 150, 3], "NCHW"),      # channels last, declared channels first
    ([1, 3, 150], "NCHW"),           # 3-d
    ([1, 3, 112, 112], "NHWC"),      # ArcFace size, wrong layout
])
def test_wrong_input_shape_for_the_declared_role_is_model_invalid(
    models: Path, spy: Spy, shape: list[Any], layout: str, photo: np.ndarray
) -> None:
    from kyc.face.embed import make_embedder
    from kyc.face.verify import FaceVerifier

    target = _tiny_onnx(models / "wrong_shape.onnx", [shape])
    sess = load_session(path=target)  # a valid ONNX file: onnxruntime opens it
    spy.ran.clear()
    config = {"name": "wrong_shape", "family": "dlib", "path": str(target),
              "sha256": _sha(target), "layout": layout}
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        make_embedder(config).embed(np.zeros((1, 150, 150, 3), np.uint8))
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        FaceVerifier(embedder=config, profile=0.6).verify(photo, photo)
    assert str(target) not in spy.ran
    assert sess.get_inputs()[0].shape == shape


def test_two_input_model_is_model_invalid(models: Path, spy: Spy) -> None:
    from kyc.face.embed import make_embedder

    target = _tiny_onnx(models / "two.onnx", [[1, 3, 150, 150], [1, 3, 150, 150]])
    config = {"name": "two", "family": "dlib", "path": str(target), "sha256": _sha(target)}
    with pytest.raises(ModelInvalid, match=re.escape(str(target))):
        make_embedder(config).embed(np.zeros((1, 150, 150, 3), np.uint8))
    assert str(target) not in spy.ran


def test_wrong_shape_model_named_as_a_manifest_model_is_refused(models: Path, spy: Spy) -> None:
    _tiny_onnx(models / DLIB, [[1, 3, 64, 64]])
    with pytest.raises(ModelError, match=re.escape(str(models / DLIB))):
        load_session("dlib_resnet_v1")
    assert not spy.ran


def test_the_untampered_copies_work(models: Path, spy: Spy, photo: np.ndarray) -> None:
    """Control: the same fixtures with intact files run (so the refusals above mean something)."""
    from kyc.face.verify import FaceVerifier

    result = FaceVerifier().verify(photo, photo)
    assert result.status == "match"
    assert any(Path(p).name == DLIB for p in spy.ran)


# --- a file replaced after it was checked ------------------------------------------------------


def test_detector_file_replaced_after_first_use_is_not_run(models: Path, spy: Spy,
                                                          photo: np.ndarray) -> None:
    import onnx
    from onnx import numpy_helper

    from kyc.face.detect import FaceDetector

    detector = FaceDetector()
    before = [f.score for f in detector.detect(photo)]
    target = models / YUNET
    model = onnx.load(str(target))
    for init in model.graph.initializer:  # still a valid model, different weights
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1000:
            init.CopyFrom(numpy_helper.from_array((arr * 0.5).astype(np.float32), init.name))
            break
    onnx.save(model, str(target))
    results: list[Any] = []

    def other_thread() -> None:
        try:
            results.append([f.score for f in detector.detect(photo)])
        except ModelError as exc:
            results.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    # either refused (ModelCorrupt naming the file) or the checked model still used
    assert isinstance(results[0], ModelError) or results[0] == before
    assert os.fspath(target) not in spy.ran[1:]
