"""Tests for kyc.liveness.passive and kyc.liveness.cues on the real MiniFASNet pair and real data.

The ONNX models are built once per session from the published .pth files in the model folder
into a temporary folder (never into the shared folder) and passed to the engine explicitly.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from kyc.errors import ConfigError, InvalidImage
from kyc.image import load_image
from kyc.liveness import LivenessResult, PassiveLiveness, check_liveness
from kyc.liveness import passive as passive_mod
from kyc.liveness.cues import CUE_NAMES, CueLimits, colour_cast, compute_cues
from kyc.liveness.passive import (
    DEFAULT_APCER_TARGET,
    DEFAULT_THRESHOLD,
    MODEL_SCALES,
    crop_patch,
    expanded_box,
    fuse_scores,
)

CROP_SIZE = (96, 132)  # the replay_2019 protocol of benchmarks/pad_eval.py


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both MiniFASNet ONNX files, built from the shared .pth sources into a temp folder."""
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("pad_models")
    for name in MODEL_SCALES:
        src_spec = model_spec(str(model_spec(name).build_from))
        src = model_dir / src_spec.filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


@pytest.fixture(scope="session")
def engine(pad_models: Path, model_dir: Path) -> PassiveLiveness:
    if not (model_dir / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip("YuNet detector not found in the model folder")
    return PassiveLiveness(model_dir=pad_models).load()


@pytest.fixture(scope="session")
def samples(data_dir: Path) -> list[dict[str, str]]:
    root = data_dir / "pad" / "silent_face_samples"
    if not (root / "labels.csv").is_file():
        pytest.skip("silent_face_samples not found")
    with (root / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["file"] = str(root / r["path"])
    return rows


@pytest.fixture(scope="session")
def live_selfie(samples: list[dict[str, str]]) -> np.ndarray:
    row = next(r for r in samples if r["path"].endswith("image_T1.jpg"))
    return load_image(row["file"])


def _crop(path: Path) -> np.ndarray:
    img = load_image(path)
    interp = cv2.INTER_AREA if img.shape[1] > CROP_SIZE[0] else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(img, CROP_SIZE, interpolation=interp))


def _square_box() -> tuple[float, float, float, float]:
    w, h = CROP_SIZE
    return (0.0, (h - w) / 2.0, float(w), float(w))


# --- preprocessing and fusion (no models) ---------------------------------------------------


def test_expanded_box_scales_about_the_centre_when_it_fits() -> None:
    left, top, right, bottom = expanded_box((1000, 1000, 3), (450.0, 450.0, 100.0, 100.0), 2.7)
    assert (left, top, right, bottom) == (365, 365, 635, 635)


def test_expanded_box_is_shifted_inside_not_clipped() -> None:
    # a face near the top-left corner: the x4 region keeps its size and moves inside
    left, top, right, bottom = expanded_box((480, 640, 3), (10.0, 20.0, 80.0, 100.0), 4.0)
    assert (left, top) == (0, 0)
    assert right - left == 320 and bottom - top == 400


def test_expanded_box_caps_the_scale_to_the_image() -> None:
    # a 96x132 crop whose whole width is the face: x2.7 cannot fit, so the factor is capped
    left, top, right, bottom = expanded_box((132, 96, 3), (0.0, 18.0, 96.0, 96.0), 2.7)
    assert right - left + 1 == 96 and bottom - top + 1 == 96
    assert top >= 0 and bottom <= 131


def test_crop_patch_is_80x80_bgr_of_the_region() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[:, :150] = (255, 0, 0)  # left half blue (BGR)
    patch = crop_patch(img, (100.0, 80.0, 40.0, 40.0), 2.7)
    assert patch.shape == (80, 80, 3) and patch.dtype == np.uint8
    assert patch[40, 5, 0] == 255 and patch[40, 75, 0] == 0  # still BGR, split in the middle


def test_fuse_scores_without_cues_is_the_model_score_and_cues_only_lower_it() -> None:
    assert fuse_scores(0.73, {}) == 0.73
    assert fuse_scores(0.73, {"colour_cast": 0.0}) == pytest.approx(0.73)
    lowered = [fuse_scores(0.9, {"colour_cast": s}) for s in (0.0, 0.25, 0.5, 1.0)]
    assert lowered == sorted(lowered, reverse=True) and lowered[-1] < 0.1
    assert fuse_scores(0.9, {"moire": 1.0}, {"colour_cast": 8.0}) == pytest.approx(0.9)


def test_cue_limits_ramp_both_ways() -> None:
    assert CueLimits(-3.0, -9.0).strength(0.0) == 0.0
    assert CueLimits(-3.0, -9.0).strength(-6.0) == pytest.approx(0.5)
    assert CueLimits(-3.0, -9.0).strength(-20.0) == 1.0
    assert CueLimits(60.0, 90.0).strength(75.0) == pytest.approx(0.5)
    assert CueLimits(60.0, 90.0).strength(float("nan")) == 0.0


def test_bad_options_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown cues"):
        PassiveLiveness(cues=("sparkle",))
    with pytest.raises(ConfigError, match="threshold"):
        PassiveLiveness(threshold=1.5)
    with pytest.raises(ConfigError, match="unknown model names"):
        PassiveLiveness(model_paths={"minifasnet_v3": tmp_path})


# --- cues on real images --------------------------------------------------------------------


def test_colour_cast_fires_on_replayed_faces_not_on_live_ones(data_dir: Path) -> None:
    root = data_dir / "pad" / "replay_2019"
    if not root.is_dir():
        pytest.skip("replay_2019 not found")
    live = sorted((root / "live").glob("*.png"), key=lambda p: int(p.stem))[::20]
    spoof = sorted((root / "spoof").glob("*.png"), key=lambda p: int(p.stem))[::20]
    box = _square_box()
    live_b = [colour_cast(_crop(p), box).value for p in live]
    spoof_b = [colour_cast(_crop(p), box).value for p in spoof]
    lim = colour_cast(_crop(live[0]), box).limits
    assert min(live_b) > lim.none  # no live crop gets any strength
    assert max(spoof_b) < lim.full  # every replayed crop gets full strength


def test_all_cues_run_and_report_plain_values(live_selfie: np.ndarray) -> None:
    box = (119.0, 113.0, 170.0, 240.0)
    res = compute_cues(live_selfie, box)
    assert tuple(res) == CUE_NAMES
    for r in res.values():
        assert 0.0 <= r.strength <= 1.0 and np.isfinite(r.value)
        json.dumps(r.to_dict())
    assert res["colour_cast"].value > 0  # a live face is not blue


# --- the engine on real models and data -----------------------------------------------------


@pytest.mark.parametrize("which", ["image_F1.jpg", "image_F2.jpg", "image_T1.jpg", "image_T2.jpg"])
def test_silent_face_samples_are_classified_as_labelled(
    engine: PassiveLiveness, samples: list[dict[str, str]], which: str
) -> None:
    row = next(r for r in samples if r["path"].endswith(which))
    r = engine.check(row["file"])
    assert r.status == ("live" if row["label"] == "live" else "spoof"), r.to_dict()
    assert r.faces == 1 and r.face_box is not None
    assert set(r.model_scores) == set(MODEL_SCALES)
    assert r.threshold == DEFAULT_THRESHOLD and r.apcer_target == DEFAULT_APCER_TARGET
    assert r.codes[0] == ("PAD_LIVE" if r.is_live else "PAD_SPOOF_SUSPECTED")


def test_replay_live_and_spoof_crops_separate(engine: PassiveLiveness, data_dir: Path) -> None:
    root = data_dir / "pad" / "replay_2019"
    if not root.is_dir():
        pytest.skip("replay_2019 not found")
    live = sorted((root / "live").glob("*.png"), key=lambda p: int(p.stem))[::10]
    spoof = sorted((root / "spoof").glob("*.png"), key=lambda p: int(p.stem))[::10]
    box = _square_box()
    lr = [engine.check(_crop(p), face_box=box) for p in live]
    sr = [engine.check(_crop(p), face_box=box) for p in spoof]
    assert all(r.checked for r in lr + sr)
    # the models alone rank live above spoof
    lm = np.array([r.model_score for r in lr], dtype=float)[:, None]
    sm = np.array([r.model_score for r in sr], dtype=float)[None, :]
    assert float((lm > sm).mean()) > 0.95
    # at the shipped operating point: no replayed crop passes, most live ones do
    assert not any(r.is_live for r in sr)
    assert all("PAD_COLOUR_CAST" in r.codes for r in sr)
    assert sum(r.is_live for r in lr) >= 0.85 * len(lr)


def test_explicit_face_box_gives_the_same_answer_as_detection(
    engine: PassiveLiveness, live_selfie: np.ndarray
) -> None:
    detected = engine.check(live_selfie)
    assert detected.face_box is not None
    given = engine.check(live_selfie, face_box=detected.face_box)
    assert given.score == pytest.approx(detected.score, abs=1e-6)
    assert given.faces is None and detected.faces == 1


def test_a_blue_cast_turns_a_live_face_into_a_suspected_replay(
    engine: PassiveLiveness, live_selfie: np.ndarray
) -> None:
    # simulate a cold display white point: boost blue, cut red
    cold = live_selfie.astype(np.float32) * np.array([1.35, 1.0, 0.7], np.float32)
    cold_img = np.clip(cold, 0, 255).astype(np.uint8)
    r = engine.check(cold_img)
    assert r.status == "spoof"
    assert "PAD_COLOUR_CAST" in r.codes and r.cue_scores["colour_cast"] == 1.0
    assert r.model_score is not None and r.score is not None and r.score < r.model_score


def test_no_face_is_not_checked_not_spoof(engine: PassiveLiveness) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(60, 200, size=(480, 640, 3), dtype=np.uint8)
    r = engine.check(noise)
    assert r.status == "not_checked" and not r.is_live and r.score is None
    assert r.codes == ("PAD_NO_FACE_NOT_CHECKED",)
    assert r.faces == 0


def test_very_dark_image_is_low_light_not_checked(
    engine: PassiveLiveness, live_selfie: np.ndarray
) -> None:
    dark = (live_selfie.astype(np.float32) * 0.08).astype(np.uint8)
    r = engine.check(dark)
    assert r.status == "not_checked"
    assert "PAD_LOW_LIGHT_NOT_CHECKED" in r.codes
    assert r.reasons[-1].evidence["brightness"] < r.reasons[-1].evidence["limit"]


def test_greyscale_photo_is_not_checked(engine: PassiveLiveness, live_selfie: np.ndarray) -> None:
    grey = cv2.cvtColor(cv2.cvtColor(live_selfie, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    r = engine.check(grey)
    assert r.status == "not_checked" and r.codes == ("PAD_GREYSCALE_NOT_CHECKED",)


def test_small_face_is_not_checked(engine: PassiveLiveness, live_selfie: np.ndarray) -> None:
    r = engine.check(live_selfie, face_box=(200, 200, 20, 24))
    assert r.status == "not_checked" and r.codes == ("PAD_FACE_TOO_SMALL_NOT_CHECKED",)


def test_missing_model_is_not_checked_with_the_build_command(
    tmp_path: Path, live_selfie: np.ndarray
) -> None:
    r = PassiveLiveness(model_dir=tmp_path).check(live_selfie)
    assert r.status == "not_checked" and r.codes == ("PAD_MODEL_UNAVAILABLE",)
    assert "kyc models build minifasnet_v2 minifasnet_v1se" in r.reasons[0].message
    assert r.reasons[0].evidence["error"] == "MODEL_UNAVAILABLE"
    json.dumps(r.to_dict())


def test_corrupt_model_is_not_checked(
    tmp_path: Path, pad_models: Path, live_selfie: np.ndarray
) -> None:
    bad = tmp_path / "2.7_80x80_MiniFASNetV2.onnx"
    bad.write_bytes(b"not an onnx model")
    eng = PassiveLiveness(
        model_paths={"minifasnet_v2": bad, "minifasnet_v1se": pad_models},
    )
    r = eng.check(live_selfie)
    assert r.status == "not_checked" and r.codes == ("PAD_MODEL_UNAVAILABLE",)
    assert r.reasons[0].evidence["error"] == "MODEL_CORRUPT"


def test_result_is_frozen_and_to_dict_is_plain_json(
    engine: PassiveLiveness, live_selfie: np.ndarray
) -> None:
    r = engine.check(live_selfie)
    assert isinstance(r, LivenessResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = "spoof"  # type: ignore[misc]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["status"] == "live" and d["is_live"] is True
    assert d["threshold"] == DEFAULT_THRESHOLD and d["apcer_target"] == DEFAULT_APCER_TARGET
    assert {m["name"] for m in d["models"]} == {*MODEL_SCALES, "yunet_2023mar"}
    assert all(len(m["sha256"]) == 64 for m in d["models"])
    assert set(d["model_probabilities"]) == set(MODEL_SCALES)
    assert all(abs(sum(p) - 1.0) < 1e-5 for p in d["model_probabilities"].values())
    assert d["reasons"][0]["code"] == "PAD_LIVE"


def test_bad_input_raises_typed_errors(engine: PassiveLiveness, live_selfie: np.ndarray) -> None:
    with pytest.raises(InvalidImage):
        engine.check(b"definitely not an image")
    with pytest.raises(ConfigError, match="outside"):
        engine.check(live_selfie, face_box=(5000, 10, 50, 50))
    with pytest.raises(ConfigError, match="four"):
        engine.check(live_selfie, face_box=(1, 2, 3))


def test_custom_threshold_makes_no_apcer_claim(pad_models: Path, live_selfie: np.ndarray) -> None:
    r = PassiveLiveness(model_dir=pad_models, threshold=0.9999999).check(live_selfie)
    assert r.apcer_target is None and r.operating_point == "custom"
    assert r.threshold == 0.9999999


def test_models_alone_when_no_cues(pad_models: Path, live_selfie: np.ndarray) -> None:
    r = PassiveLiveness(model_dir=pad_models, cues=()).check(live_selfie)
    assert r.cues == () and r.score == r.model_score


def test_one_engine_is_safe_to_share_between_threads(
    engine: PassiveLiveness, samples: list[dict[str, str]]
) -> None:
    images = [load_image(r["file"]) for r in samples if "T2" not in r["path"]]
    expected = [engine.check(img).score for img in images]
    got: dict[int, list[float | None]] = {}

    def work(k: int) -> None:
        got[k] = [engine.check(img).score for img in images]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == pytest.approx(expected, abs=1e-9) for v in got.values())


def test_check_liveness_uses_the_registry_search(
    monkeypatch: pytest.MonkeyPatch, pad_models: Path, model_dir: Path, live_selfie: np.ndarray
) -> None:
    monkeypatch.setenv("KYC_MODEL_DIR", f"{pad_models}{os.pathsep}{model_dir}")
    monkeypatch.setattr(passive_mod, "_default_engine", None)
    r = check_liveness(live_selfie)
    assert r.status == "live"
    assert {m.name for m in r.models} == {*MODEL_SCALES, "yunet_2023mar"}


# --- command line (src/kyc/_cli/liveness.py) --------------------------------------------------


def _cli(argv: list[str]) -> int:
    import argparse

    from kyc._cli import liveness as cli_liveness

    parser = argparse.ArgumentParser(prog="kyc")
    cli_liveness.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_liveness_exit_codes_and_json(
    pad_models: Path,
    engine: PassiveLiveness,
    samples: list[dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = {Path(r["path"]).name: r["file"] for r in samples}
    assert _cli(["liveness", files["image_T1.jpg"], "--models", str(pad_models)]) == 0
    assert "PAD_LIVE" in capsys.readouterr().out
    assert _cli(["liveness", files["image_F2.jpg"], "--models", str(pad_models), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "spoof"
    assert _cli(["liveness", files["image_T1.jpg"], "--models", str(tmp_path)]) == 3
    assert "kyc models build minifasnet_v2 minifasnet_v1se" in capsys.readouterr().out
