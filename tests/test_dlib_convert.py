"""Tests for kyc.models.dlib_convert: dlib .dat -> ONNX without dlib.

The converted model is checked against the reference ONNX conversion in the shared model
folder on real face chips (grey LFW crops and aligned colour photos, so a channel-order bug
cannot hide), for byte-for-byte determinism, and for typed errors on broken input.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kyc.errors import ConversionError
from kyc.models.dlib_convert import (
    INPUT_NAME,
    OUTPUT_NAME,
    build_onnx,
    convert_dlib_dat,
    parse_dlib_resnet,
    read_dlib_dat,
)

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
REF_NAME = "dlib_face_recognition_resnet_model_v1.onnx"
YUNET_NAME = "face_detection_yunet_2023mar.onnx"
# dlib's 150x150 chip template for the 5 YuNet landmarks (DESIGN.md).
DLIB_TEMPLATE = np.array(
    [[47.02, 43.51], [101.2, 43.34], [73.54, 75.28], [50.81, 99.95], [98.57, 99.56]],
    dtype=np.float32,
)
COLOUR_PHOTOS = [
    "face_recognition_examples/examples/biden.jpg",
    "face_recognition_examples/examples/obama.jpg",
    "face_recognition_examples/examples/alex-lacamoire.png",
    "face_recognition_examples/examples/lin-manuel-miranda.png",
    "face_recognition_examples/examples/two_people.jpg",
    "face_recognition_examples/examples/knn_examples/train/rose_leslie/img1.jpg",
]
N_LFW = 6


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def dat_path(model_dir: Path) -> Path:
    path = model_dir / DAT_NAME
    if not path.is_file():
        pytest.skip(f"{DAT_NAME} not found in {model_dir}")
    return path


@pytest.fixture(scope="session")
def reference_path(model_dir: Path) -> Path:
    path = model_dir / REF_NAME
    if not path.is_file():
        pytest.skip(f"{REF_NAME} not found in {model_dir}")
    return path


@pytest.fixture(scope="session")
def converted(dat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .dat converted once per test session."""
    return convert_dlib_dat(dat_path, tmp_path_factory.mktemp("dlib") / "converted.onnx")


def _lfw_chips(data_dir: Path) -> list[np.ndarray]:
    """Centre crops of LFW images (250x250, face centred) resized to 150x150, as RGB."""
    files = sorted((data_dir / "faces" / "lfw" / "images").glob("*/*_0001.jpg"))
    # spread the picks over the alphabet rather than taking the first few names
    picks = files[:: max(1, len(files) // N_LFW)][:N_LFW]
    chips = []
    for f in picks:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert img is not None, f
        crop = img[45:205, 45:205]
        chip = cv2.resize(crop, (150, 150), interpolation=cv2.INTER_AREA)
        chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
    return chips


def _colour_chips(data_dir: Path, model_dir: Path) -> list[np.ndarray]:
    """dlib-style aligned 150x150 RGB chips of every face YuNet finds in colour photos."""
    yunet = model_dir / YUNET_NAME
    if not yunet.is_file():
        return []
    det = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), 0.7, 0.3, 5000)
    chips = []
    for rel in COLOUR_PHOTOS:
        img = cv2.imread(str(data_dir / "faces" / rel), cv2.IMREAD_COLOR)
        if img is None:
            continue
        scale = min(1.0, 960.0 / max(img.shape[:2]))
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        det.setInputSize((small.shape[1], small.shape[0]))
        _, faces = det.detect(small)
        for face in [] if faces is None else faces:
            points = (face[4:14].reshape(5, 2) / scale).astype(np.float32)
            m, _ = cv2.estimateAffinePartial2D(points, DLIB_TEMPLATE, method=cv2.LMEDS)
            if m is None:
                continue
            chip = cv2.warpAffine(img, m, (150, 150), flags=cv2.INTER_LINEAR)
            chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
    return chips


@pytest.fixture(scope="session")
def chips(data_dir: Path, model_dir: Path) -> np.ndarray:
    """(N, 3, 150, 150) float32 RGB 0..255 batch of real face chips, N >= 8, some in colour."""
    colour = _colour_chips(data_dir, model_dir)
    grey = _lfw_chips(data_dir)
    batch = np.stack(colour + grey).transpose(0, 3, 1, 2).astype(np.float32)
    assert batch.shape[0] >= 8, f"only {batch.shape[0]} chips could be made"
    return batch


# --- parity --------------------------------------------------------------------------------------


