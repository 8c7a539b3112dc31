"""Bounded local load test of the HTTP service: latency, errors, oversized uploads.

Starts ``kyc serve`` in a subprocess on 127.0.0.1 (a free port, empty TMPDIR and working
folder), then ``--clients`` threads (default 4), each with its own keep-alive connection,
post real photo pairs to ``/v1/verify`` back to back for ``--seconds`` (default 30).
Reported: requests, throughput, p50/p90/p99/max latency, error rate by status. While the
load runs, oversized uploads are sent on raw sockets:

* a ``Content-Length`` far over ``--max-body-mb``: the 413 must come back after only the
  first 64 KiB of the body were sent (the body is not read);
* a chunked body with no length (a multipart part that never ends): bytes are streamed until
  the server answers; the bytes sent before the 413 are reported: the limit plus what the
  kernel buffered (the server's TCP receive buffer may grow to ``tcp_rmem`` max), never the
  whole 32x-the-limit upload;
* a small PNG whose header declares 30000x30000 pixels: 400 ``IMAGE_TOO_LARGE``.

As a side-by-side reference the same pairs are verified in-process by
:class:`kyc.face.verify.FaceVerifier` first (one caller, serial): the service's p50 is
reported as a ratio to the library's p50.

Usage (from the repository root, with ``KYC_MODEL_DIR``/``KYC_DATA_DIR`` or ../shared)::

    nice -n 10 python benchmarks/service_load.py --seconds 30 --clients 4
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Server", "load", "oversize_checks", "photo_pairs", "start_server"]

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token-0123456789abcdef"
SECRET = "load-test-hmac-secret-0123456789"


def _shared(env: str, sub: str) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else ROOT.parent / "shared" / sub


def photo_pairs(data_dir: Path) -> list[tuple[str, bytes, str, bytes]]:
    """Real ID/selfie pairs (same and different people, 20 KB to 0.5 MB files)."""
    ex = data_dir / "faces" / "face_recognition_examples" / "examples"
    celeb = data_dir / "faces" / "celebrities13"
    names = [(ex / "obama.jpg", ex / "obama2.jpg"), (ex / "obama-480p.jpg", ex / "biden.jpg"),
             (ex / "obama_small.jpg", ex / "obama-240p.jpg"), (celeb / "img1.jpg",
                                                               celeb / "img2.jpg"),
             (celeb / "img12.jpg", celeb / "img3.jpg"), (celeb / "img16.jpg", celeb / "img17.jpg"),
             (celeb / "img25.jpg", celeb / "img24.jpg"), (celeb / "img5.jpg", celeb / "img51.jpg")]
    return [(a.name, a.read_bytes(), b.name, b.read_bytes()) for a, b in names]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``kyc serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def stop(self) -> None:
        """Terminate the server (kill after 30 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(folder: Path, *, model_dir: Path, max_body_mb: float = 4.0,
                 workers: int = 2) -> Server:
    """Start ``kyc serve`` on a free loopback port; returns once ``/healthz`` answers."""
    import httpx

    tmp, work = folder / "tmp", folder / "work"
    tmp.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ)
    env.update(KYC_API_TOKEN=TOKEN, KYC_HMAC_SECRET=SECRET, KYC_MODEL_DIR=str(model_dir),
               TMPDIR=str(tmp), PYTHONPATH=str(ROOT / "src") + os.pathsep +
               env.get("PYTHONPATH", ""))
    log = folder / "server.log"
    cmd = [sys.executable, "-m", "kyc.cli", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--max-body-mb", str(max_body_mb), "--rate", "100000", "--burst",
           "100000", "--workers", str(workers), "--log-level", "warning"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kyc serve exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Server(proc, url, port, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("kyc serve did not answer /healthz within 180 s")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def load(url: str, pairs: list[tuple[str, bytes, str, bytes]], *, clients: int = 4,
         seconds: float = 30.0, warmup: int = 2) -> dict[str, Any]:
    """``clients`` threads post ``/v1/verify`` back to back for ``seconds``; the figures."""
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:  # load the models
        for a_name, a, b_name, b in pairs[:warmup]:
            c.post("/v1/verify", files={"id_image": (a_name, a, "image/jpeg"),
                                        "selfie": (b_name, b, "image/jpeg")}).raise_for_status()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    stop_at = [0.0]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            barrier.wait()
            if k == 0:
                stop_at[0] = time.monotonic() + seconds
            while not stop_at[0]:
                time.sleep(0.001)
            i = k
            while time.monotonic() < stop_at[0]:
                a_name, a, b_name, b = pairs[i % len(pairs)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/verify", files={"id_image": (a_name, a, "image/jpeg"),
                                                    "selfie": (b_name, b, "image/jpeg")})
                    status = str(r.status_code)
                    if r.status_code == 200 and r.json().get("status") not in (
                        "match", "mismatch", "not_checked"
                    ):
                        status = "200-bad-body"
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    statuses[status] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    n = len(latencies)
    errors = n - statuses.get("200", 0)
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": n,
        "throughput_per_s": round(n / max(wall, 1e-9), 2),
        "p50_ms": round(1000 * _percentile(latencies, 50), 1),
        "p90_ms": round(1000 * _percentile(latencies, 90), 1),
        "p99_ms": round(1000 * _percentile(latencies, 99), 1),
        "max_ms": round(1000 * max(latencies, default=float("nan")), 1),
        "errors": errors,
        "error_rate": round(errors / n, 4) if n else None,
        "statuses": dict(statuses),
    }


