"""One engine shared by 8 threads gives exactly the results of a serial run.

* :class:`~kyc.face.verify.FaceVerifier` (detector per thread, one onnxruntime session for
  the embedder) on real photos, created fresh so the threads also race its lazy loading;
* :class:`~kyc.liveness.passive.PassiveLiveness` (two shared MiniFASNet sessions) on real
  live and spoof photos;
* the registry's session cache: concurrent ``load_session`` calls get one session;
* :class:`~kyc.graph.fraudgraph.FraudGraph` (in memory and on SQLite) fed synthetic
  applications by 8 threads at once while other threads read reports and rings: the final
  rings, scan, per-applicant reports and velocity equal those of a serial run.

Each pool starts its tasks behind a barrier so the threads really overlap.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from kyc.graph.fraudgraph import FraudGraph
from kyc.graph.records import Application
from kyc.graph.store import SQLiteStore
from kyc.graph.synth import generate
from kyc.image import load_image

THREADS = 8
SECRET = b"concurrency-test-secret-0123456789"
T = TypeVar("T")


def _in_threads(fn: Callable[[Any], T], items: Sequence[Any], threads: int = THREADS) -> list[T]:
    """``[fn(x) for x in items]`` computed by ``threads`` threads that start together."""
    barrier = threading.Barrier(threads)

    def task(chunk: list[tuple[int, Any]]) -> list[tuple[int, T]]:
        barrier.wait()
        return [(i, fn(x)) for i, x in chunk]

    chunks: list[list[tuple[int, Any]]] = [[] for _ in range(threads)]
    for i, x in enumerate(items):
        chunks[i % threads].append((i, x))
    with ThreadPoolExecutor(threads) as pool:
        done = [r for part in pool.map(task, chunks) for r in part]
    return [r for _, r in sorted(done, key=lambda p: p[0])]


def _small(image: np.ndarray, side: int = 640) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return np.ascontiguousarray(cv2.resize(image, (round(w * scale), round(h * scale)),
                                           interpolation=cv2.INTER_AREA))


# --- face ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_pairs(data_dir: Path, model_dir: Path) -> list[tuple[Any, Any]]:
    """Real photo pairs (same and different people, a group photo, a face-less image)."""
    if not (model_dir / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip("YuNet not in the model folder")
    celeb = data_dir / "faces" / "celebrities13"
    ex = data_dir / "faces" / "face_recognition_examples" / "examples"
    names = ["img1.jpg", "img2.jpg", "img4.jpg", "img3.jpg", "img12.jpg", "img13.jpg",
             "img14.jpg", "img16.jpg", "img17.jpg", "img24.jpg", "img25.jpg"]
    if not all((celeb / n).is_file() for n in names):
        pytest.skip("celebrities13 photos not found")
    imgs: list[Any] = [_small(load_image(celeb / n)) for n in names]
    imgs.append(_small(load_image(ex / "two_people.jpg")))
    imgs.append(np.full((200, 300, 3), 127, np.uint8))  # no face
    imgs.append((ex / "obama_small.jpg").read_bytes())  # encoded bytes: decoded per call
    pairs = [(imgs[i], imgs[j]) for i, j in [(0, 1), (0, 2), (1, 2), (3, 4), (5, 6), (7, 8),
                                             (9, 10), (0, 3), (4, 5), (6, 7), (8, 9), (2, 10),
                                             (11, 0), (12, 1), (13, 0), (13, 13)]]
    return pairs


def test_face_verifier_shared_by_8_threads_matches_serial(
    face_pairs: list[tuple[Any, Any]],
) -> None:
    from kyc.face.verify import FaceVerifier

    serial_fv = FaceVerifier()
    serial = [serial_fv.verify(a, b) for a, b in face_pairs]
    assert {r.status for r in serial} >= {"match", "mismatch", "not_checked"}
    shared = FaceVerifier()  # not loaded yet: the threads race the lazy loading too
    work = face_pairs * 2
    threaded = _in_threads(lambda p: shared.verify(*p), work)
    for k, r in enumerate(threaded):
        s = serial[k % len(face_pairs)]
        assert r.to_dict() == s.to_dict(), f"pair {k % len(face_pairs)} differs"
        assert r.score == s.score  # bit-identical, not only after rounding


def test_face_templates_shared_by_8_threads_are_bit_identical(
    face_pairs: list[tuple[Any, Any]],
) -> None:
    from kyc.face.verify import FaceVerifier

    images = [a for a, _ in face_pairs[:12] if isinstance(a, np.ndarray)]
    fv = FaceVerifier()
    serial = [fv.represent(im).embedding.tobytes() for im in images]
    shared = FaceVerifier()
    threaded = _in_threads(lambda im: shared.represent(im).embedding.tobytes(), images * 3)
    assert threaded == serial * 3


def test_registry_gives_one_session_to_racing_threads(model_dir: Path) -> None:
    from kyc.models import clear_caches, load_session

    if not (model_dir / "dlib_face_recognition_resnet_model_v1.onnx").is_file():
        pytest.skip("dlib ONNX not in the model folder")
    clear_caches()
    sessions = _in_threads(lambda _: load_session("dlib_resnet_v1"), list(range(32)))
    assert len({id(s) for s in sessions}) == 1
    chips = np.random.default_rng(0).uniform(0, 255, (4, 3, 150, 150)).astype(np.float32)
    name = sessions[0].get_inputs()[0].name
    serial = [sessions[0].run(None, {name: chips[i : i + 1]})[0].tobytes() for i in range(4)]
    threaded = _in_threads(lambda i: sessions[0].run(None, {name: chips[i : i + 1]})[0].tobytes(),
                           [i % 4 for i in range(32)])
    assert threaded == [serial[i % 4] for i in range(32)]


# --- passive liveness ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both MiniFASNet ONNX files, built from the shared .pth sources into a temp folder."""
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("pad_models")
    for name in ("minifasnet_v2", "minifasnet_v1se"):
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


