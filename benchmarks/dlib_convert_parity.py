"""Parity, determinism and speed of kyc's dlib .dat -> ONNX converter.

Converts ``dlib_face_recognition_resnet_model_v1.dat`` several times (timing each run and
checking every run gives the same sha256), compares the weights with the reference ONNX
conversion tensor by tensor, and runs both models with onnxruntime on real face chips:
aligned colour chips of every face YuNet finds in ``faces/face_recognition_examples`` and
``faces/celebrities13``, plus centre crops of LFW images. Prints a Markdown summary (and
writes it to ``--out`` when given).

Run from the project root::

    nice -n 10 python benchmarks/dlib_convert_parity.py --lfw 500
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from kyc.models.dlib_convert import INPUT_NAME, convert_dlib_dat

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DAT = "dlib_face_recognition_resnet_model_v1.dat"
REF = "dlib_face_recognition_resnet_model_v1.onnx"
YUNET = "face_detection_yunet_2023mar.onnx"
TEMPLATE = np.array(
    [[47.02, 43.51], [101.2, 43.34], [73.54, 75.28], [50.81, 99.95], [98.57, 99.56]],
    dtype=np.float32,
)


def _dir(env: str, fallback: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else fallback


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def colour_chips(data_dir: Path, model_dir: Path) -> list[np.ndarray]:
    """Aligned 150x150 RGB chips of every face YuNet finds in the colour photo sets."""
    det = cv2.FaceDetectorYN.create(str(model_dir / YUNET), "", (320, 320), 0.7, 0.3, 5000)
    photos = sorted((data_dir / "faces" / "face_recognition_examples").rglob("*.*"))
    photos += sorted((data_dir / "faces" / "celebrities13").glob("*.jpg"))
    chips: list[np.ndarray] = []
    for path in photos:
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        scale = min(1.0, 960.0 / max(img.shape[:2]))
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        det.setInputSize((small.shape[1], small.shape[0]))
        _, faces = det.detect(small)
        for face in [] if faces is None else faces:
            points = (face[4:14].reshape(5, 2) / scale).astype(np.float32)
            m, _ = cv2.estimateAffinePartial2D(points, TEMPLATE, method=cv2.LMEDS)
            if m is not None:
                chip = cv2.warpAffine(img, m, (150, 150), flags=cv2.INTER_LINEAR)
                chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
    return chips


def lfw_chips(data_dir: Path, count: int) -> list[np.ndarray]:
    """Centre crops (160x160 of the 250x250 image) resized to 150x150, RGB."""
    files = sorted((data_dir / "faces" / "lfw" / "images").glob("*/*.jpg"))
    step = max(1, len(files) // max(1, count))
    chips = []
    for path in files[::step][:count]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        chip = cv2.resize(img[45:205, 45:205], (150, 150), interpolation=cv2.INTER_AREA)
        chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
    return chips


def _learned(model: onnx.ModelProto) -> list[np.ndarray]:
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return [a for a in arrays if a.dtype == np.float32 and a.size > 3]


def _run(sess: ort.InferenceSession, batch: np.ndarray, step: int = 32) -> np.ndarray:
    name = sess.get_inputs()[0].name
    parts = [sess.run(None, {name: batch[i : i + step]})[0] for i in range(0, len(batch), step)]
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the checks; returns 0 when parity (<= 1e-4) and determinism hold, else 1."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3, help="conversions to time (default 3)")
    ap.add_argument("--lfw", type=int, default=300, help="LFW centre crops (default 300)")
    ap.add_argument("--out", type=Path, default=None, help="also write the summary here")
    args = ap.parse_args(argv)
    model_dir = args.model_dir or _dir("KYC_MODEL_DIR", ROOT.parent / "shared" / "models")
    data_dir = args.data_dir or _dir("KYC_DATA_DIR", ROOT.parent / "shared" / "data")

    times, digests = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            dst = Path(tmp) / f"run{i}.onnx"
            t0 = time.perf_counter()
            convert_dlib_dat(model_dir / DAT, dst)
            times.append(time.perf_counter() - t0)
            digests.append(_sha256(dst))
        ours_path = Path(tmp) / "run0.onnx"

        # learned tensors only (not the input mean/scale constants or Pad amounts), in order
        ref_big = _learned(onnx.load(str(model_dir / REF)))
        our_big = _learned(onnx.load(str(ours_path)))
        identical = sum(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in zip(ref_big, our_big, strict=False)
        )

        colour = colour_chips(data_dir, model_dir)
        grey = lfw_chips(data_dir, args.lfw)
        batch = np.stack(colour + grey).transpose(0, 3, 1, 2).astype(np.float32)
        ours = _session(ours_path)
        assert ours.get_inputs()[0].name == INPUT_NAME
        got = _run(ours, batch)
        want = _run(_session(model_dir / REF), batch)

    diff = np.abs(got - want)
    max_diff = float(diff.max())
    deterministic = len(set(digests)) == 1
    lines = [
        "## dlib .dat -> ONNX converter (kyc.models.dlib_convert)",
        "",
        f"Command: `python benchmarks/dlib_convert_parity.py --runs {args.runs} --lfw {args.lfw}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| conversion time, median of {args.runs} (s) | {statistics.median(times):.3f} |",
        f"| output sha256 | `{digests[0]}` |",
        f"| identical sha256 over {args.runs} runs | {'yes' if deterministic else 'NO'} |",
        f"| weight tensors bit-identical to the reference ONNX | {identical} / {len(ref_big)} |",
        f"| chips compared (colour aligned + LFW grey crops) | {len(colour)} + {len(grey)} |",
        f"| max abs difference vs reference ONNX | {max_diff:.3g} |",
        f"| mean abs difference | {float(diff.mean()):.3g} |",
        f"| mean descriptor norm | {float(np.linalg.norm(want, axis=1).mean()):.3f} |",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0 if deterministic and max_diff <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
