"""Tests for ``kyc verify`` run in-process through kyc.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kyc.cli import main


@pytest.fixture(scope="module")
def ex(model_dir: Path, data_dir: Path) -> Path:
    return data_dir / "faces/face_recognition_examples/examples"


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def test_match_exits_0_and_prints_the_decision(
    ex: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["verify", str(ex / "obama-480p.jpg"), str(ex / "obama.jpg")])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("match: distance ")
    assert "profile: " in out and "FACE_MATCH" in out


def test_mismatch_exits_1(ex: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", str(ex / "obama.jpg"), str(ex / "biden.jpg")])
    assert rc == 1
    assert capsys.readouterr().out.startswith("mismatch: ")


def test_json_output_parses_and_carries_the_result(
    ex: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["verify", str(ex / "obama-720p.jpg"), str(ex / "obama.jpg"), "--json"])
    data = _json(capsys)
    assert rc == 0
    assert data["status"] == "match" and data["is_match"] is True
    assert data["metric"] == "euclidean" and isinstance(data["score"], float)
    assert isinstance(data["models"], list) and len(data["models"]) == 2
    assert data["reasons"][-1]["code"] == "FACE_MATCH"  # type: ignore[index]


def test_not_checked_exits_1_and_says_so(
    ex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    rc = main(["verify", str(ex / "obama.jpg"), str(blank), "--json"])
    data = _json(capsys)
    assert rc == 1
    assert data["status"] == "not_checked" and data["score"] is None
    assert [r["code"] for r in data["reasons"]] == ["NO_FACE_IN_SELFIE"]  # type: ignore[attr-defined]


def test_custom_threshold_and_multi_face_options(
    ex: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["verify", str(ex / "two_people.jpg"), str(ex / "biden.jpg"), "--json",
               "--threshold", "0.45", "--multi-face", "reject"])  # fmt: skip
    data = _json(capsys)
    assert rc == 1
    assert data["status"] == "not_checked" and data["profile"] == "custom"
    assert data["threshold"] == 0.45 and data["fmr_target"] is None


def test_mobilefacenet_embedder_option(ex: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", str(ex / "obama-720p.jpg"), str(ex / "obama.jpg"), "--json",
               "--embedder", "mobilefacenet_eval_only", "--threshold", "0.45"])  # fmt: skip
    data = _json(capsys)
    assert rc == 0 and data["metric"] == "cosine"


def test_bad_input_exits_2_with_a_typed_message(
    ex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "cut.jpg"
    bad.write_bytes((ex / "obama.jpg").read_bytes()[:4000])
    rc = main(["verify", str(bad), str(ex / "obama.jpg")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "TRUNCATED_IMAGE" in err and "id_image:" in err
    rc = main(["verify", str(tmp_path / "missing.jpg"), str(ex / "obama.jpg")])
    assert rc == 2


def test_unknown_profile_exits_2(ex: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", str(ex / "obama.jpg"), str(ex / "obama2.jpg"), "--profile", "nope"])
    assert rc == 2
    assert "no threshold profile named 'nope'" in capsys.readouterr().err


def test_missing_model_exits_3(
    ex: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KYC_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("KYC_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["verify", str(ex / "obama.jpg"), str(ex / "obama2.jpg")])
    assert rc == 3
    assert "MODEL_UNAVAILABLE" in capsys.readouterr().err