def test_passive_liveness_shared_by_8_threads_matches_serial(
    pad_models: Path, data_dir: Path, model_dir: Path,
) -> None:
    from kyc.liveness.passive import PassiveLiveness

    if not (model_dir / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip("YuNet not in the model folder")
    root = data_dir / "pad"
    files = sorted((root / "silent_face_samples" / "images" / "sample").glob("*.jpg"))
    files += sorted((root / "replay_2019" / "live").glob("*.png"))[:4]
    files += sorted((root / "replay_2019" / "spoof").glob("*.png"))[:4]
    if len(files) < 6:
        pytest.skip("PAD sample photos not found")
    images = [_small(load_image(f)) for f in files]
    serial_engine = PassiveLiveness(model_dir=pad_models)
    serial = [serial_engine.check(im).to_dict() for im in images]
    assert {r["status"] for r in serial} & {"live", "spoof"}
    shared = PassiveLiveness(model_dir=pad_models)  # loads lazily, under the threads
    threaded = _in_threads(lambda im: shared.check(im).to_dict(), images * 2)
    assert threaded == serial * 2


# --- graph -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applications() -> list[Application]:
    return generate(1500, seed=7).applications


def _state(graph: FraudGraph, apps: Sequence[Application]) -> dict[str, Any]:
    applicants = sorted({a.applicant_id for a in apps})
    return {
        "rings": [r.to_dict() for r in graph.rings()],
        "scan": [r.to_dict() for r in graph.scan()],
        "reports": [graph.report(a).to_dict() for a in applicants],
        "velocity": [graph.velocity(a) for a in applicants[::25]],
        "summary": graph.summary(),
        "stored": sorted(h.application_id for h in graph.store.applications()),
    }


@pytest.fixture(scope="module")
def serial_state(applications: list[Application]) -> dict[str, Any]:
    with FraudGraph(SECRET) as graph:
        for app in applications:
            graph.add(app)
        state = _state(graph, applications)
    assert state["rings"] and any(r["flagged"] for r in state["rings"])
    return state


def _hammer(graph: FraudGraph, apps: Sequence[Application], *, batches: bool) -> list[str]:
    """8 threads add ``apps`` (interleaved) while reading reports and rings; returns errors."""
    errors: list[str] = []
    ids = [a.applicant_id for a in apps]

    def writer(k: int) -> None:
        rng = random.Random(k)
        mine = list(apps[k::THREADS])
        try:
            if batches:
                for start in range(0, len(mine), 37):
                    graph.add_many(mine[start : start + 37])
                    graph.report(rng.choice(ids))
            else:
                for i, app in enumerate(mine):
                    graph.add(app)
                    if i % 20 == k % 20:
                        graph.report(rng.choice(ids))
                    if i % 97 == k:
                        graph.rings()
        except Exception as exc:  # collected: the assertion below names it
            errors.append(f"thread {k}: {type(exc).__name__}: {exc}")

    barrier = threading.Barrier(THREADS)

    def run(k: int) -> None:
        barrier.wait()
        writer(k)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(run, range(THREADS)))
    return errors


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_fraudgraph_add_from_8_threads_matches_serial(
    store: str, tmp_path: Path, applications: list[Application], serial_state: dict[str, Any],
) -> None:
    backing = SQLiteStore(tmp_path / "g.db") if store == "sqlite" else None
    with FraudGraph(SECRET, store=backing) as graph:
        errors = _hammer(graph, applications, batches=False)
        assert not errors, errors[:3]
        assert _state(graph, applications) == serial_state
    if backing is not None:
        backing.integrity_check()
        backing.close()


def test_fraudgraph_add_many_from_8_threads_matches_serial(
    applications: list[Application], serial_state: dict[str, Any],
) -> None:
    with FraudGraph(SECRET) as graph:
        graph.add(applications[0])  # loaded: add_many then updates the in-memory graph too
        errors = _hammer(graph, applications, batches=True)
        assert not errors, errors[:3]
        assert _state(graph, applications) == serial_state


def test_fraudgraph_serial_order_does_not_matter(
    applications: list[Application], serial_state: dict[str, Any],
) -> None:
    """The reference the threaded runs are held to: any serial order gives the same state."""
    shuffled = list(applications)
    random.Random(3).shuffle(shuffled)
    with FraudGraph(SECRET) as graph:
        for app in shuffled:
            graph.add(app)
        assert _state(graph, applications) == serial_state
