"""Tests for kyc.service over real HTTP.

The main fixture starts ``python -m kyc.cli serve`` in a subprocess on a free loopback port
(TMPDIR pointing at an empty folder, its working directory another empty folder, its output
captured to a file), waits until ``/healthz`` answers and sends real requests with httpx or
raw sockets. The MiniFASNet ONNX files are built from the shared .pth sources into a
temporary folder. The rate-limit test runs a second, in-process uvicorn with tight limits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")

from kyc.errors import ConfigError  # noqa: E402
from kyc.service.app import RateLimiter, ServiceConfig, create_app  # noqa: E402

TOKEN = "svc-test-token-0123456789abcdef"
TOKEN_2 = "svc-other-token-0123456789abcdef"
SECRET = "svc-test-hmac-secret-0123456789"
MAX_BODY_MB = 4
LIMIT = MAX_BODY_MB * 1024 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# raw identifiers sent in applications: none may come back in a response or reach the log
RAW = {
    "applicants": ["SVC-APPLICANT-7731", "SVC-APPLICANT-7732", "SVC-APPLICANT-7733"],
    "device": "svc-farm-device-91f2",
    "phone": "+1 415 555 0187",
    "email": "svc.ring.member@example.org",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    root: Path
    tmp: Path
    work: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text() if log else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not answer /healthz within 180 s")


@pytest.fixture(scope="module")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both MiniFASNet ONNX files, built from the shared .pth sources into a temp folder."""
    from kyc.liveness.passive import MODEL_SCALES
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("pad_models")
    for name in MODEL_SCALES:
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


