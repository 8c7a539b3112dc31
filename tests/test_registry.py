"""Model registry: manifest, resolution order, sha256 checks, onnxruntime sessions."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.errors import ConfigError, ModelCorrupt, ModelInvalid, ModelUnavailable
from kyc.models import (
    ModelRef,
    ModelSpec,
    clear_caches,
    file_sha256,
    load_session,
    manifest,
    manifest_path,
    model_ref,
    model_spec,
    model_status,
    registry,
    resolve_model,
    session_info,
)

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "yunet_2023mar": "face_detection_yunet_2023mar.onnx",
    "dlib_resnet_v1": "dlib_face_recognition_resnet_model_v1.onnx",
    "dlib_resnet_v1_dat": "dlib_face_recognition_resnet_model_v1.dat",
    "minifasnet_v2": "2.7_80x80_MiniFASNetV2.onnx",
    "minifasnet_v2_pth": "2.7_80x80_MiniFASNetV2.pth",
    "minifasnet_v1se": "4_0_0_80x80_MiniFASNetV1SE.onnx",
    "minifasnet_v1se_pth": "4_0_0_80x80_MiniFASNetV1SE.pth",
    "face_landmarker": "face_landmarker.task",
    "mobilefacenet_eval_only": "mobilefacenet_eval_only.onnx",
}
YUNET = "face_detection_yunet_2023mar.onnx"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test gets an empty user cache, no model dir, and fresh registry caches."""
    monkeypatch.setenv("KYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KYC_MODEL_DIR", raising=False)
    monkeypatch.delenv("KYC_INTRA_OP_THREADS", raising=False)
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Path:
    """Point KYC_MODEL_DIR at the real model folder."""
    monkeypatch.setenv("KYC_MODEL_DIR", str(model_dir))
    return model_dir


def patch_spec(monkeypatch: pytest.MonkeyPatch, name: str, **changes: Any) -> ModelSpec:
    """Replace one manifest entry for the duration of a test."""
    specs = registry._load_manifest()
    new = tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in specs)
    monkeypatch.setattr(registry, "_load_manifest", lambda: new)
    return next(s for s in new if s.name == name)


# --- manifest -------------------------------------------------------------------------------


def test_manifest_lists_every_model_with_its_file() -> None:
    specs = manifest()
    assert {n: s.filename for n, s in specs.items()} == EXPECTED
    for spec in specs.values():
        assert spec.licence and spec.role and spec.family and spec.description
        assert all(len(d) == 64 for d in spec.sha256)
        if spec.build_from is not None:
            assert spec.build_from in specs and spec.format == "onnx"
            assert specs[spec.build_from].pinned, "a build source must be pinned"
        elif spec.ships:
            assert spec.pinned and spec.source_url.startswith("https://"), spec.name
    assert specs["dlib_resnet_v1"].build_from == "dlib_resnet_v1_dat"
    assert specs["minifasnet_v2"].build_from == "minifasnet_v2_pth"
    assert specs["minifasnet_v1se"].build_from == "minifasnet_v1se_pth"
    eval_only = specs["mobilefacenet_eval_only"]
    assert not eval_only.ships and not eval_only.default and not eval_only.source_url


def test_manifest_input_specs_follow_the_design() -> None:
    dlib = model_spec("dlib_resnet_v1").input
    assert list(dlib["shape"]) == ["N", 3, 150, 150]
    assert (dlib["layout"], dlib["color"], dlib["scale"], dlib["size"]) == (
        "NCHW",
        "RGB",
        "0..255",
        150,
    )
    for name, box in (("minifasnet_v2", 2.7), ("minifasnet_v1se", 4.0)):
        inp = model_spec(name).input
        assert list(inp["shape"]) == ["N", 3, 80, 80]
        assert (inp["color"], inp["scale"], inp["box_scale"]) == ("BGR", "0..255", box)
    assert model_spec("yunet_2023mar").input["size"] == 640
    assert model_spec("mobilefacenet_eval_only").input["layout"] == "NHWC"


