"""Active liveness: time per frame on this machine, side by side with the bare landmarker.

Run from the repository root (``nice`` because the machine is shared)::

    nice -n 10 python benchmarks/active_timing.py --rounds 5     # ~1-2 min on 2 cores

Frames: the first 200 of the 214 frames of ``pad/video/live_person_moving.webm`` (640x480,
30 fps; ``$KYC_DATA_DIR``, default ``../shared/data``). Each round runs, one after the other on
same frames (so machine load hits them alike):

* ``mediapipe``: the peer, MediaPipe's own ``FaceLandmarker.detect_for_video`` (VIDEO mode,
  blendshapes and matrices on, 2 faces), with only the BGR->RGB conversion it needs;
* ``tracker``: :class:`kyc.liveness.landmarks.FaceLandmarkTracker` (the wrapper: validation,
  pose from the matrix, observations in pixels);
* ``session``: :class:`kyc.liveness.active.ActiveLivenessSession` with the landmarker, move
  detection, frozen-frame and timestamp checks and face continuity (dlib embeddings of
  near-frontal frames every 300 ms), PAD off;
* ``session+pad``: the same plus passive PAD (:mod:`kyc.liveness.passive`, MiniFASNet pair +
  cues) on a frame every 1000 ms (at most 5), when the MiniFASNet ONNX files can be found or
  built (``kyc models build`` logic into a temporary folder).
* ``checks``: the session with landmarks replayed from memory, i.e. the session's own cost
  per frame without the landmarker.

All variants see the first 200 frames, in which the recording performs the challenge the
session runs (six head turns, then the blink at frames 197-199), so every variant processes
the same 200 frames; the order of the variants rotates from round to round. A first round
warms everything up and is discarded; figures are medians per frame over the rounds, plus the
one-off cost of opening a session (loading the landmarker). Writes
``benchmarks/out/active_timing.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the moves the recording performs, in order (turns at frames ~28, 48, 75, 96, 137, 178)
MOVES = ["turn_left", "turn_right", "turn_left", "turn_right", "turn_right", "turn_right", "blink"]
N_FRAMES = 200  # the recording performs MOVES by frame 199 (the blink at frames 197-199)


def _dirs() -> tuple[Path, Path]:
    models = Path(os.environ.get("KYC_MODEL_DIR", ROOT.parent / "shared" / "models"))
    data = Path(os.environ.get("KYC_DATA_DIR", ROOT.parent / "shared" / "data"))
    os.environ.setdefault("KYC_MODEL_DIR", str(models))
    return models, data


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        sys.exit(f"cannot decode {path} with this OpenCV build")
    return frames


def stamps(n: int) -> list[int]:
    return [round(i * 1000 / 30) for i in range(n)]


def bare_mediapipe(frames: list[np.ndarray], task: str) -> float:
    """Seconds per frame for MediaPipe's own VIDEO-mode call (the peer)."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=task),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=2,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    lm = vision.FaceLandmarker.create_from_options(opts)
    try:
        t = time.perf_counter()
        for frame, ts in zip(frames, stamps(len(frames)), strict=True):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts)
        return (time.perf_counter() - t) / len(frames)
    finally:
        lm.close()


def tracker_only(frames: list[np.ndarray]) -> tuple[float, float]:
    """(seconds per frame, seconds to open) for FaceLandmarkTracker."""
    from kyc.liveness.landmarks import FaceLandmarkTracker

    t0 = time.perf_counter()
    tracker = FaceLandmarkTracker()
    opened = time.perf_counter() - t0
    try:
        t = time.perf_counter()
        for frame, ts in zip(frames, stamps(len(frames)), strict=True):
            tracker.process(frame, ts)
        return (time.perf_counter() - t) / len(frames), opened
    finally:
        tracker.close()


class Replay:
    """Landmarks computed once, handed back by frame index (for the ``checks`` figure)."""

    model = MappingProxyType({"role": "landmarker", "name": "face_landmarker", "sha256": "-"})

    def __init__(self, cache: list[Any]) -> None:
        self.cache = cache
        self.i = 0

    def process(self, image: np.ndarray, timestamp_ms: int) -> Any:
        lf = self.cache[self.i]
        self.i += 1
        return dataclasses.replace(lf, timestamp_ms=timestamp_ms)

    def close(self) -> None:
        pass


def session_run(
    frames: list[np.ndarray], verifier: Any, passive: Any | None, tracker: Any | None = None
) -> dict[str, Any]:
    from kyc.liveness.active import ActiveLivenessSession
    from kyc.liveness.challenge import ChallengeIssuer

    issuer = ChallengeIssuer(b"benchmark secret, 32 bytes long!", ttl=3600.0)
    ch = issuer.issue(moves=MOVES)
    t0 = time.perf_counter()
    session = ActiveLivenessSession(
        ch,
        issuer=issuer,
        verifier=verifier,
        passive=passive,
        check_pad=passive is not None,
        tracker=tracker,
    )
    opened = time.perf_counter() - t0
    t = time.perf_counter()
    for frame, ts in zip(frames, stamps(len(frames)), strict=True):
        if session.feed(frame, ts).done:
            break
    result = session.finish()
    spent = time.perf_counter() - t
    return {
        "per_frame": spent / max(result.frames, 1),
        "frames": result.frames,
        "open": opened,
        "status": result.status,
        "codes": list(result.codes),
        "face_samples": result.face_continuity.get("samples"),
        "pad_samples": len(result.pad.get("samples", [])),
    }