@pytest.fixture(scope="module")
def server(
    model_dir: Path, data_dir: Path, pad_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("service")
    tmp, work, store = root / "tmp", root / "work", root / "store"
    for d in (tmp, work, store):
        d.mkdir()
    log = root / "server.log"
    port = _free_port()
    env = dict(os.environ)
    env.update(
        KYC_API_TOKEN=f"{TOKEN},{TOKEN_2}",
        KYC_HMAC_SECRET=SECRET,
        KYC_MODEL_DIR=str(model_dir),
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        TMP=str(tmp),
    )
    cmd = [
        sys.executable, "-m", "kyc.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--graph-store", str(store / "graph.db"), "--pad-models", str(pad_models),
        "--max-body-mb", str(MAX_BODY_MB), "--rate", "500", "--burst", "2000",
        "--challenge-moves", "turn_left", "--challenge-steps", "1", "--challenge-ttl", "600",
    ]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield Server(url, port, root, tmp, work, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Any]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def examples(data_dir: Path) -> Path:
    path = data_dir / "faces" / "face_recognition_examples" / "examples"
    if not path.is_dir():
        pytest.skip("face_recognition_examples not found")
    return path


def _photo(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def _raw_http(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Send ``head`` then ``chunks`` until the server answers; (status, response, sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + 16:
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            data += more
    finally:
        sock.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data, sent


# --- auth, schema, errors -------------------------------------------------------------------


def test_healthz_answers_without_a_token(server: Server) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/verify"), ("GET", "/openapi.json"), ("GET", "/v1/applicants/x/report"),
     ("POST", "/v1/liveness/sessions"), ("POST", "/v1/decision")],
)  # fmt: skip
def test_missing_or_wrong_token_is_401(server: Server, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}):
        r = httpx.request(method, server.url + path, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["code"] == "UNAUTHORIZED"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_second_token_is_accepted(server: Server) -> None:
    r = httpx.get(f"{server.url}/openapi.json",
                  headers={"Authorization": f"Bearer {TOKEN_2}"})  # fmt: skip
    assert r.status_code == 200


def test_openapi_schema_lists_the_endpoints(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/healthz": "get",
        "/v1/verify": "post",
        "/v1/liveness": "post",
        "/v1/liveness/sessions": "post",
        "/v1/liveness/sessions/{nonce}/frames": "post",
        "/v1/liveness/sessions/{nonce}/finish": "post",
        "/v1/applications": "post",
        "/v1/applicants/{applicant_id}/report": "get",
        "/v1/decision": "post",
    }
    for path, method in expected.items():
        assert method in paths.get(path, {}), path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    verify = paths["/v1/verify"]["post"]
    assert verify["security"] == [{"bearerAuth": []}]
    body = verify["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["required"]) == {"id_image", "selfie"}
    for code in ("401", "413", "429"):
        assert code in verify["responses"]
    assert paths["/healthz"]["get"]["security"] == []


def test_unknown_path_and_method_are_json_errors(client: Any) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = client.get("/v1/verify")
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"


# --- face match ---------------------------------------------------------------------------------


def test_verify_matches_obama_with_obama_720p(client: Any, examples: Path) -> None:
    r = client.post("/v1/verify", files={"id_image": _photo(examples / "obama.jpg"),
                                         "selfie": _photo(examples / "obama-720p.jpg")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "match" and out["is_match"] is True
    assert out["score"] <= out["threshold"]
    assert [x["code"] for x in out["reasons"]][-1] == "FACE_MATCH"
    assert {m["role"] for m in out["models"]} == {"detector", "embedder"}


def test_verify_rejects_biden_for_obama(client: Any, examples: Path) -> None:
    r = client.post("/v1/verify", files={"id_image": _photo(examples / "obama.jpg"),
                                         "selfie": _photo(examples / "biden.jpg")})
    assert r.status_code == 200
    out = r.json()
    assert out["status"] == "mismatch" and out["score"] > out["threshold"]
    assert "FACE_MISMATCH" in [x["code"] for x in out["reasons"]]


def test_verify_takes_photos_over_one_megabyte_in_memory(client: Any, data_dir: Path) -> None:
    celeb = data_dir / "faces" / "celebrities13"
    a, b = celeb / "img1.jpg", celeb / "img2.jpg"  # same person, 2.2 MB and 0.1 MB
    assert a.stat().st_size > 2 * 1024 * 1024
    r = client.post("/v1/verify", files={"id_image": _photo(a), "selfie": _photo(b)})
    assert r.status_code == 200 and r.json()["status"] == "match"


def test_bad_images_are_400_with_the_typed_code(client: Any, examples: Path) -> None:
    good = _photo(examples / "biden.jpg")
    r = client.post("/v1/verify", files={"id_image": ("x.jpg", b"not an image at all", "a/b"),
                                         "selfie": good})
    assert r.status_code == 400
    assert r.json()["code"] == "UNSUPPORTED_IMAGE" and r.json()["message"].startswith("id_image")
    data = (examples / "obama.jpg").read_bytes()
    r = client.post("/v1/verify", files={"id_image": good,
                                         "selfie": ("s.jpg", data[: len(data) // 2], "a/b")})
    assert r.status_code == 400
    assert r.json()["code"] == "TRUNCATED_IMAGE" and r.json()["message"].startswith("selfie")
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "GIF")
    r = client.post("/v1/verify", files={"id_image": ("a.gif", buf.getvalue(), "image/gif"),
                                         "selfie": good})
    assert r.status_code == 400 and r.json()["code"] == "UNSUPPORTED_IMAGE"
    r = client.post("/v1/verify", files={"id_image": ("a.png", png, "image/png"),
                                         "selfie": ("e.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and r.json()["code"] == "EMPTY_IMAGE"
    r = client.post("/v1/verify", files={"id_image": good})
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    assert "selfie" in r.json()["message"]
    r = client.post("/v1/verify", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"


# --- body size ----------------------------------------------------------------------------------


def test_declared_oversize_body_is_refused_before_it_is_sent(server: Server) -> None:
    head = (
        f"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {50 * LIMIT}\r\n\r\n--xyz\r\n"
    ).encode()
    # only the headers and 7 bytes of a body declared 200 MiB long are ever sent: an answer
    # at all proves the server did not wait for (or read) the body
    status, data, _ = _raw_http(server.port, head, iter(()))
    assert status == 413, data[:300]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "BODY_TOO_LARGE"
    assert b"connection: close" in data.lower()


def test_streamed_oversize_body_is_cut_off(server: Server) -> None:
    head = (
        f"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = 64 * 1024
    total = 16 * LIMIT

    def chunks() -> Iterator[bytes]:
        first = b'--xyz\r\nContent-Disposition: form-data; name="id_image"; filename="a"\r\n\r\n'
        yield b"%x\r\n%s\r\n" % (len(first), first)
        for _ in range(total // piece):
            yield b"%x\r\n%s\r\n" % (piece, b"\0" * piece)

    status, data, sent = _raw_http(server.port, head, chunks())
    assert status == 413, data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["code"] == "BODY_TOO_LARGE"
    assert sent < total  # the server answered long before the client was done sending


def test_body_just_under_the_limit_is_read(client: Any, examples: Path) -> None:
    a, b = _photo(examples / "obama.jpg"), _photo(examples / "obama-480p.jpg")
    pad = b"\0" * (LIMIT - len(a[1]) - len(b[1]) - 2048)  # 2 KB left for multipart framing
    r = client.post("/v1/verify", files={"id_image": a, "selfie": b,
                                         "padding": ("p.bin", pad, "application/octet-stream")})
    assert r.status_code == 200 and r.json()["status"] == "match"
    assert int(r.request.headers["content-length"]) > LIMIT - 4096


# --- liveness -----------------------------------------------------------------------------------


def test_passive_liveness_live_and_spoof(client: Any, data_dir: Path) -> None:
    root = data_dir / "pad" / "silent_face_samples" / "images" / "sample"
    live = client.post("/v1/liveness", files={"image": _photo(root / "image_T1.jpg")})
    spoof = client.post("/v1/liveness", files={"image": _photo(root / "image_F1.jpg")})
    assert live.status_code == 200 and spoof.status_code == 200
    assert live.json()["status"] == "live" and live.json()["score"] >= live.json()["threshold"]
    assert spoof.json()["status"] == "spoof"
    assert "PAD_SPOOF_SUSPECTED" in [x["code"] for x in spoof.json()["reasons"]]
    r = client.post("/v1/liveness", files={"image": _photo(root / "image_T1.jpg")},
                    data={"face_box": "1,2,3"})  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"


@pytest.fixture(scope="module")
def video_jpegs(data_dir: Path) -> list[bytes]:
    path = data_dir / "pad" / "video" / "live_person_moving.webm"
    cap = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    while len(frames) < 46:  # frames 0-45: neutral pose, then a turn to the subject's left
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    cap.release()
    if len(frames) < 46:
        pytest.skip(f"this OpenCV build cannot decode {path}")
    return frames


def _frames_form(frames: list[bytes], start: int) -> tuple[list[Any], dict[str, list[str]]]:
    files = [("frame", (f"f{start + i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    stamps = [str(round((start + i) * 1000 / 30)) for i in range(len(frames))]
    return files, {"timestamp_ms": stamps}


def test_active_session_passes_on_a_real_head_turn(client: Any, video_jpegs: list[bytes]) -> None:
    r = client.post("/v1/liveness/sessions", json={"subject": RAW["applicants"][0]})
    assert r.status_code == 201, r.text
    ch = r.json()
    assert [s["move"] for s in ch["steps"]] == ["turn_left"]  # the server's configured moves
    assert ch["expires_at"] > time.time() and ch["token"] and ch["subject_tag"]
    assert RAW["applicants"][0] not in r.text
    nonce = ch["nonce"]
    for start, stop in ((0, 20), (20, 46)):  # two batches
        files, data = _frames_form(video_jpegs[start:stop], start)
        r = client.post(f"/v1/liveness/sessions/{nonce}/frames", files=files, data=data)
        assert r.status_code == 200, r.text
    assert r.json()["frames"] <= 46 and r.json()["progress"]["state"] == "completed"
    # someone else's token cannot touch the session
    other = client.post(f"/v1/liveness/sessions/{nonce}/finish",
                        headers={"Authorization": f"Bearer {TOKEN_2}"})  # fmt: skip
    assert other.status_code == 404
    done = client.post(f"/v1/liveness/sessions/{nonce}/finish")
    assert done.status_code == 200, done.text
    out = done.json()
    assert out["status"] == "passed" and out["passed"] is True, out["reasons"]
    assert out["nonce"] == nonce and out["subject_tag"] == ch["subject_tag"]
    assert out["steps"][0]["status"] == "passed"
    assert out["pad"]["status"] == "checked" and out["pad"]["spoof"] == 0  # PAD on frames
    assert out["face_continuity"]["status"] == "checked"
    again = client.post(f"/v1/liveness/sessions/{nonce}/finish")
    assert again.json() == out  # finishing is idempotent
    files, data = _frames_form(video_jpegs[:1], 50)
    late = client.post(f"/v1/liveness/sessions/{nonce}/frames", files=files, data=data)
    assert late.status_code == 409 and late.json()["code"] == "SESSION_FINISHED"


def test_active_session_errors(client: Any, video_jpegs: list[bytes]) -> None:
    r = client.post("/v1/liveness/sessions/not-a-nonce/finish")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    nonce = client.post("/v1/liveness/sessions").json()["nonce"]
    files, _ = _frames_form(video_jpegs[:2], 0)
    r = client.post(f"/v1/liveness/sessions/{nonce}/frames", files=files,
                    data={"timestamp_ms": ["0"]})  # fmt: skip
    assert r.status_code == 400 and "timestamp_ms" in r.json()["message"]
    r = client.post(f"/v1/liveness/sessions/{nonce}/frames",
                    files=[("frame", ("f.jpg", b"garbage!", "image/jpeg"))],
                    data={"timestamp_ms": "0"})  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "UNSUPPORTED_IMAGE"
    # a session with no usable frames ends not_checked or failed, never passed
    out = client.post(f"/v1/liveness/sessions/{nonce}/finish").json()
    assert out["status"] in ("failed", "not_checked") and not out["passed"]
    r = client.post("/v1/liveness/sessions", json={"subject": 5})
    assert r.status_code == 400


# --- graph ------------------------------------------------------------------------------------


def _application(i: int, applicant: str) -> dict[str, Any]:
    return {
        "application_id": f"svc-app-{i}",
        "applicant_id": applicant,
        "lender_id": "L1",
        "lender_type": "nbank",
        "timestamp": f"2024-05-01T12:0{i}:00Z",
        "device_id": RAW["device"],
        "phones": [RAW["phone"]] if i == 0 else [],
        "email": RAW["email"] if i == 1 else None,
        "thin_file": True,
    }


def test_applications_and_report_roundtrip(client: Any) -> None:
    reports = []
    for i, applicant in enumerate(RAW["applicants"]):
        r = client.post("/v1/applications", json=_application(i, applicant))
        assert r.status_code == 200, r.text
        reports.append(r.json())
    last = reports[-1]
    assert last["applicant"].startswith("applicant:") and last["component_size"] == 3
    codes = [x["code"] for x in last["reasons"]]
    assert "DEVICE_SHARED_BY_3" in codes
    # the report endpoint hashes the raw id server-side and answers the same applicant
    got = client.get(f"/v1/applicants/{RAW['applicants'][2]}/report")
    assert got.status_code == 200
    assert got.json()["applicant"] == last["applicant"]
    assert got.json()["component_size"] == 3
    first = client.get(f"/v1/applicants/{RAW['applicants'][0]}/report").json()
    assert first["applicant"] == reports[0]["applicant"] and first["component_size"] == 3
    unseen = client.get("/v1/applicants/SVC-NEVER-SEEN/report").json()
    assert unseen["component_size"] == 0 and unseen["ring"] is None
    for r in [*reports, got.json(), first]:
        text = json.dumps(r)
        for raw in [*RAW["applicants"], RAW["device"], RAW["phone"], RAW["email"]]:
            assert raw not in text


def test_invalid_application_is_400_and_masks_raw_values(client: Any) -> None:
    bad = _application(9, "SVC-APPLICANT-BAD-1")
    bad["phones"] = ["+1 415 555 01"]  # too short to be a phone number
    r = client.post("/v1/applications", json=bad)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_RECORD"
    assert "+1 415 555 01" not in r.text and "SVC-APPLICANT-BAD-1" not in r.text
    r = client.post("/v1/applications", json=[1, 2])
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    r = client.post("/v1/applications", content=b"{not json",
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    missing = {k: v for k, v in _application(8, "SVC-APPLICANT-BAD-2").items() if k != "timestamp"}
    r = client.post("/v1/applications", json=missing)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_RECORD"
    assert "timestamp" in r.json()["message"]


# --- decision -----------------------------------------------------------------------------------


def test_decision_from_result_dicts(client: Any, examples: Path) -> None:
    match = client.post("/v1/verify", files={"id_image": _photo(examples / "obama.jpg"),
                                             "selfie": _photo(examples / "biden.jpg")}).json()
    graph = client.get(f"/v1/applicants/{RAW['applicants'][0]}/report").json()
    r = client.post("/v1/decision", json={"match": match, "graph": graph})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["outcome"] == "reject"
    face = next(x for x in out["reasons"] if x["code"] == "FACE_MISMATCH")
    assert face["action"] == "reject" and face["source"] == "face"
    assert out["subject"] == graph["applicant"]
    assert {c["name"]: c["ran"] for c in out["checks"]}["liveness"] is False
    assert out["policy"]["name"] and out["policy"]["version"]
    r = client.post("/v1/decision", json={"match": match, "nonsense": 1})
    assert r.status_code == 400 and "nonsense" in r.json()["message"]
    r = client.post("/v1/decision", json={"subject": "SVC-APPLICANT-7731"})  # a raw id
    assert r.status_code == 400 and r.json()["code"] == "INVALID_RECORD"
    assert "SVC-APPLICANT-7731" not in r.text


def test_decision_from_images_application_and_active_session(
    client: Any, examples: Path, video_jpegs: list[bytes]
) -> None:
    nonce = client.post("/v1/liveness/sessions").json()["nonce"]
    files, data = _frames_form(video_jpegs, 0)
    assert client.post(f"/v1/liveness/sessions/{nonce}/frames", files=files,
                       data=data).status_code == 200  # fmt: skip
    photos = {"id_image": _photo(examples / "obama.jpg"),
              "selfie": _photo(examples / "obama-720p.jpg")}  # fmt: skip
    record = json.dumps(_application(5, "SVC-APPLICANT-7739"))
    early = client.post("/v1/decision", files=photos,
                        data={"application": record, "session": nonce})  # fmt: skip
    assert early.status_code == 409 and early.json()["code"] == "SESSION_NOT_FINISHED"
    assert client.post(f"/v1/liveness/sessions/{nonce}/finish").json()["passed"]
    r = client.post("/v1/decision", files=photos,
                    data={"application": record, "session": nonce})  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["face"]["status"] == "match" and checks["active"]["status"] == "passed"
    assert checks["liveness"]["ran"] and checks["graph"]["ran"]
    assert out["subject"].startswith("applicant:")
    # the application shares the device of the three applicants above: the graph evidence
    assert any(x["code"].startswith("DEVICE_SHARED_BY_") for x in out["reasons"])
    assert out["outcome"] in ("review", "reject")
    assert "SVC-APPLICANT-7739" not in r.text and RAW["device"] not in r.text
    roles = {m.get("role") for m in out["models"]}
    assert {"detector", "embedder"} <= roles


# --- rate limit (a second server, in process, with tight limits) ---------------------------------


@contextlib.contextmanager
def _thread_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, None, None)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture()
def tight_server() -> Iterator[str]:
    app = create_app(ServiceConfig(tokens=(TOKEN,), secret=SECRET, rate_per_s=0.2, burst=2))
    with _thread_server(app) as url:
        yield url


def test_rate_limit_gives_429_with_retry_after(tight_server: str) -> None:
    with httpx.Client(base_url=tight_server, headers=AUTH, timeout=30) as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        r = c.get("/openapi.json")
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
        assert 1 <= int(r.headers["retry-after"]) <= 5
        assert httpx.get(f"{tight_server}/healthz").status_code == 200  # not limited


def test_rate_limiter_refills_over_time() -> None:
    t = [0.0]
    lim = RateLimiter(rate=2.0, burst=3, clock=lambda: t[0])
    assert [lim.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.acquire("a") == pytest.approx(0.5)
    assert lim.acquire("b") == 0.0  # buckets are per client
    t[0] = 0.5
    assert lim.acquire("a") == 0.0 and lim.acquire("a") > 0


# --- configuration ------------------------------------------------------------------------------


def test_config_refuses_weak_settings() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        ServiceConfig(tokens=("short",), secret=SECRET)
    with pytest.raises(ConfigError, match="secret"):
        ServiceConfig(tokens=(TOKEN,), secret="tiny")
    with pytest.raises(ConfigError, match="at least one"):
        ServiceConfig(tokens=(), secret=SECRET)
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ServiceConfig(tokens=(TOKEN,), secret=SECRET, max_body_bytes=0)
    with pytest.raises(ConfigError, match="rate_per_s"):
        ServiceConfig(tokens=(TOKEN,), secret=SECRET, rate_per_s=float("nan"))


def test_serve_refuses_a_missing_token_variable(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from kyc.cli import main

    monkeypatch.delenv("KYC_SVC_NO_SUCH_VAR", raising=False)
    monkeypatch.setenv("KYC_HMAC_SECRET", SECRET)
    assert main(["serve", "--token-env", "KYC_SVC_NO_SUCH_VAR"]) == 2
    assert "KYC_SVC_NO_SUCH_VAR" in capsys.readouterr().err


def test_missing_extra_raises_config_error_naming_the_install() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "from kyc.errors import ConfigError\n"
        "from kyc.service import ServiceConfig, create_app\n"
        f"cfg = ServiceConfig(tokens=({TOKEN!r},), secret={SECRET!r})\n"
        "try:\n    create_app(cfg)\nexcept ConfigError as e:\n    print('CONFIG', e.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert "CONFIG" in out.stdout and "pip install 'kyc[service]'" in out.stdout


def test_docstring_examples_run() -> None:
    import doctest

    import kyc.service
    import kyc.service.app

    assert doctest.testmod(kyc.service).failed == 0
    assert doctest.testmod(kyc.service.app).failed == 0


class _BrokenGraph:
    """A graph whose add() fails unexpectedly, with a raw value in the exception text."""

    def add(self, record: Any) -> Any:
        raise RuntimeError(f"boom while adding {record['applicant_id']}")

    def close(self) -> None:
        pass


def test_unexpected_errors_are_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ServiceConfig(tokens=(TOKEN,), secret=SECRET),
                     graph=_BrokenGraph())  # type: ignore[arg-type]  # fmt: skip
    with _thread_server(app) as url, caplog.at_level("INFO", logger="kyc.service"):
        r = httpx.post(f"{url}/v1/applications", headers=AUTH, timeout=30,
                       json=_application(0, "SVC-SECRET-APPLICANT-1"))  # fmt: skip
    assert r.status_code == 500 and r.json()["code"] == "INTERNAL_ERROR"
    assert "SVC-SECRET-APPLICANT-1" not in r.text and "boom" not in r.text
    assert "RuntimeError" in caplog.text and "SVC-SECRET-APPLICANT-1" not in caplog.text


def test_missing_model_is_503(tmp_path: Path, examples: Path, model_dir: Path) -> None:
    from kyc.face.detect import FaceDetector
    from kyc.face.verify import FaceVerifier

    missing = FaceVerifier(detector=FaceDetector(tmp_path / "no_such_yunet.onnx"))
    app = create_app(ServiceConfig(tokens=(TOKEN,), secret=SECRET), verifier=missing)
    with _thread_server(app) as url:
        r = httpx.post(f"{url}/v1/verify", headers=AUTH, timeout=60,
                       files={"id_image": _photo(examples / "obama.jpg"),
                              "selfie": _photo(examples / "biden.jpg")})  # fmt: skip
    assert r.status_code == 503 and r.json()["code"] == "MODEL_UNAVAILABLE"


# --- privacy: nothing on disk, nothing raw in the log (keep last: it reads the server's log) ---

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8")


def test_server_wrote_no_image_to_disk_and_logged_no_identifier(
    server: Server, client: Any, examples: Path
) -> None:
    # at least one upload over 1 MB (multipart parsers spool those to disk) and one record
    big = examples / "obama-1080p.jpg"
    r = client.post("/v1/verify", files={"id_image": _photo(big),
                                         "selfie": _photo(examples / "obama.jpg")})
    assert r.status_code == 200
    client.post("/v1/applications", json=_application(7, RAW["applicants"][1]))
    client.get(f"/v1/applicants/{RAW['applicants'][1]}/report")
    uploaded = big.read_bytes()[1000:1064]
    found = []
    for folder in (server.tmp, server.work):
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            # onnxruntime's telemetry writes a 51-byte session marker ($TMPDIR/.ses) when it
            # starts; it holds a time and a random id, nothing from a request
            if path.name == ".ses" and path.stat().st_size < 200:
                continue
            found.append(path)
            data = path.read_bytes()
            assert not data.startswith(_IMAGE_MAGIC) and uploaded not in data, path
    assert found == [], f"the server wrote files: {found}"
    log = server.output()
    assert "POST /v1/verify -> 200" in log
    assert "/v1/applicants/{applicant_id}/report" in log  # the template, never the raw path
    for raw in [*RAW["applicants"], RAW["device"], RAW["phone"], RAW["email"], TOKEN, TOKEN_2,
                SECRET, "SVC-APPLICANT-BAD-1", "SVC-APPLICANT-7739", "SVC-NEVER-SEEN"]:
        assert raw not in log, raw