def test_manifest_digests_and_sizes_match_the_real_files(model_dir: Path) -> None:
    checked = 0
    for spec in manifest().values():
        path = model_dir / spec.filename
        if not path.is_file():
            assert spec.built, f"{spec.filename} should be in {model_dir}"
            continue
        assert file_sha256(path) in spec.sha256, spec.name
        if spec.size is not None:
            assert path.stat().st_size == spec.size, spec.name
        checked += 1
    assert checked >= 7


def test_manifest_in_use_is_the_repository_manifest() -> None:
    assert manifest_path().read_bytes() == (ROOT / "models" / "manifest.toml").read_bytes()


def test_specs_are_immutable_and_serialise_to_json() -> None:
    spec = model_spec("dlib_resnet_v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.filename = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.input["size"] = 1  # type: ignore[index]
    out = json.loads(json.dumps(spec.to_dict()))
    assert out["input"]["shape"] == ["N", 3, 150, 150] and out["build_from"] == "dlib_resnet_v1_dat"


def test_unknown_model_is_unavailable_and_lists_known_names() -> None:
    with pytest.raises(ModelUnavailable, match=r"unknown model 'nope'.*yunet_2023mar"):
        model_spec("nope")
    with pytest.raises(ModelUnavailable):
        resolve_model("nope")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"sha256": []}, "lacks 'filename'"),
        ({"filename": "../x.onnx"}, "bare file name"),
        ({"filename": "x.onnx", "sha256": ["abc"]}, "not a sha256"),
        ({"filename": "x.onnx", "format": "pickle"}, "unknown format"),
        ({"filename": "x.onnx", "ships": "yes"}, "wrong type"),
        ({"filename": "x.onnx", "size": -1}, "positive"),
        ({"filename": "x.onnx", "source_format": "zip"}, "unknown source_format"),
    ],
)
def test_malformed_manifest_entries_are_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_mapping("m", table)


def test_spec_from_mapping_accepts_a_lender_model() -> None:
    spec = ModelSpec.from_mapping(
        "lender_arcface",
        {"filename": "w600k_r50.onnx", "sha256": "AB" * 32, "input": {"size": 112}},
    )
    assert spec.sha256 == ("ab" * 32,) and spec.input["size"] == 112 and spec.format == "onnx"
    assert spec.accepts("AB" * 32) and not spec.accepts("cd" * 32)


# --- resolution -----------------------------------------------------------------------------


def test_resolves_from_kyc_model_dir(shared: Path) -> None:
    assert resolve_model("yunet_2023mar") == (shared / YUNET).resolve()


