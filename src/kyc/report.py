"""A benchmark report with pictures: DET and ROC curves, score histograms, a fraud ring.

:func:`run_bench` (``kyc bench --out DIR``) measures the library on the evaluation data
(``$KYC_DATA_DIR``) and writes PNG figures plus ONE self-contained HTML page (every PNG
inlined as base64, inline CSS, no script, nothing fetched) and ``summary.json``:

* **Face match** (the default :class:`~kyc.face.verify.FaceVerifier` and its calibrated
  threshold profile): every pair of ``faces/celebrities13`` (61 photos, 140 genuine and 1,690
  impostor pairs); the full run adds the 6,000 LFW "View 2" pairs (``faces/lfw``). DET curve
  (FNMR against FMR on normal-deviate axes), ROC curve (TAR against FMR, log scale) and the
  distance histograms with the threshold in use.
* **Presentation attacks** (passive liveness, :class:`~kyc.liveness.passive.PassiveLiveness`
  with the shipped operating point): the screen-replay crops of ``pad/replay_2019`` (resized
  to 96x132, the centred square as the face, as ``benchmarks/pad_eval.py`` does), the print
  and tablet attacks and live selfies of ``pad/silent_face_samples``, and bona fide
  ``celebrities13`` photos. DET (BPCER against APCER, ISO/IEC 30107-3 terms), ROC and live-
  score histograms.
* **Fraud rings**: a synthetic applicant population (:func:`kyc.graph.synth.generate`, planted
  rings, hubs and stackers) through :class:`~kyc.graph.fraudgraph.FraudGraph`; the ring-score
  histogram of planted rings against other candidates, and a picture of a flagged ring
  (:func:`kyc.graph.render.ring_png`; hashed tokens only).

``quick=True`` uses subsets (seconds, for tests and smoke runs); the full run takes minutes on
two cores. Small data sets give coarse, optimistic curves: the page says how many scores
each curve rests on.

The plotting helpers (:func:`det_plot`, :func:`roc_plot`, :func:`score_histogram`) and
:func:`write_html` work on any scores. Needs matplotlib (``pip install 'kyc[plot]'``); a
:class:`~kyc.errors.ConfigError` says so when it is missing.

>>> c = error_curve([0.1, 0.2, 0.3], [0.25, 0.5, 0.6], higher_is_match=False)
>>> fmr, fnmr = c.at(0.2)
>>> fmr, round(fnmr, 4), round(c.auc, 4)
(0.0, 0.3333, 0.8889)
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from kyc.errors import ConfigError, KycError, ModelError, NoFace

if TYPE_CHECKING:  # pragma: no cover
    from kyc.face.verify import FaceVerifier
    from kyc.graph.rings import Ring
    from kyc.liveness.passive import PassiveLiveness

__all__ = [
    "PARTS",
    "BenchReport",
    "ErrorCurve",
    "FaceScores",
    "FigureRef",
    "GraphBench",
    "PadScores",
    "Section",
    "det_plot",
    "error_curve",
    "face_scores",
    "graph_bench",
    "pad_scores",
    "roc_plot",
    "run_bench",
    "score_histogram",
    "write_html",
]

FloatArray = npt.NDArray[np.float64]

#: The parts of the report, in page order.
PARTS: tuple[str, ...] = ("face", "pad", "graph")

_GENUINE = "#1f77b4"
_IMPOSTOR = "#d62728"
_OTHER = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_DET_TICKS = (0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
_CROP_SIZE = (96, 132)  # (width, height) of replay_2019 crops, as in benchmarks/pad_eval.py


def _progress(items: Iterable[Any], desc: str, enabled: bool, total: int | None = None
              ) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False)
    return bar


# --- error curves -----------------------------------------------------------------------------


def _scores(values: Any, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ConfigError(f"{name} scores are empty")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} scores hold NaN or infinite values")
    return arr


@dataclass(frozen=True, eq=False)
class ErrorCurve:
    """Error rates of a two-class score at every distinct threshold.

    ``genuine`` and ``impostor`` are the scores (for PAD: bona fide and attack); a pair
    "matches" (is accepted) when ``score <= threshold`` for distances
    (``higher_is_match=False``) or ``score >= threshold`` for similarities / live
    probabilities. ``thresholds`` run from the strictest to the loosest; ``fmr`` (attacks
    accepted, APCER) rises and ``fnmr`` (genuine refused, BPCER) falls along them.
    """

    genuine: FloatArray
    impostor: FloatArray
    higher_is_match: bool
    thresholds: FloatArray
    fmr: FloatArray
    fnmr: FloatArray

    def at(self, threshold: float) -> tuple[float, float]:
        """``(fmr, fnmr)`` at ``threshold``."""
        from kyc.calibrate import error_rates

        fmr, fnmr = error_rates(self.genuine, self.impostor, [threshold],
                                higher_is_match=self.higher_is_match)
        return float(fmr[0]), float(fnmr[0])

    @property
    def auc(self) -> float:
        """Area under the ROC curve (ties count half)."""
        from kyc.calibrate import roc_auc

        return roc_auc(self.genuine, self.impostor, higher_is_match=self.higher_is_match)

    @property
    def eer(self) -> float:
        """Equal error rate (interpolated)."""
        from kyc.calibrate import equal_error_rate

        return equal_error_rate(self.genuine, self.impostor,
                                higher_is_match=self.higher_is_match)

    def tar_at(self, fmr_target: float) -> float | None:
        """Best 1 - FNMR with FMR <= ``fmr_target``; ``None`` when there are too few
        impostor scores to measure that FMR (fewer than ``1 / fmr_target``)."""
        if self.impostor.size * fmr_target < 1.0:
            return None
        ok = self.fmr <= fmr_target
        return float(1.0 - self.fnmr[ok].min()) if ok.any() else 0.0


def error_curve(genuine: Any, impostor: Any, *, higher_is_match: bool) -> ErrorCurve:
    """Build the :class:`ErrorCurve` of two score samples (``ConfigError`` if one is empty)."""
    from kyc.calibrate import error_rates

    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    thr = np.unique(np.concatenate([gen, imp]))
    if higher_is_match:
        thr = thr[::-1]
    # strictest first: nothing accepted below the first threshold
    edge = np.inf if higher_is_match else -np.inf
    thr = np.concatenate([[edge], thr])
    fmr, fnmr = error_rates(gen, imp, thr, higher_is_match=higher_is_match)
    return ErrorCurve(gen, imp, higher_is_match, thr, fmr, fnmr)


# --- figures --------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report's pictures need matplotlib: pip install 'kyc[plot]'"
                          ) from None
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png", facecolor="white", bbox_inches="tight",
                metadata={"Software": None})
    os.replace(tmp, out)
    return out


def _pct(p: float) -> str:
    if p >= 0.01:
        return f"{p * 100:.3g}%"
    return f"{p * 100:.2g}%"


def _floor(n: int) -> float:
    """Where a rate of 0 is drawn: half the finest rate ``n`` scores can measure."""
    return 0.5 / max(n, 1)


def det_plot(
    curves: Sequence[tuple[str, ErrorCurve]],
    path: str | os.PathLike[str],
    *,
    title: str,
    x_label: str = "false match rate (FMR)",
    y_label: str = "false non-match rate (FNMR)",
    points: Sequence[tuple[str, float, float]] = (),
    counts: tuple[str, str] = ("genuine", "impostor"),
) -> Path:
    """DET curves (both axes on the normal-deviate scale) to a PNG; returns the path.

    ``points`` are operating points ``(label, x_rate, y_rate)`` drawn as circles. A rate of
    0 cannot sit on a normal-deviate axis: it is drawn at half the finest rate the data can
    measure (``0.5 / n``), just inside the frame, so a perfectly separated sample shows as a
    curve along the lower and left edges. The legend names how many scores (``counts``)
    each curve rests on.
    """
    from scipy.stats import norm

    x_lo = min(_floor(c.impostor.size) for _, c in curves) if curves else 1e-3
    y_lo = min(_floor(c.genuine.size) for _, c in curves) if curves else 1e-3
    x_lo, y_lo = max(x_lo, 1e-6), max(y_lo, 1e-6)
    hi = 0.8
    fig = _figure(6.2, 5.6)
    ax = fig.add_subplot(1, 1, 1)

    def tf(v: Any, lo: float) -> FloatArray:
        arr = np.clip(np.asarray(v, dtype=np.float64), lo, hi)
        return np.asarray(norm.ppf(arr), dtype=np.float64)

    colours = (_GENUINE, _IMPOSTOR, *_OTHER)
    for i, (label, c) in enumerate(curves):
        ax.plot(tf(c.fmr, x_lo), tf(c.fnmr, y_lo), drawstyle="steps-post", lw=1.8,
                color=colours[i % len(colours)],
                label=f"{label} ({c.genuine.size} {counts[0]}, {c.impostor.size} {counts[1]}; "
                      f"EER {_pct(c.eer)})")
    for label, x, y in points:
        px, py = float(tf([x], x_lo)[0]), float(tf([y], y_lo)[0])
        ax.plot([px], [py], "o", ms=9, mfc="none", mew=2, color="black", zorder=5)
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(9, 7), fontsize=8)
    for axis, lo in ((ax.xaxis, x_lo), (ax.yaxis, y_lo)):
        ticks = [t for t in _DET_TICKS if lo * 1.5 <= t <= hi]
        axis.set_ticks(list(tf(ticks, lo)))
        axis.set_ticklabels([_pct(t) for t in ticks])
    pad = 0.08  # keep the floor line inside the frame
    ax.set_xlim(float(tf([x_lo], x_lo)[0]) - pad, float(tf([hi], x_lo)[0]))
    ax.set_ylim(float(tf([y_lo], y_lo)[0]) - pad, float(tf([hi], y_lo)[0]))
    lo = max(x_lo, y_lo)
    ax.plot(tf([lo, hi], lo), tf([lo, hi], lo), ls=":", color="#999", lw=1,
            label="equal error rates")
    ax.grid(True, color="#ddd", lw=0.6)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper right", fontsize=7.5, framealpha=0.9)
    return _save(fig, path)


def roc_plot(
    curves: Sequence[tuple[str, ErrorCurve]],
    path: str | os.PathLike[str],
    *,
    title: str,
    x_label: str = "false match rate (FMR, log scale)",
    y_label: str = "true match rate (TAR = 1 - FNMR)",
    points: Sequence[tuple[str, float, float]] = (),
) -> Path:
    """ROC curves (TAR against FMR on a log axis) to a PNG; returns the path.

    ``points`` are ``(label, fmr, tar)`` operating points. FMR 0 is drawn at half the finest
    measurable rate; the TAR axis is zoomed to the range the curves and points use.
    """
    fig = _figure(6.2, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    floor = min((_floor(c.impostor.size) for _, c in curves), default=1e-3)
    colours = (_GENUINE, _IMPOSTOR, *_OTHER)
    y_min = 1.0
    for i, (label, c) in enumerate(curves):
        tar = 1.0 - c.fnmr
        ax.plot(np.maximum(c.fmr, floor), tar, drawstyle="steps-post", lw=1.8,
                color=colours[i % len(colours)], label=f"{label} (AUC {c.auc:.4f})")
        at_zero = tar[c.fmr <= 0]
        y_min = min(y_min, float(at_zero.max()) if at_zero.size else 0.0)
    for label, x0, y0 in points:
        ax.plot([max(x0, floor)], [y0], "o", ms=9, mfc="none", mew=2, color="black", zorder=5)
        ax.annotate(label, (max(x0, floor), y0), textcoords="offset points",
                    xytext=(9, -14), fontsize=8)
        y_min = min(y_min, y0)
    ax.set_xscale("log")
    ax.set_xlim(floor * 0.8, 1.0)
    ax.set_ylim(max(0.0, y_min - 0.03 * max(1.0 - y_min, 0.1)), 1.0 + 0.01 * max(1.0 - y_min, 0.1))
    ax.grid(True, which="both", color="#e4e4e4", lw=0.6)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def score_histogram(
    groups: Sequence[tuple[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str,
    x_label: str,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    bins: int = 40,
    value_range: tuple[float, float] | None = None,
    log_y: bool = False,
) -> Path:
    """Overlaid histograms of score groups (``(label, scores)``), densities normalised per
    group so a small group stays visible, with an optional threshold line; returns the path."""
    fig = _figure(6.6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    arrays = [(label, _scores(v, label)) for label, v in groups]
    lo = min(float(a.min()) for _, a in arrays)
    hi = max(float(a.max()) for _, a in arrays)
    if value_range is not None:
        lo, hi = value_range
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    colours = (_GENUINE, _IMPOSTOR, *_OTHER)
    for i, (label, a) in enumerate(arrays):
        ax.hist(np.clip(a, lo, hi), bins=edges, density=True, alpha=0.5,
                color=colours[i % len(colours)], label=f"{label} (n={a.size})",
                edgecolor="white", linewidth=0.4)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.3,
                   label=f"{threshold_label} {threshold:g}")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("density (per group)")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", color="#e4e4e4", lw=0.6)
    return _save(fig, path)


# --- HTML -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureRef:
    """A PNG on disk and what it shows."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Section:
    """A part of the report: a title, paragraphs, a key-value table, figures, notes."""

    title: str
    paragraphs: tuple[str, ...] = ()
    table: tuple[tuple[str, str], ...] = ()
    figures: tuple[FigureRef, ...] = ()
    notes: tuple[str, ...] = ()


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}.meta{color:#555;font-size:.9em}table{border-collapse:collapse;margin:.8em 0}
td,th{border:1px solid #ddd;padding:.25em .7em;text-align:left;font-size:.92em}
th{background:#f5f5f5;font-weight:600}.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;flex:1 1 480px;max-width:100%}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{font-size:.85em;color:#444;margin-top:.3em}
.note{font-size:.88em;color:#555}code{background:#f4f4f4;padding:0 .25em}
"""


def write_html(
    sections: Sequence[Section],
    path: str | os.PathLike[str],
    *,
    title: str,
    meta: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ONE self-contained HTML page: every figure's PNG inlined as base64.

    No script, no external stylesheet, image or font; text is HTML-escaped. Returns the path.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if meta:
        parts.append('<p class="meta">' + "<br>".join(
            f"<b>{esc(k)}</b>: {esc(v)}" for k, v in meta) + "</p>")
    for s in sections:
        parts.append(f"<h2>{esc(s.title)}</h2>")
        parts.extend(f"<p>{esc(p)}</p>" for p in s.paragraphs)
        if s.table:
            rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in s.table)
            parts.append(f"<table>{rows}</table>")
        if s.figures:
            parts.append('<div class="figs">')
            for f in s.figures:
                data = base64.b64encode(Path(f.path).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{esc(f.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(f.caption)}</figcaption></figure>"
                )
            parts.append("</div>")
        parts.extend(f'<p class="note">{esc(n)}</p>' for n in s.notes)
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, out)
    return out


# --- measurements ---------------------------------------------------------------------------


@dataclass
class FaceScores:
    """Pair scores of one face data set under a verifier's embedder and threshold profile."""

    dataset: str
    genuine: list[float] = field(default_factory=list)
    impostor: list[float] = field(default_factory=list)
    images: int = 0
    no_face: int = 0
    pairs_skipped: int = 0
    seconds: float = 0.0


def _embed_all(verifier: FaceVerifier, paths: Sequence[Path], desc: str, progress: bool
               ) -> tuple[dict[Path, np.ndarray], int]:
    out: dict[Path, np.ndarray] = {}
    missing = 0
    for p in _progress(paths, desc, progress):
        try:
            out[p] = verifier.represent(p).embedding
        except NoFace:
            missing += 1
    return out, missing


def _pair_scores(
    fs: FaceScores, embs: Mapping[Path, np.ndarray], pairs: Iterable[tuple[Path, Path, bool]],
    metric: str,
) -> None:
    from kyc.face.embed import compare

    for a, b, same in pairs:
        ea, eb = embs.get(a), embs.get(b)
        if ea is None or eb is None:
            fs.pairs_skipped += 1
            continue
        (fs.genuine if same else fs.impostor).append(float(compare(ea, eb, metric)))


def face_scores(
    data_dir: Path, verifier: FaceVerifier, *, lfw: bool = False, lfw_pairs: int | None = None,
    progress: bool = False,
) -> list[FaceScores]:
    """Pair scores on ``celebrities13`` (all pairs) and, with ``lfw``, the LFW View 2 pairs
    (``lfw_pairs`` caps how many, in file order). Data sets that are absent are skipped."""
    out: list[FaceScores] = []
    metric = verifier.embedder.metric
    celeb = data_dir / "faces" / "celebrities13"
    if (celeb / "all_pairs.csv").is_file():
        t0 = time.perf_counter()
        fs = FaceScores("celebrities13")
        with (celeb / "all_pairs.csv").open(newline="") as fh:
            rows = [(celeb / r["image_a"], celeb / r["image_b"], r["same"] == "1")
                    for r in csv.DictReader(fh)]
        paths = sorted({p for a, b, _ in rows for p in (a, b)})
        embs, fs.no_face = _embed_all(verifier, paths, "celebrities13", progress)
        fs.images = len(paths)
        _pair_scores(fs, embs, rows, metric)
        fs.seconds = time.perf_counter() - t0
        out.append(fs)
    pairs_file = data_dir / "faces" / "lfw" / "pairs.txt"
    if lfw and pairs_file.is_file():
        t0 = time.perf_counter()
        fs = FaceScores("lfw_view2")
        root = data_dir / "faces" / "lfw" / "images"

        def img(name: str, n: str) -> Path:
            return root / name / f"{name}_{int(n):04d}.jpg"

        pairs: list[tuple[Path, Path, bool]] = []
        for line in pairs_file.read_text().splitlines()[1:]:
            f = line.split()
            if len(f) == 3:
                pairs.append((img(f[0], f[1]), img(f[0], f[2]), True))
            elif len(f) == 4:
                pairs.append((img(f[0], f[1]), img(f[2], f[3]), False))
        if lfw_pairs is not None:
            pairs = pairs[:lfw_pairs]
        paths = sorted({p for a, b, _ in pairs for p in (a, b) if p.is_file()})
        embs, fs.no_face = _embed_all(verifier, paths, "lfw", progress)
        fs.images = len(paths)
        _pair_scores(fs, embs, pairs, metric)
        fs.seconds = time.perf_counter() - t0
        out.append(fs)
    return out


@dataclass
class PadScores:
    """Fused live probabilities of bona fide and attack presentations.

    ``bona`` / ``attack`` map a data set (or attack type) to its scores; ``not_checked``
    counts presentations the engine could not assess, per data set.
    """

    bona: dict[str, list[float]] = field(default_factory=dict)
    attack: dict[str, list[float]] = field(default_factory=dict)
    not_checked: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def all_bona(self) -> list[float]:
        """Every bona fide score."""
        return [s for v in self.bona.values() for s in v]

    def all_attack(self) -> list[float]:
        """Every attack score."""
        return [s for v in self.attack.values() for s in v]


def pad_scores(data_dir: Path, engine: PassiveLiveness, *, quick: bool = False,
               progress: bool = False) -> PadScores:
    """Score the PAD data (see the module docs); ``quick`` takes every 5th replay crop and
    20 bona fide photos."""
    import cv2

    from kyc.image import load_image

    t0 = time.perf_counter()
    ps = PadScores()

    def add(group: dict[str, list[float]], key: str, image: Any, box: Any = None) -> None:
        r = engine.check(image, face_box=box)
        if r.score is None:
            ps.not_checked[key] = ps.not_checked.get(key, 0) + 1
        else:
            group.setdefault(key, []).append(float(r.score))

    replay = data_dir / "pad" / "replay_2019"
    w, h = _CROP_SIZE
    square = (0.0, (h - w) / 2.0, float(w), float(w))
    for cls in ("live", "spoof"):
        files = sorted((replay / cls).glob("*.png"), key=lambda p: int(p.stem))
        if quick:
            files = files[::5]
        for p in _progress(files, f"replay_2019 {cls}", progress):
            img = load_image(p)
            interp = cv2.INTER_AREA if img.shape[1] > w else cv2.INTER_CUBIC
            crop = np.asarray(cv2.resize(img, (w, h), interpolation=interp))
            if cls == "live":
                add(ps.bona, "replay_2019 live", crop, square)
            else:
                add(ps.attack, "screen replay (replay_2019)", crop, square)
    silent = data_dir / "pad" / "silent_face_samples"
    if (silent / "labels.csv").is_file():
        with (silent / "labels.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                img = load_image(silent / row["path"])
                if row["label"] == "live":
                    add(ps.bona, "silent_face live", img)
                else:
                    add(ps.attack, f"{row['attack_type'].replace('_', ' ')} (silent_face)", img)
    celeb = sorted((data_dir / "faces" / "celebrities13").glob("img*.jpg"))
    for p in _progress(celeb[:20] if quick else celeb, "bona fide photos", progress):
        add(ps.bona, "celebrities13 photos", load_image(p))
    ps.seconds = time.perf_counter() - t0
    return ps


@dataclass
class GraphBench:
    """Rings found in a synthetic population, against the planted truth."""

    applications: int
    seed: int
    flag_threshold: float
    rings: list[Ring]
    planted: list[Ring]  # candidates that are mostly planted ring members
    other: list[Ring]
    planted_rings: int
    recovered: int  # planted rings with a flagged candidate holding >= half their members
    seconds: float


def graph_bench(n_applications: int, *, seed: int = 0) -> GraphBench:
    """Generate ``n_applications`` synthetic applications, add them to an in-memory
    :class:`~kyc.graph.fraudgraph.FraudGraph` and score its ring candidates."""
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.synth import generate

    t0 = time.perf_counter()
    ds = generate(n_applications, seed=seed)
    with FraudGraph(b"kyc-bench-report-secret-" + str(seed).encode()) as g:
        g.add_many(ds.applications)
        rings = g.rings()
        flag_threshold = float(g.config.scoring.flag_threshold)
        token_ring = {g.applicant_token(a): r for a, r in ds.ring_of.items()}
    planted: list[Ring] = []
    other: list[Ring] = []
    hit: set[str] = set()
    for ring in rings:
        owners = [token_ring[m] for m in ring.members if m in token_ring]
        (planted if len(owners) * 2 >= len(ring.members) else other).append(ring)
        if ring.flagged:
            for rid in set(owners):
                if owners.count(rid) * 2 >= len(ds.rings[rid]):
                    hit.add(rid)
    return GraphBench(n_applications, seed, flag_threshold, rings, planted, other,
                      len(ds.rings), len(hit), time.perf_counter() - t0)


# --- the whole report -----------------------------------------------------------------------


@dataclass(frozen=True)
class BenchReport:
    """What :func:`run_bench` wrote: the HTML page, the PNGs, the summary (also as JSON)."""

    out_dir: Path
    html: Path
    figures: tuple[Path, ...]
    summary: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (paths as strings)."""
        return {"out_dir": str(self.out_dir), "html": str(self.html),
                "figures": [str(p) for p in self.figures], "summary": dict(self.summary)}


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _fmt_rate(v: float | None) -> str:
    return "not measurable (too few impostor scores)" if v is None else f"{v * 100:.2f}%"


def _face_section(out: Path, verifier: FaceVerifier, sets: Sequence[FaceScores],
                  figures: list[Path]) -> tuple[Section, dict[str, Any]]:
    prof = verifier.profile
    higher = prof.metric != "euclidean"
    curves = [(fs.dataset, error_curve(fs.genuine, fs.impostor, higher_is_match=higher))
              for fs in sets if fs.genuine and fs.impostor]
    summary: dict[str, Any] = {"profile": prof.name, "threshold": prof.threshold,
                               "fmr_target": prof.fmr_target, "metric": prof.metric,
                               "models": [dict(m) for m in verifier.models], "sets": {}}
    if not curves:
        return Section("Face match", ("No face data found: nothing measured.",)), summary
    table: list[tuple[str, str]] = [
        ("models", ", ".join(f"{m['role']} {m['name']} ({m['sha256'][:12]})"
                             for m in verifier.models)),
        ("threshold profile", f"{prof.name}: {prof.metric} distance "
                              f"{'>=' if higher else '<='} {prof.threshold:g}, set for FMR "
                              f"{prof.fmr_target:g}" if prof.fmr_target else prof.name),
    ]
    points = []
    for fs, (name, c) in zip([s for s in sets if s.genuine and s.impostor], curves,
                             strict=True):
        fmr, fnmr = c.at(prof.threshold)
        points.append((f"{name}: threshold {prof.threshold:g}", fmr, fnmr))
        s = {"images": fs.images, "no_face": fs.no_face, "pairs_skipped": fs.pairs_skipped,
             "genuine": len(fs.genuine), "impostor": len(fs.impostor), "auc": _r(c.auc, 6),
             "eer": _r(c.eer), "fmr_at_threshold": _r(fmr, 6), "fnmr_at_threshold": _r(fnmr),
             "tar_at_fmr_1e-2": _r(c.tar_at(1e-2)), "tar_at_fmr_1e-3": _r(c.tar_at(1e-3)),
             "seconds": round(fs.seconds, 1)}
        summary["sets"][name] = s
        table += [
            (f"{name}: pairs", f"{s['genuine']} genuine, {s['impostor']} impostor "
                               f"({fs.images} images, {fs.no_face} without a face, "
                               f"{fs.pairs_skipped} pairs skipped)"),
            (f"{name}: ROC AUC / EER", f"{c.auc:.5f} / {c.eer * 100:.2f}%"),
            (f"{name}: at the profile threshold",
             f"FMR {fmr * 100:.3f}%, FNMR {fnmr * 100:.2f}%"),
            (f"{name}: TAR at FMR 1e-2 / 1e-3",
             f"{_fmt_rate(c.tar_at(1e-2))} / {_fmt_rate(c.tar_at(1e-3))}"),
        ]
    det = det_plot(curves, out / "face_det.png", title="Face match: DET", points=points)
    roc = roc_plot(curves, out / "face_roc.png", title="Face match: ROC",
                   points=[(lbl, x, 1 - y) for lbl, x, y in points])
    first = [s for s in sets if s.genuine and s.impostor][-1]
    hist = score_histogram(
        [("genuine pairs", first.genuine), ("impostor pairs", first.impostor)],
        out / "face_hist.png", title=f"Face match: {prof.metric} distances ({first.dataset})",
        x_label=f"{prof.metric} distance between embeddings" if not higher else "similarity",
        threshold=prof.threshold, threshold_label=f"threshold ({prof.name})",
    )
    figures += [det, roc, hist]
    sec = Section(
        "Face match (ID photo vs selfie)",
        (
            "Every pair of photos is compared with the default verifier (YuNet detection, "
            "alignment, the dlib ResNet embedding). The threshold is the shipped profile's, "
            "set on other data for the FMR target it states: the markers show where it "
            "lands on these data sets.",
        ),
        tuple(table),
        (FigureRef(det, "DET: false non-match rate against false match rate (normal-deviate "
                        "axes); the circle is the profile threshold. Rates of 0 lie along "
                        "the frame's left and lower edges."),
         FigureRef(roc, "ROC: true match rate against false match rate (log scale)."),
         FigureRef(hist, f"Distance histograms on {first.dataset} with the threshold.")),
        ("celebrities13 holds 1,690 impostor pairs: FMR below about 1e-3 cannot be measured "
         "on it, and a DET drawn from 140 genuine pairs is a coarse staircase. LFW (the full "
         "run) gives 3,000 of each.",),
    )
    return sec, summary


def _pad_section(out: Path, engine: PassiveLiveness, ps: PadScores, figures: list[Path]
                 ) -> tuple[Section, dict[str, Any]]:
    bona, attack = ps.all_bona(), ps.all_attack()
    summary: dict[str, Any] = {
        "operating_point": engine.operating_point, "threshold": engine.threshold,
        "apcer_target": engine.apcer_target,
        "models": [{"name": m.name, "sha256": m.sha256} for m in engine.models],
        "bona_fide": {k: len(v) for k, v in ps.bona.items()},
        "attacks": {k: len(v) for k, v in ps.attack.items()},
        "not_checked": dict(ps.not_checked), "seconds": round(ps.seconds, 1),
    }
    if not bona or not attack:
        return Section("Presentation attacks (passive liveness)",
                       ("Not enough PAD data found: nothing measured.",)), summary
    c = error_curve(bona, attack, higher_is_match=True)
    thr = engine.threshold
    apcer, bpcer = c.at(thr)
    per_type = {k: float(np.mean(np.asarray(v) >= thr)) for k, v in ps.attack.items()}
    summary.update({"auc": _r(c.auc, 6), "eer": _r(c.eer), "apcer_at_threshold": _r(apcer),
                    "bpcer_at_threshold": _r(bpcer),
                    "apcer_per_attack": {k: _r(v) for k, v in per_type.items()}})
    curves = [("all attacks", c)]
    replay_bona = ps.bona.get("replay_2019 live", [])
    replay_att = ps.attack.get("screen replay (replay_2019)", [])
    if replay_bona and replay_att:
        curves.append(("replay_2019 only", error_curve(replay_bona, replay_att,
                                                         higher_is_match=True)))
    point = [(f"threshold {thr:g}", apcer, bpcer)]
    det = det_plot(curves, out / "pad_det.png", title="Passive liveness: DET",
                   x_label="attacks accepted (APCER)", y_label="bona fide rejected (BPCER)",
                   points=point, counts=("bona fide", "attacks"))
    roc = roc_plot(curves, out / "pad_roc.png", title="Passive liveness: ROC",
                   x_label="attacks accepted (APCER, log scale)",
                   y_label="bona fide accepted (1 - BPCER)",
                   points=[(lbl, x, 1 - y) for lbl, x, y in point])
    hist = score_histogram([("bona fide", bona), ("attacks", attack)], out / "pad_hist.png",
                           title="Passive liveness: fused live probability",
                           x_label="live probability (score)", threshold=thr,
                           threshold_label=f"threshold ({engine.operating_point})",
                           value_range=(0.0, 1.0), log_y=True)
    figures += [det, roc, hist]
    table = [
        ("models", ", ".join(f"{m.name} ({m.sha256[:12]})" for m in engine.models)),
        ("operating point", f"{engine.operating_point}: live when score >= {thr:g}"
                            + (f", set for APCER {engine.apcer_target:g}"
                               if engine.apcer_target is not None else "")),
        ("bona fide", ", ".join(f"{k} {len(v)}" for k, v in ps.bona.items())),
        ("attacks", ", ".join(f"{k} {len(v)}" for k, v in ps.attack.items())),
        ("not checked (no face, too small, ...)",
         ", ".join(f"{k} {v}" for k, v in ps.not_checked.items()) or "none"),
        ("ROC AUC / EER", f"{c.auc:.4f} / {c.eer * 100:.2f}%"),
        ("at the threshold", f"APCER {apcer * 100:.2f}%, BPCER {bpcer * 100:.2f}%"),
        ("APCER per attack type", ", ".join(f"{k} {v * 100:.1f}%"
                                            for k, v in per_type.items())),
    ]
    sec = Section(
        "Presentation attacks (passive liveness)",
        ("Each presentation gets the fused live probability of the MiniFASNet pair and the "
         "recapture cues. An attack is accepted when its score reaches the threshold "
         "(APCER); a bona fide presentation is rejected when it does not (BPCER).",),
        tuple(table),
        (FigureRef(det, "DET: bona fide rejected against attacks accepted (normal-deviate "
                        "axes); the circle is the shipped threshold. Rates of 0 lie along "
                        "the frame's left and lower edges."),
         FigureRef(roc, "ROC: bona fide accepted against attacks accepted."),
         FigureRef(hist, "Live-probability histograms (log density) with the threshold.")),
        ("The replay_2019 crops show about three people in one session, and the shipped "
         "threshold was set on part of them: these figures are optimistic for other people, "
         "devices and light.",),
    )
    return sec, summary


def _graph_section(out: Path, gb: GraphBench, figures: list[Path]
                   ) -> tuple[Section, dict[str, Any]]:
    from kyc.graph.render import ring_png

    flagged = [r for r in gb.rings if r.flagged]
    summary: dict[str, Any] = {
        "applications": gb.applications, "seed": gb.seed, "candidates": len(gb.rings),
        "flagged": len(flagged), "planted_rings": gb.planted_rings,
        "planted_recovered": gb.recovered,
        "flagged_that_are_planted": sum(1 for r in gb.planted if r.flagged),
        "seconds": round(gb.seconds, 1),
    }
    figs: list[FigureRef] = []
    if gb.rings:
        groups = [(lbl, [r.score for r in rs]) for lbl, rs in
                  (("planted rings", gb.planted), ("other candidates", gb.other)) if rs]
        hist = score_histogram(groups, out / "ring_scores.png",
                               title="Ring candidates: ring score",
                               x_label="ring score", value_range=(0.0, 1.0), bins=25,
                               threshold=gb.flag_threshold, threshold_label="flag threshold")
        figures.append(hist)
        figs.append(FigureRef(hist, "Ring scores of candidates that are planted rings and of "
                                    "the other candidates (shared offices, families, hubs)."))
        # the picture: the highest-scored flagged ring small enough to read (<= 20 members)
        ranked = sorted(flagged or gb.rings, key=lambda r: (-r.score, r.ring_id))
        top = next((r for r in ranked if r.size <= 20), ranked[0])
        pic = ring_png(top, out / "ring.png", dpi=110)
        figures.append(pic)
        figs.append(FigureRef(pic, f"A flagged ring ({top.size} members, score "
                                   f"{top.score:.2f}; the highest-scored one of at most 20 "
                                   "members): applicants (hashed) on the left, the identifiers "
                                   "they share on the right, coloured by kind; dashed: hubs."))
        summary["pictured_ring"] = {"ring_id": top.ring_id, "size": top.size,
                               "score": _r(top.score), "codes": [x.code for x in top.reasons]}
    table = [
        ("population", f"{gb.applications} synthetic applications (seed {gb.seed}), "
                       f"{gb.planted_rings} planted rings"),
        ("ring candidates", f"{len(gb.rings)} ({len(flagged)} flagged)"),
        ("planted rings recovered", f"{gb.recovered} of {gb.planted_rings} (a flagged "
                                    "candidate holds at least half the ring)"),
        ("flagged candidates that are planted", f"{summary['flagged_that_are_planted']} of "
                                                f"{len(flagged)}"),
    ]
    if "pictured_ring" in summary:
        table.append(("pictured ring's reasons",
                      ", ".join(summary["pictured_ring"]["codes"])))
    sec = Section(
        "Fraud rings (applicant graph)",
        ("A synthetic population with planted rings (device farms, mule cards, bursts), hub "
         "identifiers and multi-lender stackers goes through the FraudGraph; every linked "
         "cluster is a candidate, and ring scoring decides which are flagged.",),
        tuple(table), tuple(figs),
        ("Synthetic data: the generator's rings follow published statistics of a real "
         "lending graph, but real rings may be stealthier.",),
    )
    return sec, summary


def _glance(summary: Mapping[str, Any]) -> Section:
    rows: list[tuple[str, str]] = []
    face = summary.get("face", {})
    for name, fs in face.get("sets", {}).items():
        rows.append((f"face match, {name}",
                     f"AUC {fs['auc']:.4f}; at the shipped threshold FMR "
                     f"{fs['fmr_at_threshold'] * 100:.2f}%, "
                     f"FNMR {fs['fnmr_at_threshold'] * 100:.2f}% "
                     f"({fs['genuine']} genuine / {fs['impostor']} impostor pairs)"))
    pad = summary.get("pad", {})
    if "auc" in pad:
        n_b, n_a = sum(pad["bona_fide"].values()), sum(pad["attacks"].values())
        rows.append(("passive liveness",
                     f"AUC {pad['auc']:.4f}; at the shipped threshold APCER "
                     f"{pad['apcer_at_threshold'] * 100:.1f}%, BPCER "
                     f"{pad['bpcer_at_threshold'] * 100:.1f}% ({n_b} bona fide / {n_a} attacks)"))
    elif "error" in pad:
        rows.append(("passive liveness", f"not measured: {pad['error']['message']}"))
    g = summary.get("graph", {})
    if "candidates" in g:
        rows.append(("fraud rings",
                     f"{g['planted_recovered']} of {g['planted_rings']} planted rings recovered; "
                     f"{g['flagged_that_are_planted']} of {g['flagged']} flagged candidates are "
                     f"planted rings ({g['applications']} synthetic applications)"))
    return Section("At a glance", table=tuple(rows))


def run_bench(
    out_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    quick: bool = False,
    pad_model_dir: str | os.PathLike[str] | None = None,
    graph_applications: int | None = None,
    seed: int = 0,
    parts: Sequence[str] = PARTS,
    progress: bool = False,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure face match, PAD and ring detection and write the report into ``out_dir``.

    ``data_dir`` defaults to ``$KYC_DATA_DIR``. ``quick`` uses subsets (celebrities13 only,
    every 5th replay crop, 5,000 synthetic applications); the full run adds LFW and uses
    50,000 applications (``graph_applications`` overrides). A part whose data or models are
    missing is reported as not measured (a missing PAD model names the command that builds
    it). ``parts`` picks the parts to run (default all of :data:`PARTS`). Returns a
    :class:`BenchReport`; raises :class:`~kyc.errors.ConfigError` when the data folder does
    not exist, a part is unknown or matplotlib is missing.
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ConfigError(f"unknown report parts {unknown}; choose from {list(PARTS)}")
    _figure(1, 1)  # fail early without matplotlib
    root = Path(data_dir) if data_dir is not None else Path(os.environ.get("KYC_DATA_DIR", ""))
    if not str(root) or not root.is_dir():
        raise ConfigError("no data folder: pass data_dir or set KYC_DATA_DIR "
                          f"(got {str(root)!r})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _m: None)
    figures: list[Path] = []
    sections: list[Section] = []
    summary: dict[str, Any] = {"quick": quick, "seed": seed}
    t0 = time.perf_counter()

    if "face" in parts:
        from kyc.face.verify import FaceVerifier

        say("face match ...")
        verifier = FaceVerifier(multi_face="centre")
        sets = face_scores(root, verifier, lfw=not quick, progress=progress)
        sec, summary["face"] = _face_section(out, verifier, sets, figures)
        sections.append(sec)

    if "pad" in parts:
        say("passive liveness ...")
        from kyc.liveness.passive import PassiveLiveness

        engine = PassiveLiveness(model_dir=pad_model_dir)
        try:
            engine.load()
        except ModelError as exc:
            sections.append(Section("Presentation attacks (passive liveness)",
                                    (f"Not measured: {exc.message}",)))
            summary["pad"] = {"error": exc.to_dict()}
        else:
            ps = pad_scores(root, engine, quick=quick, progress=progress)
            sec, summary["pad"] = _pad_section(out, engine, ps, figures)
            sections.append(sec)

    if "graph" in parts:
        say("fraud rings ...")
        n_apps = graph_applications or (5_000 if quick else 50_000)
        try:
            gb = graph_bench(n_apps, seed=seed)
        except KycError as exc:
            sections.append(Section("Fraud rings (applicant graph)",
                                    (f"Not measured: {exc.message}",)))
            summary["graph"] = {"error": exc.to_dict()}
        else:
            sec, summary["graph"] = _graph_section(out, gb, figures)
            sections.append(sec)

    from kyc import __version__

    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["kyc_version"] = __version__
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = [
        ("generated", when), ("kyc version", __version__),
        ("mode", "quick (subsets)" if quick else "full"),
        ("data", f"{root.name}/ (KYC_DATA_DIR): faces/celebrities13"
                 + ("" if quick else ", faces/lfw") + ", pad/replay_2019, "
                 "pad/silent_face_samples; synthetic applications"),
        ("command", command or f"kyc bench --out {out}{' --quick' if quick else ''}"),
        ("time taken", f"{summary['seconds']:.0f} s"),
    ]
    sections.insert(0, _glance(summary))
    page = write_html(sections, out / "report.html", title="kyc benchmark report", meta=meta)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    return BenchReport(out, page, tuple(figures), summary)