def pad_engine(models: Path) -> tuple[Any | None, str]:
    try:
        from kyc.liveness.passive import PassiveLiveness
        from kyc.models.registry import build_model, resolve_model
    except ImportError as exc:
        return None, f"kyc.liveness.passive unavailable: {exc}"
    try:
        resolve_model("minifasnet_v2")
        resolve_model("minifasnet_v1se")
        return PassiveLiveness().load(), "registry"
    except Exception:
        pass
    dest = Path(tempfile.mkdtemp(prefix="kyc_active_bench_"))
    try:
        for name in ("minifasnet_v2", "minifasnet_v1se"):
            build_model(name, dest=dest)
        engine = PassiveLiveness(model_dir=dest).load()
        return engine, "built from the .pth files (kyc models build)"
    except Exception as exc:
        return None, f"MiniFASNet ONNX not available ({exc})"
    finally:
        shutil.rmtree(dest, ignore_errors=True)  # loaded sessions no longer need the files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "active_timing.json")
    args = ap.parse_args(argv)
    models, data = _dirs()
    frames = read_frames(data / "pad" / "video" / "live_person_moving.webm")[:N_FRAMES]
    from kyc.face.verify import FaceVerifier
    from kyc.liveness.landmarks import FaceLandmarkTracker
    from kyc.models import resolve_model

    task = str(resolve_model("face_landmarker"))
    verifier = FaceVerifier().load()
    verifier.embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))  # warm the session
    engine, pad_note = pad_engine(models)
    if engine is not None:
        engine.check(frames[0])  # warm
    with FaceLandmarkTracker() as tr:
        cache = [tr.process(f, ts) for f, ts in zip(frames, stamps(len(frames)), strict=True)]

    rows: dict[str, list[float]] = {
        k: [] for k in ("mediapipe", "tracker", "session", "session+pad", "checks")
    }
    opens: dict[str, list[float]] = {"tracker": [], "session": []}
    parts: dict[str, list[float]] = {"embed one face": [], "pad one frame": []}
    last: dict[str, Any] = {}
    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        if r == 1:
            for v in (*rows.values(), *opens.values(), *parts.values()):
                v.clear()

        def mediapipe_peer() -> None:
            rows["mediapipe"].append(bare_mediapipe(frames, task))

        def tracker_wrapper() -> None:
            per, opened = tracker_only(frames)
            rows["tracker"].append(per)
            opens["tracker"].append(opened)

        def session_plain() -> None:
            s = session_run(frames, verifier, None)
            rows["session"].append(s["per_frame"])
            opens["session"].append(s["open"])
            last["session"] = s

        def session_pad() -> None:
            if engine is not None:
                sp = session_run(frames, verifier, engine.check)
                rows["session+pad"].append(sp["per_frame"])
                last["session+pad"] = sp

        def checks_only() -> None:
            c = session_run(frames, verifier, None, tracker=Replay(cache))
            rows["checks"].append(c["per_frame"])
            last["checks"] = c

        def components() -> None:
            chip = np.zeros((1, 150, 150, 3), np.uint8) + 128
            t = time.perf_counter()
            for _ in range(5):
                verifier.embedder.embed(chip)
            parts["embed one face"].append((time.perf_counter() - t) / 5)
            if engine is not None:
                t = time.perf_counter()
                for f in frames[::40]:
                    engine.check(f)
                parts["pad one frame"].append((time.perf_counter() - t) / len(frames[::40]))

        order = [
            mediapipe_peer,
            tracker_wrapper,
            session_plain,
            session_pad,
            checks_only,
            components,
        ]
        for fn in order[r % len(order) :] + order[: r % len(order)]:
            fn()
        print(f"round {r}/{args.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) * 1000 for k, v in rows.items() if v}
    base = med["mediapipe"]
    report = {
        "command": "nice -n 10 python benchmarks/active_timing.py --rounds " + str(args.rounds),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
        },
        "frames": len(frames),
        "rounds": args.rounds,
        "ms_per_frame_median": {k: round(v, 2) for k, v in med.items()},
        "ms_per_frame_all": {k: [round(x * 1000, 2) for x in v] for k, v in rows.items()},
        "ratio_to_mediapipe": {k: round(v / base, 3) for k, v in med.items()},
        "open_ms_median": {k: round(statistics.median(v) * 1000, 1) for k, v in opens.items()},
        "component_ms_median": {
            k: round(statistics.median(v) * 1000, 1) for k, v in parts.items() if v
        },
        "session": last.get("session"),
        "session_pad": last.get("session+pad"),
        "pad": pad_note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| what | ms per frame (median) | x bare MediaPipe |")
    print("|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {v / base:.2f} |")
    keys = ("open_ms_median", "component_ms_median", "session", "session_pad", "pad")
    print(json.dumps({k: report[k] for k in keys},
                     indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
