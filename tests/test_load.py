"""A short version (3 s, 4 clients) of the service load test in benchmarks/service_load.py.

Starts ``kyc serve`` on loopback and checks, under load: no request fails, every answer is
a well-formed result, oversized uploads are refused with 413 before their body is read
(a declared 64 MiB body after 64 KiB; a 128 MiB chunked stream after the limit plus kernel
buffers), a pixel bomb
is refused with ``IMAGE_TOO_LARGE``, and the server is still up. Timing figures are printed,
never asserted (they are reported by the benchmark). Skips when the service extra is not
installed.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 4


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_load",
                                                  ROOT / "benchmarks" / "service_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["service_load"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_service_under_load_keeps_answering_and_refuses_oversized_uploads(
    model_dir: Path, data_dir: Path,
) -> None:
    bench = _bench()
    pairs = bench.photo_pairs(data_dir)
    with tempfile.TemporaryDirectory(prefix="kyc_load_test_") as folder:
        server = bench.start_server(Path(folder), model_dir=model_dir, max_body_mb=LIMIT_MB)
        try:
            over: dict[str, Any] = {}
            side = threading.Thread(target=lambda: over.update(
                bench.oversize_checks(server.url, server.port, LIMIT_MB * 1024 * 1024)))
            side.start()
            result = bench.load(server.url, pairs, clients=4, seconds=3.0)
            side.join()
            assert server.proc.poll() is None, "the server died under load"
        finally:
            server.stop()
    print(f"\nload: {result}\noversize: {over}")
    assert result["requests"] >= 4
    assert result["errors"] == 0, result["statuses"]
    limit = LIMIT_MB * 1024 * 1024
    assert over["declared_length"]["status"] == 413
    assert over["declared_length"]["body_bytes_sent"] <= 65536
    assert over["chunked"]["status"] == 413
    # refused at the limit: the client got to send the limit plus what the kernel buffered
    # for the server's socket (up to tcp_rmem max), not the 32x-the-limit upload
    chunked = over["chunked"]
    buffered = chunked["kernel_receive_buffer_max"] or 16 * limit
    assert chunked["body_bytes_sent"] < min(limit + buffered + (1 << 20),
                                            chunked["offered_bytes"])
    assert over["pixel_bomb"]["status"] == 400
    assert over["pixel_bomb"]["code"] == "IMAGE_TOO_LARGE"