def test_converted_model_matches_reference_on_real_face_chips(
    converted: Path, reference_path: Path, chips: np.ndarray
) -> None:
    ours = _session(converted)
    ref = _session(reference_path)
    got = ours.run(None, {INPUT_NAME: chips})[0]
    want = ref.run(None, {ref.get_inputs()[0].name: chips})[0]
    assert got.shape == (chips.shape[0], 128) and got.dtype == np.float32
    assert np.isfinite(got).all()
    assert float(np.abs(got - want).max()) <= 1e-4
    # the chips are distinct faces: the descriptors must not collapse to one point
    assert float(np.linalg.norm(got[0] - got[-1])) > 0.1


def test_colour_chips_are_part_of_the_parity_set(chips: np.ndarray) -> None:
    # Grey chips alone cannot reveal a swapped R/B channel order; make sure colour is tested.
    colourful = [c for c in chips if float(np.abs(c[0] - c[2]).mean()) > 5.0]
    assert len(colourful) >= 3


def test_batch_and_single_chip_give_the_same_descriptor(converted: Path, chips: np.ndarray) -> None:
    sess = _session(converted)
    batch = sess.run(None, {INPUT_NAME: chips[:4]})[0]
    single = np.concatenate([sess.run(None, {INPUT_NAME: chips[i : i + 1]})[0] for i in range(4)])
    assert np.abs(batch - single).max() <= 1e-5


def test_converted_graph_declares_the_contract_io(converted: Path, dat_path: Path) -> None:
    model = onnx.load(str(converted))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == INPUT_NAME == "input"
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 3, 150, 150]
    assert out.name == OUTPUT_NAME
    assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == ["N", 128]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == _sha256(dat_path)
    assert str(dat_path) not in converted.read_bytes().decode("latin-1")  # no paths inside


def test_parsed_network_has_dlib_input_constants_and_all_parameters(dat_path: Path) -> None:
    net = read_dlib_dat(dat_path)
    assert net.input_size == (150, 150)
    assert np.allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.distance_threshold == pytest.approx(0.6)
    convs = [layer for layer in net.layers if layer.kind == "con"]
    assert len(convs) == 29
    assert convs[0].weights is not None and convs[0].weights.shape == (32, 3, 7, 7)
    fc = net.layers[-1]
    assert fc.kind == "fc" and fc.weights is not None and fc.weights.shape == (256, 128)
    assert fc.bias is None
    # ~5.6 M learned values, and 4 bytes each make up almost all of the 22 MB file
    assert 5_500_000 < net.num_parameters < 5_700_000
    assert net.num_parameters * 4 > 0.99 * dat_path.stat().st_size


# --- determinism ---------------------------------------------------------------------------------


def test_building_twice_gives_identical_bytes(dat_path: Path) -> None:
    net = read_dlib_dat(dat_path)
    a = build_onnx(net).SerializeToString(deterministic=True)
    b = build_onnx(read_dlib_dat(dat_path)).SerializeToString(deterministic=True)
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


@pytest.mark.slow
def test_conversion_is_deterministic_across_runs(
    dat_path: Path, converted: Path, tmp_path: Path
) -> None:
    again = convert_dlib_dat(dat_path, tmp_path / "sub" / "again.onnx")
    assert again == (tmp_path / "sub" / "again.onnx").resolve()
    assert _sha256(again) == _sha256(converted)


def test_manifest_accepts_the_converted_digest(converted: Path) -> None:
    models = pytest.importorskip("kyc.models")
    model_spec = getattr(models, "model_spec", None)
    if model_spec is None:
        pytest.skip("kyc.models.model_spec is not available yet")
    try:
        spec = model_spec("dlib_resnet_v1")
    except Exception as exc:  # the registry may not list the entry yet
        pytest.skip(f"manifest entry dlib_resnet_v1 unavailable: {exc}")
    assert _sha256(converted) in spec.sha256


# --- atomic write --------------------------------------------------------------------------------