def _raw(port: int, head: bytes, chunks: Iterator[bytes], timeout: float = 60
         ) -> tuple[int, int, float]:
    """Send ``head`` then ``chunks`` until the server answers: (status, body bytes sent, s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # little client-side buffering
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sent = 0
    t0 = time.perf_counter()
    data = b""
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
        while b"\r\n\r\n" not in data:
            try:
                more = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not more:
                break
            data += more
    finally:
        sock.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, sent, time.perf_counter() - t0


def _rmem_max() -> int | None:
    """Largest TCP receive buffer the kernel may give the server's socket (Linux), if known:
    bytes a client gets to send beyond what the server read."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _bomb_png(side: int = 30000) -> bytes:
    """A tiny, complete PNG whose header declares ``side`` x ``side`` RGB pixels."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def oversize_checks(url: str, port: int, limit: int) -> dict[str, Any]:
    """Three oversized uploads (declared length, chunked stream, pixel bomb); the outcomes."""
    import httpx

    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    declared = 16 * limit
    head = (b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
            + b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode() + b"--xyz\r\n")
    status, sent, secs = _raw(port, head, iter([b"\x00" * 65536]))
    out: dict[str, Any] = {"declared_length": {"declared_bytes": declared, "status": status,
                                               "body_bytes_sent": sent,
                                               "seconds": round(secs, 3)}}
    head = (b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
            + b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            + b"Transfer-Encoding: chunked\r\n\r\n")
    piece = 65536
    frame = f"{piece:x}\r\n".encode() + b"\x00" * piece + b"\r\n"

    def stream() -> Iterator[bytes]:
        # a well-formed multipart part whose file data never ends
        first = b'--xyz\r\nContent-Disposition: form-data; name="id_image"; filename="a"\r\n\r\n'
        yield f"{len(first):x}\r\n".encode() + first + b"\r\n"
        for _ in range(32 * limit // piece):  # up to 32x the limit, unless refused first
            yield frame

    status, sent, secs = _raw(port, head, stream())
    out["chunked"] = {"status": status, "body_bytes_sent": sent, "limit_bytes": limit,
                      "offered_bytes": 32 * limit, "seconds": round(secs, 3),
                      "kernel_receive_buffer_max": _rmem_max()}
    bomb = _bomb_png()
    r = httpx.post(f"{url}/v1/verify", headers={"Authorization": f"Bearer {TOKEN}"},
                   files={"id_image": ("bomb.png", bomb, "image/png"),
                          "selfie": ("bomb.png", bomb, "image/png")}, timeout=60)
    out["pixel_bomb"] = {"status": r.status_code, "code": r.json().get("code"),
                         "upload_bytes": len(bomb), "seconds": round(r.elapsed.total_seconds(),
                                                                     3)}
    return out


def direct_baseline(pairs: list[tuple[str, bytes, str, bytes]], rounds: int = 2
                    ) -> dict[str, Any]:
    """The same pairs verified in-process, serially: the library's own latency."""
    from kyc.face.verify import FaceVerifier

    fv = FaceVerifier()
    fv.verify(io.BytesIO(pairs[0][1]), io.BytesIO(pairs[0][3]))  # load the models
    times = []
    for _ in range(rounds):
        for _, a, _, b in pairs:
            t0 = time.perf_counter()
            fv.verify(a, b)
            times.append(time.perf_counter() - t0)
    return {"calls": len(times), "p50_ms": round(1000 * _percentile(times, 50), 1),
            "p99_ms": round(1000 * _percentile(times, 99), 1),
            "throughput_per_s": round(len(times) / sum(times), 2)}


def main(argv: list[str] | None = None) -> int:
    """Run the load test; print and save JSON; returns 0 when there were no errors."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="kyc serve --workers")
    p.add_argument("--max-body-mb", type=float, default=4.0)
    p.add_argument("--out", type=Path,
                   default=ROOT / "benchmarks" / "out" / "service_load.json")
    args = p.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine is shared
    model_dir = _shared("KYC_MODEL_DIR", "models")
    pairs = photo_pairs(_shared("KYC_DATA_DIR", "data"))
    os.environ.setdefault("KYC_MODEL_DIR", str(model_dir))
    direct = direct_baseline(pairs)
    with tempfile.TemporaryDirectory(prefix="kyc_load_") as folder:
        server = start_server(Path(folder), model_dir=model_dir, max_body_mb=args.max_body_mb,
                              workers=args.workers)
        try:
            result: dict[str, Any] = {}
            over: dict[str, Any] = {}

            def run_oversize() -> None:
                time.sleep(min(5.0, args.seconds / 3))  # while the load is running
                over.update(oversize_checks(server.url, server.port,
                                            int(args.max_body_mb * 1024 * 1024)))

            side = threading.Thread(target=run_oversize)
            side.start()
            result = load(server.url, pairs, clients=args.clients, seconds=args.seconds)
            side.join()
            alive = server.proc.poll() is None
        finally:
            server.stop()
    summary = {
        "load": result, "oversize": over, "direct_library": direct,
        "service_p50_over_library_p50": round(result["p50_ms"] / direct["p50_ms"], 2),
        "service_throughput_over_library_serial": round(
            result["throughput_per_s"] / direct["throughput_per_s"], 2),
        "load_average_before": load_before,
        "server_alive_after": alive, "workers": args.workers, "max_body_mb": args.max_body_mb,
        "pairs": [(a, len(x), b, len(y)) for a, x, b, y in pairs],
        "command": " ".join(["python", "benchmarks/service_load.py", *(argv or sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if result["errors"] == 0 and alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