def test_explicit_path_wins_and_may_be_a_file_or_a_folder(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copyfile(shared / YUNET, mine / YUNET)
    assert resolve_model("yunet_2023mar", mine) == (mine / YUNET).resolve()
    assert resolve_model("yunet_2023mar", mine / YUNET) == (mine / YUNET).resolve()
    renamed = mine / "detector.onnx"
    shutil.copyfile(shared / YUNET, renamed)
    assert resolve_model("yunet_2023mar", str(renamed)) == renamed.resolve()


def test_missing_explicit_path_does_not_fall_back(shared: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="explicit path") as info:
        resolve_model("yunet_2023mar", tmp_path / "absent.onnx")
    assert str(tmp_path / "absent.onnx") in info.value.message


def test_user_cache_is_searched_after_the_model_dir(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("KYC_MODEL_DIR", str(empty))
    cache = registry.cache_dir()
    cache.mkdir(parents=True)
    shutil.copyfile(model_dir / YUNET, cache / YUNET)
    assert registry.search_dirs() == [empty, cache]
    assert resolve_model("yunet_2023mar") == (cache / YUNET).resolve()


def test_several_model_dirs_are_searched_in_order(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("KYC_MODEL_DIR", os.pathsep.join([str(empty), str(model_dir)]))
    assert resolve_model("face_landmarker") == (model_dir / "face_landmarker.task").resolve()


def test_missing_model_lists_searched_places_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        resolve_model("yunet_2023mar")
    msg = info.value.message
    assert str(registry.cache_dir() / YUNET) in msg and "kyc models pull yunet_2023mar" in msg
    with pytest.raises(ModelUnavailable) as built:
        resolve_model("dlib_resnet_v1")
    msg = built.value.message
    assert "kyc models build dlib_resnet_v1" in msg and "kyc models pull dlib_resnet_v1_dat" in msg
    assert "face_recognition_models" in msg


def test_wrong_digest_is_corrupt_and_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "models"
    bad.mkdir()
    (bad / YUNET).write_bytes(b"not the detector")
    with pytest.raises(ModelCorrupt) as info:
        resolve_model("yunet_2023mar", bad)
    assert str((bad / YUNET).resolve()) in info.value.message
    assert "kyc models pull yunet_2023mar" in info.value.message


def test_a_corrupt_copy_is_not_skipped_for_a_good_one(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / YUNET).write_bytes((model_dir / YUNET).read_bytes()[:1000])
    monkeypatch.setenv("KYC_MODEL_DIR", os.pathsep.join([str(bad), str(model_dir)]))
    with pytest.raises(ModelCorrupt, match=re.escape(str(bad))):
        resolve_model("yunet_2023mar")


def test_model_status_reports_without_raising(model_dir: Path, tmp_path: Path) -> None:
    ok = model_status("yunet_2023mar", model_dir)
    assert (ok.status, ok.ok, ok.path) == ("ok", True, str((model_dir / YUNET).resolve()))
    missing = model_status("yunet_2023mar")
    assert missing.status == "missing" and not missing.ok and "kyc models pull" in missing.message
    (tmp_path / YUNET).write_bytes(b"x")
    corrupt = model_status("yunet_2023mar", tmp_path)
    assert corrupt.status == "corrupt" and corrupt.sha256 == file_sha256(tmp_path / YUNET)
    assert json.loads(json.dumps(corrupt.to_dict()))["status"] == "corrupt"


def test_unpinned_models_are_accepted_and_reported(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_spec(monkeypatch, "yunet_2023mar", sha256=())
    st = model_status("yunet_2023mar", model_dir)
    assert st.status == "unpinned" and st.ok
    assert resolve_model("yunet_2023mar", model_dir).name == YUNET


# --- digests --------------------------------------------------------------------------------


def test_sha256_is_computed_once_per_path_size_and_mtime(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = registry._hash_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(registry, "_hash_file", counting)
    f = tmp_path / YUNET
    shutil.copyfile(model_dir / YUNET, f)
    for _ in range(3):
        resolve_model("yunet_2023mar", f)
    assert len(calls) == 1
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    resolve_model("yunet_2023mar", f)
    assert len(calls) == 2
    f.write_bytes(b"changed")
    with pytest.raises(ModelCorrupt):
        resolve_model("yunet_2023mar", f)
    assert len(calls) == 3


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "blob"
    f.write_bytes(os.urandom(3 << 20))
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(ModelUnavailable, match="cannot read"):
        file_sha256(tmp_path / "absent")


# --- sessions -------------------------------------------------------------------------------


def test_sessions_are_cached_per_file_and_thread_count(shared: Path) -> None:
    a = load_session("yunet_2023mar")
    assert load_session("yunet_2023mar") is a
    one = load_session("yunet_2023mar", intra_op_num_threads=1)
    assert one is not a and load_session("yunet_2023mar", intra_op_num_threads=1) is one
    assert one.get_session_options().intra_op_num_threads == 1
    opts = a.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert [p for p in a.get_providers()] == ["CPUExecutionProvider"]


def test_thread_count_from_the_environment(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYC_INTRA_OP_THREADS", "1")
    s = load_session("yunet_2023mar")
    assert s.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("KYC_INTRA_OP_THREADS", "many")
    with pytest.raises(ConfigError, match="KYC_INTRA_OP_THREADS"):
        load_session("yunet_2023mar")
    with pytest.raises(ConfigError, match="non-negative"):
        load_session("yunet_2023mar", intra_op_num_threads=-1)


def test_concurrent_first_use_creates_one_session(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[Path] = []
    real: Callable[..., Any] = registry._create_session

    def counting(file: Path, threads: int) -> Any:
        created.append(file)
        return real(file, threads)

    monkeypatch.setattr(registry, "_create_session", counting)
    results: list[Any] = []
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        results.append(load_session("yunet_2023mar", intra_op_num_threads=1))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert len(created) == 1


def test_embedder_session_runs_on_its_declared_input(shared: Path) -> None:
    session = load_session("dlib_resnet_v1", intra_op_num_threads=1)
    spec = model_spec("dlib_resnet_v1")
    size = spec.input["size"]
    batch = np.full((2, 3, size, size), 128.0, np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: batch})
    assert out.shape == (2, 128) and np.isfinite(out).all()
    assert np.allclose(out[0], out[1], atol=1e-5)


def test_session_info_and_model_ref_name_the_file_and_digest(shared: Path) -> None:
    session = load_session("yunet_2023mar")
    ref = session_info(session)
    assert ref == model_ref("yunet_2023mar")
    assert ref == ModelRef("yunet_2023mar", model_spec("yunet_2023mar").sha256[0], ref.path)
    assert Path(ref.path) == (shared / YUNET).resolve()
    assert ref.to_dict()["sha256"] == ref.sha256
    own = model_ref(path=shared / "mobilefacenet_eval_only.onnx")
    assert own.name == "mobilefacenet_eval_only" and own.sha256.startswith("d14f9d2f")
    with pytest.raises(ModelUnavailable, match="not created by"):
        session_info(object())  # type: ignore[arg-type]


def test_a_callers_own_onnx_file_with_a_pinned_digest(model_dir: Path) -> None:
    path = model_dir / "mobilefacenet_eval_only.onnx"
    digest = file_sha256(path)
    s = load_session(path=path, sha256=digest.upper())
    assert session_info(s).name == "mobilefacenet_eval_only"
    with pytest.raises(ModelCorrupt, match=re.escape("mobilefacenet_eval_only.onnx")):
        load_session(path=path, sha256="0" * 64)
    with pytest.raises(TypeError):
        load_session()


def test_truncated_onnx_is_invalid_and_names_the_file(model_dir: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes((model_dir / YUNET).read_bytes()[:50_000])
    with pytest.raises(ModelInvalid) as info:
        load_session(path=cut)
    assert str(cut.resolve()) in info.value.message
    # under a manifest name, the digest check catches it first
    (tmp_path / YUNET).write_bytes((model_dir / YUNET).read_bytes()[:50_000])
    with pytest.raises(ModelCorrupt, match=re.escape(str(tmp_path))):
        load_session("yunet_2023mar", path=tmp_path)


def test_non_onnx_files_are_invalid(model_dir: Path, tmp_path: Path, shared: Path) -> None:
    with pytest.raises(ModelInvalid, match=re.escape("face_landmarker.task")):
        load_session(path=model_dir / "face_landmarker.task")
    with pytest.raises(ModelInvalid, match="not ONNX"):
        load_session("face_landmarker")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelInvalid, match=re.escape("junk.onnx")):
        load_session(path=junk)
    with pytest.raises(ModelUnavailable, match="not found"):
        load_session(path=tmp_path / "absent.onnx")


def test_a_model_with_the_wrong_input_shape_is_invalid(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_spec(monkeypatch, "yunet_2023mar", sha256=())
    with pytest.raises(ModelInvalid, match=r"input shape \[1, 112, 112, 3\]"):
        load_session("yunet_2023mar", path=model_dir / "mobilefacenet_eval_only.onnx")


def test_module_examples_run() -> None:
    import doctest

    assert doctest.testmod(registry).failed == 0