def test_successful_conversion_leaves_no_temporary_files(dat_path: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out" / "model.onnx"
    dst.parent.mkdir()
    dst.write_bytes(b"old contents")
    assert convert_dlib_dat(str(dat_path), str(dst)) == dst.resolve()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.onnx"]
    assert dst.read_bytes()[:20] != b"old contents"


def test_failed_conversion_keeps_existing_target(dat_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(dat_path.read_bytes()[:100_000])
    dst = tmp_path / "model.onnx"
    dst.write_bytes(b"previous good model")
    with pytest.raises(ConversionError):
        convert_dlib_dat(bad, dst)
    assert dst.read_bytes() == b"previous good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dat", "model.onnx"]


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dat_bytes(dat_path: Path) -> bytes:
    return dat_path.read_bytes()


@pytest.mark.parametrize(
    "cut",
    [1, 3, 20, 0x130, 0x160, 0x4B00, 0x4D30, 1_000_000, -5_000, -1],
    ids=lambda c: f"cut{c}",
)
def test_truncated_dat_raises_conversion_error_naming_the_file(
    dat_bytes: bytes, tmp_path: Path, cut: int
) -> None:
    src = tmp_path / f"truncated_{cut}.dat"
    src.write_bytes(dat_bytes[:cut])
    with pytest.raises(ConversionError) as info:
        convert_dlib_dat(src, tmp_path / "out.onnx")
    message = str(info.value)
    assert str(src) in message
    assert "truncated" in message and "ends" in message
    assert not (tmp_path / "out.onnx").exists()


def test_empty_file_raises_conversion_error(tmp_path: Path) -> None:
    src = tmp_path / "empty.dat"
    src.write_bytes(b"")
    with pytest.raises(ConversionError, match="empty"):
        convert_dlib_dat(src, tmp_path / "out.onnx")


def test_missing_file_raises_conversion_error(tmp_path: Path) -> None:
    src = tmp_path / "nowhere.dat"
    with pytest.raises(ConversionError, match=r"nowhere\.dat"):
        convert_dlib_dat(src, tmp_path / "out.onnx")


def test_non_dlib_files_raise_conversion_error(
    reference_path: Path, data_dir: Path, tmp_path: Path
) -> None:
    text = tmp_path / "notes.dat"
    text.write_text("this is not a dlib model\n" * 10)
    jpeg = data_dir / "faces" / "face_recognition_examples" / "examples" / "biden.jpg"
    for src in (reference_path, jpeg, text):
        with pytest.raises(ConversionError) as info:
            convert_dlib_dat(src, tmp_path / "out.onnx")
        assert str(src) in str(info.value)
        assert "not a valid dlib" in str(info.value)


def _dlib_int(value: int) -> bytes:
    mag = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if value < 0 else 0)]) + mag


def _dlib_str(text: str) -> bytes:
    return _dlib_int(len(text)) + text.encode()


def test_other_dlib_network_is_refused_with_what_was_found() -> None:
    # A well-formed dlib stream of another network: a classifier with a different loss.
    data = _dlib_int(1) + _dlib_str("loss_multiclass_log_") + _dlib_int(2)
    with pytest.raises(ConversionError, match="loss_multiclass_log_"):
        parse_dlib_resnet(data, name="classifier.dat")


def test_wrong_layer_in_the_stack_is_refused(dat_bytes: bytes) -> None:
    # After the loss layer (name, margin, threshold: 12 bytes) comes the fc layer's version 2;
    # make it 7, as a file of another network or dlib release might have.
    at = dat_bytes.index(b"loss_metric_2") + len(b"loss_metric_2") + 12
    assert dat_bytes[at : at + 2] == _dlib_int(2)
    data = dat_bytes[:at] + _dlib_int(7) + dat_bytes[at + 2 :]
    with pytest.raises(ConversionError, match=r"layer 1 \(fc_no_bias<128>\).*found 7"):
        parse_dlib_resnet(data, name="odd.dat")


def test_trailing_bytes_are_refused(dat_bytes: bytes) -> None:
    with pytest.raises(ConversionError, match="unexpected bytes after the end"):
        parse_dlib_resnet(dat_bytes + b"\x01\x01", name="twice.dat")


def test_non_finite_weights_are_refused(dat_bytes: bytes) -> None:
    # The first con's first filter value follows its params tensor header.
    at = dat_bytes.index(b"con_4") + len(b"con_4")
    header = _dlib_int(2) + _dlib_int(4736) + _dlib_int(1) * 3
    assert dat_bytes[at : at + len(header)] == header
    at += len(header)
    data = dat_bytes[:at] + np.float32(np.nan).tobytes() + dat_bytes[at + 4 :]
    with pytest.raises(ConversionError, match="NaN or infinite"):
        parse_dlib_resnet(data, name="nan.dat")


def _mutations(data: bytes, n: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    # structural bytes: the header, the input layer and the first layers' headers
    for _ in range(n):
        b = bytearray(data)
        b[rng.randrange(0, 0x170)] = rng.randrange(256)
        yield bytes(b)


def test_corrupted_headers_only_ever_raise_conversion_error(dat_bytes: bytes) -> None:
    for cut in range(0, 0x400, 3):  # every kind of field, cut at every position
        with pytest.raises(ConversionError):
            parse_dlib_resnet(dat_bytes[:cut], name="cut.dat")
    for data in _mutations(dat_bytes, 25, seed=1):
        try:
            parse_dlib_resnet(data, name="flipped.dat")
        except ConversionError as exc:
            assert "flipped.dat" in str(exc)
