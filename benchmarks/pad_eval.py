"""Passive liveness (PAD) evaluation with ISO/IEC 30107-3 metrics, on real data.

Run from the repository root (``nice`` because the machine is shared)::

    nice -n 10 python benchmarks/pad_eval.py            # ~2-4 min on 2 cores

Data (``$KYC_DATA_DIR``, default ``../shared/data``):

* ``pad/silent_face_samples``: 1 print attack, 1 tablet replay, 2 live selfies (full frames,
  some stored rotated: :func:`kyc.image.load_image` applies EXIF). Full pipeline: YuNet box.
* ``pad/replay_2019``: 161 live and 150 screen-replay *tight face crops* (one person, a selfie
  video replayed on a phone and recaptured by a webcam). Live crops are larger than spoof
  crops, so every crop is first resized to one size (96x132, INTER_AREA when shrinking,
  INTER_CUBIC when enlarging) and the crop itself stands in for the face: the models are
  given an explicit ``face_box``. There is no context around a tight crop, so the published
  x2.7 / x4.0 enlargement is capped by the image size (see
  :func:`kyc.liveness.passive.expanded_box`) and the models see the crop itself. Two boxes
  are compared on the calibration half only: ``whole`` (the full 96x132 crop, squeezed to
  80x80) and ``square`` (the centred 96x96 square: the aspect ratio is kept). The better one
  on the calibration half is used.
* bona fide photos for false rejects: ``faces/celebrities13``, ``faces/face_recognition_examples``
  (duplicates dropped) and a seeded sample of LFW (this copy of LFW is greyscale).

Splits. Calibration: replay_2019 first half of each class in frame order, silent_face (the only
print attack, so it must be in calibration), celebrities13. Held-out: replay_2019 second half,
face_recognition_examples, the LFW sample. Consecutive replay frames are near duplicates, so
the split is by time, not at random; both halves show the same person and session, so the
held-out figures are optimistic for other people, devices and lighting.

Threshold rule (on calibration): ``t_a`` = the lowest threshold (0.01 grid) with APCER <= 5 %
for every attack type, ``t_b`` = the highest with BPCER <= 5 %; the threshold is the midpoint
when ``t_a <= t_b`` (largest margin to both targets), else ``t_a`` (attacks first).

Cue selection rule (on calibration, fixed before the held-out figures are read): a cue
*fires* at strength >= 0.5; candidates fire on at most 1 % of calibration bona fide faces;
greedily keep the candidate that fires on the most calibration attacks not yet caught by the
cues already kept; stop when no candidate catches another attack. The shipped threshold is the
threshold rule applied to the models fused with the kept cues. The script checks that
:data:`~kyc.liveness.passive.DEFAULT_CUES` / ``DEFAULT_THRESHOLD`` match what it selects.

Metrics (ISO/IEC 30107-3): APCER per attack type and its maximum, BPCER, ACER =
(max APCER + BPCER) / 2, over presentations the system assessed; "not checked" outcomes are
non-responses (APNRR / BPNRR), reported separately; ``BPCER+NR`` counts them as rejections.
Variants: models alone, each cue alone fused with the models, and the shipped set
(:data:`kyc.liveness.passive.DEFAULT_CUES`). Writes ``benchmarks/out/pad_eval.json``,
``benchmarks/out/pad_eval.md`` and the DET curve ``benchmarks/out/pad_det.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("KYC_MODEL_DIR", str((ROOT.parent / "shared" / "models").resolve()))

from kyc.errors import ModelError  # noqa: E402
from kyc.image import load_image  # noqa: E402
from kyc.liveness.cues import CUE_NAMES  # noqa: E402
from kyc.liveness.passive import (  # noqa: E402
    DEFAULT_CUE_WEIGHT,
    DEFAULT_CUES,
    DEFAULT_THRESHOLD,
    MODEL_SCALES,
    PassiveLiveness,
    fuse_scores,
)

OUT = ROOT / "benchmarks" / "out"
CROP_SIZE = (96, 132)  # (width, height) every replay_2019 crop is resized to
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
TARGET = 0.05


@dataclass
class Sample:
    """One presentation: where it comes from, its truth, its split, and what was measured."""

    dataset: str
    path: str
    attack: str | None  # None = bona fide, else the attack type
    split: str  # "cal" | "test"
    status: str = ""
    model_score: float | None = None
    model_scores: dict[str, float] = field(default_factory=dict)
    cues: dict[str, float] = field(default_factory=dict)  # strengths
    cue_values: dict[str, float] = field(default_factory=dict)
    codes: tuple[str, ...] = ()
    seconds: float = 0.0
    protocol: str = "detect"

    @property
    def bona(self) -> bool:
        return self.attack is None


# --- data -------------------------------------------------------------------------------------


def _resize_crop(img: np.ndarray) -> np.ndarray:
    w, h = CROP_SIZE
    interp = cv2.INTER_AREA if img.shape[1] > w else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(img, (w, h), interpolation=interp))


def crop_box(protocol: str) -> tuple[float, float, float, float]:
    """Face box used for a resized replay_2019 crop under ``protocol``."""
    w, h = CROP_SIZE
    if protocol == "whole":
        return (0.0, 0.0, float(w), float(h))
    if protocol == "square":
        return (0.0, (h - w) / 2.0, float(w), float(w))
    raise ValueError(protocol)


def _frame_sorted(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"), key=lambda p: int(p.stem))


def replay_samples(data: Path) -> list[Sample]:
    out = []
    for cls in ("live", "spoof"):
        files = _frame_sorted(data / "pad" / "replay_2019" / cls)
        half = len(files) // 2
        for i, p in enumerate(files):
            out.append(
                Sample(
                    "replay_2019",
                    str(p),
                    None if cls == "live" else "screen_replay",
                    "cal" if i < half else "test",
                )
            )
    return out


def silent_face_samples(data: Path) -> list[Sample]:
    root = data / "pad" / "silent_face_samples"
    out = []
    with (root / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            attack = None if row["label"] == "live" else row["attack_type"]
            out.append(Sample("silent_face", str(root / row["path"]), attack, "cal"))
    return out


def bona_fide_photos(data: Path, n_lfw: int, seed: int) -> list[Sample]:
    faces = data / "faces"
    out = [
        Sample("celebrities13", str(p), None, "cal")
        for p in sorted((faces / "celebrities13").glob("*.jpg"))
    ]
    fre = faces / "face_recognition_examples"
    with (fre / "identities.csv").open() as fh:
        for row in csv.DictReader(fh):
            if not row.get("duplicate_of"):
                out.append(
                    Sample("face_recognition_examples", str(fre / row["path"]), None, "test")
                )
    lfw = sorted((faces / "lfw" / "images").glob("*/*.jpg"))
    random.Random(seed).shuffle(lfw)
    out += [Sample("lfw_grey", str(p), None, "test") for p in lfw[:n_lfw]]
    return out


# --- scoring ----------------------------------------------------------------------------------


def make_engine(model_dir: Path | None, **kw: Any) -> PassiveLiveness:
    """Engine that measures every cue but fuses none (weights 0): components only."""
    return PassiveLiveness(
        model_dir=model_dir,
        cues=CUE_NAMES,
        cue_weights=dict.fromkeys(CUE_NAMES, 0.0),
        **kw,
    )


def score(engine: PassiveLiveness, s: Sample, protocol: str = "detect") -> Sample:
    img = load_image(s.path)
    box = None
    if s.dataset == "replay_2019":
        img = _resize_crop(img)
        box = crop_box(protocol)
    t0 = time.perf_counter()
    r = engine.check(img, face_box=box)
    s.seconds = time.perf_counter() - t0
    s.protocol = protocol
    s.status = r.status
    s.codes = r.codes
    s.model_score = r.model_score
    s.model_scores = dict(r.model_scores)
    s.cues = {c.name: c.strength for c in r.cues}
    s.cue_values = {c.name: c.value for c in r.cues}
    return s


def fused(s: Sample, cues: Sequence[str]) -> float | None:
    if s.model_score is None:
        return None
    return fuse_scores(s.model_score, {c: s.cues[c] for c in cues}, DEFAULT_CUE_WEIGHT)


# --- metrics ----------------------------------------------------------------------------------


@dataclass
class Metrics:
    apcer: dict[str, float]
    apcer_n: dict[str, int]
    apcer_max: float
    bpcer: float
    bpcer_n: int
    acer: float
    apnrr: float
    bpnrr: float
    bpcer_nr: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rate(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def metrics(samples: Iterable[Sample], cues: Sequence[str], threshold: float) -> Metrics:
    ss = list(samples)
    bona = [s for s in ss if s.bona]
    attacks = [s for s in ss if not s.bona]
    types = sorted({s.attack for s in attacks if s.attack})
    apcer, apcer_n = {}, {}
    for t in types:
        checked = [s for s in attacks if s.attack == t and s.model_score is not None]
        apcer[t] = _rate([(fused(s, cues) or 0.0) >= threshold for s in checked])
        apcer_n[t] = len(checked)
    b_checked = [s for s in bona if s.model_score is not None]
    bpcer = _rate([(fused(s, cues) or 0.0) < threshold for s in b_checked])
    apcer_max = max(apcer.values()) if apcer else float("nan")
    n_rej = sum(1 for s in bona if s.model_score is None or (fused(s, cues) or 0.0) < threshold)
    return Metrics(
        apcer=apcer,
        apcer_n=apcer_n,
        apcer_max=apcer_max,
        bpcer=bpcer,
        bpcer_n=len(b_checked),
        acer=(apcer_max + bpcer) / 2.0 if apcer and b_checked else float("nan"),
        apnrr=_rate([s.model_score is None for s in attacks]),
        bpnrr=_rate([s.model_score is None for s in bona]),
        bpcer_nr=n_rej / len(bona) if bona else float("nan"),
    )


def choose_threshold(samples: Sequence[Sample], cues: Sequence[str]) -> dict[str, float]:
    """The calibration rule of the module docstring; returns t_a, t_b and the chosen t."""
    t_a = t_b = None
    for t in GRID:
        m = metrics(samples, cues, float(t))
        if t_a is None and all(v <= TARGET for v in m.apcer.values()):
            t_a = float(t)
        if m.bpcer <= TARGET:
            t_b = float(t)
    if t_a is None:
        t_a = float(GRID[-1])
    chosen = round((t_a + t_b) / 2.0, 3) if t_b is not None and t_a <= t_b else t_a
    return {"t_a": t_a, "t_b": float("nan") if t_b is None else t_b, "threshold": chosen}


def select_cues(cal: Sequence[Sample]) -> dict[str, Any]:
    """Greedy cue selection on the calibration split (the rule in the module docstring).

    A cue *fires* at strength >= 0.5. Candidates fire on at most 1 % of calibration bona
    fide presentations. Repeatedly keep the candidate that fires on the most calibration
    attacks not yet caught by the kept cues; stop when none catches another one.
    """
    checked = [s for s in cal if s.model_score is not None]
    bona = [s for s in checked if s.bona]
    attacks = [s for s in checked if not s.bona]
    table = {}
    for c in CUE_NAMES:
        table[c] = {
            "attack_fire": _rate([s.cues[c] >= 0.5 for s in attacks]),
            "bona_fire": _rate([s.cues[c] >= 0.5 for s in bona]),
        }
    candidates = [c for c in CUE_NAMES if table[c]["bona_fire"] <= 0.01]
    kept: list[str] = []
    uncaught = list(attacks)
    while candidates and uncaught:
        gains = {c: sum(1 for s in uncaught if s.cues[c] >= 0.5) for c in candidates}
        best = max(candidates, key=lambda c: gains[c])
        if gains[best] == 0:
            break
        kept.append(best)
        candidates.remove(best)
        table[best]["new_catches"] = gains[best]
        uncaught = [s for s in uncaught if s.cues[best] < 0.5]
    return {"table": table, "kept": kept}


def auc(bona: Sequence[float], attack: Sequence[float]) -> float:
    """P(bona fide score > attack score), ties counted half."""
    b = np.asarray(bona, dtype=np.float64)[:, None]
    a = np.asarray(attack, dtype=np.float64)[None, :]
    return float((b > a).mean() + 0.5 * (b == a).mean())


def rate_at(bona: Sequence[float], attack: Sequence[float], bpcer: float = TARGET) -> float:
    """APCER at the threshold that rejects ``bpcer`` of the bona fide scores."""
    t = float(np.quantile(np.asarray(bona), bpcer))
    return float(np.mean(np.asarray(attack) >= t))


# --- report -----------------------------------------------------------------------------------


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f} %"


def metrics_row(name: str, m: Metrics) -> str:
    ap = ", ".join(f"{k} {pct(v)} (n={m.apcer_n[k]})" for k, v in m.apcer.items()) or "-"
    return (
        f"| {name} | {ap} | {pct(m.apcer_max)} | {pct(m.bpcer)} (n={m.bpcer_n}) | "
        f"{pct(m.acer)} | {pct(m.apnrr)} | {pct(m.bpnrr)} | {pct(m.bpcer_nr)} |"
    )


HEADER = (
    "| set | APCER per type | APCER max | BPCER | ACER | APNRR | BPNRR | BPCER+NR |\n"
    "|---|---|---|---|---|---|---|---|"
)


def det_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    points: Mapping[str, tuple[float, float]],
    path: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    eps = 1e-3
    fig, ax = plt.subplots(figsize=(6, 6))
    for label, (bona, attack) in curves.items():
        b = np.asarray(bona)
        a = np.asarray(attack)
        ts = np.unique(np.concatenate([b, a, [0.0, 1.0 + 1e-9]]))
        apcer = np.array([(a >= t).mean() for t in ts])
        bpcer = np.array([(b < t).mean() for t in ts])
        ax.plot(
            norm.ppf(np.clip(apcer, eps, 1 - eps)),
            norm.ppf(np.clip(bpcer, eps, 1 - eps)),
            label=label,
        )
    for label, (ap, bp) in points.items():
        ax.plot(
            norm.ppf(np.clip(ap, eps, 1 - eps)),
            norm.ppf(np.clip(bp, eps, 1 - eps)),
            "o",
            label=label,
        )
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999]
    ax.set_xticks(norm.ppf(ticks))
    ax.set_xticklabels([f"{100 * t:g}%" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks))
    ax.set_yticklabels([f"{100 * t:g}%" for t in ticks], fontsize=7)
    lim = (float(norm.ppf(eps / 2)), float(norm.ppf(1 - eps / 2)))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("APCER (attacks accepted; 0 is drawn at 0.1 %)")
    ax.set_ylabel("BPCER (bona fide rejected; 0 is drawn at 0.1 %)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- timing -----------------------------------------------------------------------------------


def timing(engine: PassiveLiveness, data: Path, runs: int) -> dict[str, Any]:
    """Median wall time per selfie (decode + detect + 2 models + cues), after a warm-up."""
    from kyc.face.detect import FaceDetector
    from kyc.liveness.cues import compute_cues

    root = data / "pad" / "silent_face_samples" / "images" / "sample"
    det = FaceDetector()
    out: dict[str, Any] = {}
    for name in ("image_T1.jpg", "image_T2.jpg"):
        path = root / name
        engine.check(str(path), detector=det)  # warm-up
        total, dec, dtc, mdl, cue = [], [], [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            engine.check(str(path), detector=det)
            total.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            img = load_image(str(path))
            t1 = time.perf_counter()
            box = det.detect(img)[0].box
            t2 = time.perf_counter()
            engine.model_probabilities(img, box)
            t3 = time.perf_counter()
            compute_cues(img, box, DEFAULT_CUES)
            t4 = time.perf_counter()
            dec.append(t1 - t0)
            dtc.append(t2 - t1)
            mdl.append(t3 - t2)
            cue.append(t4 - t3)
        h, w = load_image(str(path)).shape[:2]
        out[name] = {
            "size": f"{w}x{h}",
            "total_ms": 1000 * statistics.median(total),
            "decode_ms": 1000 * statistics.median(dec),
            "detect_ms": 1000 * statistics.median(dtc),
            "models_ms": 1000 * statistics.median(mdl),
            "cues_ms": 1000 * statistics.median(cue),
        }
    out["loadavg"] = os.getloadavg()
    out["runs"] = runs
    return out


# --- main -------------------------------------------------------------------------------------


def ensure_models(model_dir: Path | None) -> Path | None:
    """Use built ONNX files if the registry finds them, else build them into benchmarks/out."""
    from kyc.models.registry import build_model, resolve_model

    try:
        for name in MODEL_SCALES:
            resolve_model(name, model_dir)
        return model_dir
    except ModelError:
        dest = OUT / "models"
        for name in MODEL_SCALES:
            build_model(name, dest=dest)
        return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="data root (default $KYC_DATA_DIR)")
    ap.add_argument("--models", type=Path, default=None, help="folder with the built ONNX files")
    ap.add_argument("--lfw", type=int, default=300, help="LFW images sampled (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing-runs", type=int, default=20)
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("KYC_DATA_DIR", ROOT.parent / "shared" / "data"))
    data = data.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    model_dir = ensure_models(args.models)
    engine = make_engine(model_dir)
    grey_off = make_engine(model_dir, min_colourfulness=0.0)
    t_start = time.time()

    # 1. crop protocol for replay_2019, chosen on the calibration half (models alone)
    replay = {p: [score(engine, s, p) for s in replay_samples(data)] for p in ("square", "whole")}
    protocol_rows = []
    best, best_key = "", (-1.0, -1.0)
    for p, ss in replay.items():
        for split in ("cal", "test"):
            b = [
                s.model_score
                for s in ss
                if s.split == split and s.bona and s.model_score is not None
            ]
            a = [
                s.model_score
                for s in ss
                if s.split == split and not s.bona and s.model_score is not None
            ]
            row = {
                "protocol": p,
                "split": split,
                "auc": auc(b, a),
                "apcer_at_bpcer5": rate_at(b, a),
            }
            protocol_rows.append(row)
            key = (row["auc"], -row["apcer_at_bpcer5"])
            if split == "cal" and key > best_key:
                best, best_key = p, key
    samples: list[Sample] = list(replay[best])
    samples += [score(engine, s) for s in silent_face_samples(data)]
    photos = [score(engine, s) for s in bona_fide_photos(data, args.lfw, args.seed)]
    samples += photos
    lfw_gate_off = [
        score(grey_off, Sample(s.dataset, s.path, None, s.split))
        for s in photos
        if s.dataset == "lfw_grey"
    ]
    cal = [s for s in samples if s.split == "cal"]
    test = [s for s in samples if s.split == "test"]

    # 2. variants, each with its own calibrated threshold
    variants: dict[str, tuple[str, ...]] = {"models only": ()}
    for c in CUE_NAMES:
        variants[f"models + {c}"] = (c,)
    variants["models + all cues"] = CUE_NAMES
    selection = select_cues(cal)
    selected = tuple(selection["kept"])
    variants[f"selected on calibration {list(selected)}"] = selected
    variants[f"shipped cues {list(DEFAULT_CUES)}"] = DEFAULT_CUES
    results: dict[str, Any] = {}
    for name, cues in variants.items():
        th = choose_threshold(cal, cues)
        t = th["threshold"]
        results[name] = {
            "cues": list(cues),
            **th,
            "cal": metrics(cal, cues, t).to_dict(),
            "test": metrics(test, cues, t).to_dict(),
        }

    # 3. the shipped operating point, per data set
    shipped = DEFAULT_CUES
    t_ship = DEFAULT_THRESHOLD
    per_set: dict[str, Metrics] = {}
    groups = {
        "calibration (all)": cal,
        "held-out (all)": test,
        "silent_face (cal)": [s for s in samples if s.dataset == "silent_face"],
        "replay_2019 cal half": [
            s for s in samples if s.dataset == "replay_2019" and s.split == "cal"
        ],
        "replay_2019 held-out half": [
            s for s in samples if s.dataset == "replay_2019" and s.split == "test"
        ],
        "celebrities13 (cal)": [s for s in samples if s.dataset == "celebrities13"],
        "face_recognition_examples (held-out)": [
            s for s in samples if s.dataset == "face_recognition_examples"
        ],
        "LFW grey sample (held-out)": [s for s in samples if s.dataset == "lfw_grey"],
        "LFW grey, greyscale gate off": lfw_gate_off,
    }
    for g, ss in groups.items():
        per_set[g] = metrics(ss, shipped, t_ship)
    silent = []
    for s in samples:
        if s.dataset != "silent_face":
            continue
        f = fused(s, shipped)
        status = "not_checked" if f is None else ("live" if f >= t_ship else "spoof")
        silent.append(
            {
                "file": Path(s.path).name,
                "truth": s.attack or "live",
                "status": status,
                "score": f,
                "model_scores": s.model_scores,
            }
        )

    # 4. cue measurements per data set (medians) to show what each cue sees
    cue_stats: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s.model_score is None:
            continue
        key = f"{s.dataset}/{'bona fide' if s.bona else s.attack}"
        for c, v in s.cue_values.items():
            cue_stats.setdefault(key, {}).setdefault(c, []).append(v)

    # 5. DET curve on held-out data
    def scores(ss: Iterable[Sample], cues: Sequence[str]) -> list[float]:
        return [f for s in ss if (f := fused(s, cues)) is not None]

    tb = [s for s in test if s.bona]
    ta = [s for s in test if not s.bona]
    curves = {
        "models only": (scores(tb, ()), scores(ta, ())),
        f"models + {'+'.join(shipped)}": (scores(tb, shipped), scores(ta, shipped)),
    }
    m_ship = per_set["held-out (all)"]
    det_path = OUT / "pad_det.png"
    mo = results["models only"]
    det_plot(
        curves,
        {
            f"shipped: models + {'+'.join(shipped)}, t={t_ship}": (m_ship.apcer_max, m_ship.bpcer),
            f"models only, t={mo['threshold']}": (
                mo["test"]["apcer_max"],
                mo["test"]["bpcer"],
            ),
        },
        det_path,
        "Passive PAD, held-out: replay_2019 2nd half (attacks, live) + face photos (bona fide)",
    )

    # 6. timing
    tim = timing(PassiveLiveness(model_dir=model_dir), data, args.timing_runs)
    elapsed = time.time() - t_start

    # report
    lines = [
        "# Passive liveness (PAD) evaluation",
        "",
        f"Command: `nice -n 10 python benchmarks/pad_eval.py --lfw {args.lfw} --seed {args.seed}`"
        f" ({elapsed:.0f} s)",
        "",
        "## replay_2019 crop protocol (models alone; chosen on the calibration half)",
        "",
        "| box on the 96x132 crop | split | AUC | APCER at BPCER 5 % |",
        "|---|---|---|---|",
    ]
    for row in protocol_rows:
        lines.append(
            f"| {row['protocol']} | {row['split']} | {row['auc']:.3f} | "
            f"{pct(row['apcer_at_bpcer5'])} |"
        )
    lines += ["", f"Chosen: **{best}**.", ""]
    lines += [
        "## Cue selection on the calibration split (fires = strength >= 0.5)",
        "",
        "| cue | fires on cal attacks | fires on cal bona fide | new attacks caught | kept |",
        "|---|---|---|---|---|",
    ]
    for c, row in selection["table"].items():
        lines.append(
            f"| {c} | {pct(row['attack_fire'])} | {pct(row['bona_fire'])} | "
            f"{row.get('new_catches', '-')} | {'yes' if c in selected else 'no'} |"
        )
    sel_t = results[f"selected on calibration {list(selected)}"]["threshold"]
    agree = tuple(selected) == tuple(DEFAULT_CUES) and abs(sel_t - t_ship) < 1e-9
    lines += [
        "",
        f"Selected: {list(selected)}, threshold {sel_t}; shipped in kyc.liveness.passive: "
        f"{list(DEFAULT_CUES)}, threshold {t_ship} "
        f"({'the same' if agree else 'DIFFERENT: update DEFAULT_CUES / DEFAULT_THRESHOLD'}).",
        "",
    ]
    lines += [
        "## Cues: with and without (threshold re-chosen on calibration for each variant)",
        "",
        "| variant | t_a | t_b | threshold | cal APCER max | cal BPCER | held-out APCER max | "
        "held-out BPCER | held-out ACER |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['t_a']:.2f} | {r['t_b']:.2f} | {r['threshold']:.3f} | "
            f"{pct(r['cal']['apcer_max'])} | {pct(r['cal']['bpcer'])} | "
            f"{pct(r['test']['apcer_max'])} | {pct(r['test']['bpcer'])} | "
            f"{pct(r['test']['acer'])} |"
        )
    lines += [
        "",
        f"## Shipped operating point: cues {list(shipped)}, threshold {t_ship}",
        "",
        HEADER,
    ]
    lines += [metrics_row(g, m) for g, m in per_set.items()]
    lines += [
        "",
        "Sensitivity (information only, not used to choose anything): the shipped cues at other "
        "thresholds.",
        "",
        "| threshold | silent_face right | replay held-out APCER | replay held-out BPCER | "
        "celebrities13 BPCER | face_recognition_examples BPCER |",
        "|---|---|---|---|---|---|",
    ]
    sf = groups["silent_face (cal)"]
    for t in (0.23, 0.3, 0.35, t_ship, 0.5, 0.55, 0.61):
        right = sum(1 for s in sf if (f := fused(s, shipped)) is not None and (f >= t) == s.bona)
        rh = metrics(groups["replay_2019 held-out half"], shipped, t)
        ce = metrics(groups["celebrities13 (cal)"], shipped, t)
        fr = metrics(groups["face_recognition_examples (held-out)"], shipped, t)
        lines.append(
            f"| {t:g} | {right}/{len(sf)} | {pct(rh.apcer_max)} | {pct(rh.bpcer)} | "
            f"{pct(ce.bpcer)} | {pct(fr.bpcer)} |"
        )
    lines += ["", "silent_face samples:", ""]
    for row in silent:
        ms = ", ".join(f"{k} {v:.3f}" for k, v in row["model_scores"].items())
        sc = "-" if row["score"] is None else f"{row['score']:.3f}"
        lines.append(
            f"- {row['file']}: truth {row['truth']}, got {row['status']} (score {sc}; {ms})"
        )
    lines += ["", "## Cue measurements (median per data set, assessed faces)", ""]
    names = list(CUE_NAMES)
    lines.append("| data set | n | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for key, d in sorted(cue_stats.items()):
        n = len(next(iter(d.values())))
        vals = " | ".join(f"{statistics.median(d[c]):.3g}" for c in names)
        lines.append(f"| {key} | {n} | {vals} |")
    lines += ["", "## Time per selfie (this machine, shared 2 cores; median)", ""]
    lines.append("| image | size | total | decode | detect | 2 models | cues |")
    lines.append("|---|---|---|---|---|---|---|")
    for k, v in tim.items():
        if isinstance(v, dict):
            lines.append(
                f"| {k} | {v['size']} | {v['total_ms']:.1f} ms | {v['decode_ms']:.1f} | "
                f"{v['detect_ms']:.1f} | {v['models_ms']:.1f} | {v['cues_ms']:.1f} |"
            )
    la = ", ".join(f"{x:.1f}" for x in tim["loadavg"])
    lines += ["", f"Load average during timing: {la} ({tim['runs']} runs each).", ""]
    report = "\n".join(lines)
    print(report)
    (OUT / "pad_eval.md").write_text(report + "\n")
    dump = {
        "protocols": protocol_rows,
        "crop_protocol": best,
        "cue_selection": selection,
        "variants": results,
        "shipped": {
            "cues": list(shipped),
            "threshold": t_ship,
            "per_set": {g: m.to_dict() for g, m in per_set.items()},
        },
        "silent_face": silent,
        "timing": tim,
        "samples": [
            {
                "dataset": s.dataset,
                "path": s.path,
                "attack": s.attack,
                "split": s.split,
                "status": s.status,
                "model_score": s.model_score,
                "model_scores": s.model_scores,
                "cue_strengths": s.cues,
                "cue_values": s.cue_values,
                "codes": list(s.codes),
            }
            for s in samples
        ],
    }
    (OUT / "pad_eval.json").write_text(json.dumps(dump, indent=1, default=float))
    print(f"wrote {OUT / 'pad_eval.md'}, {OUT / 'pad_eval.json'}, {det_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
