"""Shared pieces of the face benchmarks: data sets, an embedding cache, protocol metrics.

Not a benchmark itself. Data come from ``$KYC_DATA_DIR`` (default ``../shared/data``);
embeddings are cached under ``benchmarks/out/`` (gitignored) keyed by the embedder's
sha256, the multi-face policy and a hash of the face pipeline's source files, so a rerun
after a code change recomputes and a plain rerun is cheap (``KYC_BENCH_TRUST_CACHE=1``
keeps embeddings across source edits when the model is unchanged; not for final figures).
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KYC_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
OUT = ROOT / "benchmarks" / "out"
FACES = DATA / "faces"
LFW = FACES / "lfw"
os.environ.setdefault("KYC_MODEL_DIR", str((ROOT.parent / "shared" / "models").resolve()))

#: LFW files these people under two name orders: one person each, never an impostor pair.
LFW_ALIASES = {
    "Wang_Nan": "Nan_Wang",
    "Yingfan_Wang": "Wang_Yingfan",
    "Sung_Hong_Choi": "Choi_Sung-hong",
}

#: east_asian.csv flags that doubt a *label* (the others only note descent).
#: identity -> image numbers whose same-person pairs are doubtful (empty = whole identity).
EA_DOUBTFUL: dict[str, set[int]] = {
    "Zhang_Ziyi": {2, 3, 4},  # 0002-0004 may show another woman
    "Kim_Ryong-sung": {6},  # 0006 looks different
    "Yukiko_Okudo": {1, 2},  # the two images look dissimilar
    "Princess_Aiko": set(),  # toddler photos: left out entirely
}

PIPELINE_FILES = ("image.py", "face/detect.py", "face/align.py", "face/embed.py", "face/verify.py")


def canonical(identity: str) -> str:
    """One name per LFW person (maps the three alias pairs)."""
    return LFW_ALIASES.get(identity, identity)


def lfw_rel(name: str, number: int) -> str:
    """Relative path of an LFW image, e.g. ``images/Abel_Pacheco/Abel_Pacheco_0001.jpg``."""
    return f"images/{name}/{name}_{number:04d}.jpg"


def identity_of(rel: str) -> str:
    """LFW identity (folder name) of a relative image path."""
    return Path(rel).parent.name


def image_number(rel: str) -> int:
    """Image number of an LFW file name (``..._0003.jpg`` -> 3)."""
    return int(Path(rel).stem.rsplit("_", 1)[1])


@dataclass(frozen=True)
class Pair:
    """One labelled pair of image paths (relative to a data-set root)."""

    a: str
    b: str
    same: bool
    fold: int = 0


def lfw_pairs() -> list[Pair]:
    """The official LFW View-2 protocol: 10 folds x (300 same + 300 different) pairs."""
    lines = (LFW / "pairs.txt").read_text().splitlines()
    n_folds, n_per = (int(x) for x in lines[0].split())
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in lines[1:] if ln.strip()]
    if len(rows) != n_folds * 2 * n_per:
        raise SystemExit(f"pairs.txt: expected {n_folds * 2 * n_per} pairs, got {len(rows)}")
    pairs = []
    for i, r in enumerate(rows):
        fold = i // (2 * n_per)
        if len(r) == 3:
            pairs.append(Pair(lfw_rel(r[0], int(r[1])), lfw_rel(r[0], int(r[2])), True, fold))
        else:
            pairs.append(Pair(lfw_rel(r[0], int(r[1])), lfw_rel(r[2], int(r[3])), False, fold))
    return pairs


def east_asian() -> list[dict[str, str]]:
    """Rows of ``lfw/east_asian.csv`` (path, identity, sex, flag, ...)."""
    with (LFW / "east_asian.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def lfw_all_images() -> list[str]:
    """Every image of the LFW copy, relative to ``lfw/`` (sorted)."""
    return sorted(str(p.relative_to(LFW)) for p in (LFW / "images").glob("*/*.jpg"))


def pipeline_hash() -> str:
    """Short hash of the face pipeline's source (invalidates cached embeddings)."""
    h = hashlib.sha256()
    src = ROOT / "src" / "kyc"
    for name in PIPELINE_FILES:
        path = src / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()[:16]


@dataclass
class Embeddings:
    """Embeddings of a list of images; ``ok[i]`` false (row NaN) when none could be made."""

    paths: list[str]
    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[str, str]
    embedder: str
    sha256: str
    metric: str
    seconds_per_image: float

    def index(self) -> dict[str, int]:
        """Path -> row."""
        return {p: i for i, p in enumerate(self.paths)}


def embed_images(
    rel_paths: Sequence[str],
    root: Path,
    *,
    embedder: str = "dlib",
    multi_face: str = "largest",
    tag: str,
    refresh: bool = False,
    progress: bool = True,
) -> Embeddings:
    """Embed each image once with ``FaceVerifier.represent``, caching to ``benchmarks/out``.

    Failures (no face, unreadable image) are recorded in ``errors`` and leave a NaN row.
    """
    from kyc.errors import KycError
    from kyc.face.verify import FaceVerifier

    verifier = FaceVerifier(embedder, multi_face=multi_face, profile=0.0)
    emb = verifier.embedder
    sha = emb.sha256
    OUT.mkdir(parents=True, exist_ok=True)
    key = f"{tag}_{emb.name}_{multi_face}"
    cache = OUT / f"emb_{key}.npz"
    stamp = f"{sha}:{pipeline_hash()}"
    have: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    spent, fresh = 0.0, 0
    if cache.exists() and not refresh:
        with np.load(cache, allow_pickle=False) as d:
            cached = str(d["stamp"])
            trust = os.environ.get("KYC_BENCH_TRUST_CACHE") == "1" and cached[:64] == sha
            if cached == stamp or trust:
                if cached != stamp and progress:
                    print(f"[{key}] pipeline source changed; cache kept", file=sys.stderr)
                rows = zip(d["paths"], d["vectors"], d["ok"], d["errors"], strict=True)
                for p, v, ok, err in rows:
                    if ok:
                        have[str(p)] = v
                    else:
                        errors[str(p)] = str(err)
                spent, fresh = float(d["spent"]), int(d["fresh"])
            elif progress:
                print(f"[{key}] pipeline or model changed: recomputing", file=sys.stderr)
    todo = [p for p in dict.fromkeys(rel_paths) if p not in have and p not in errors]

    def save() -> None:
        paths = list(have) + list(errors)
        dim = next(iter(have.values())).shape[0] if have else 1
        vec = np.full((len(paths), dim), np.nan, dtype=np.float32)
        for i, p in enumerate(have):
            vec[i] = have[p]
        np.savez(
            cache,
            stamp=np.array(stamp),
            paths=np.array(paths, dtype=np.str_),
            vectors=vec,
            ok=np.array([p in have for p in paths]),
            errors=np.array([errors.get(p, "") for p in paths], dtype=np.str_),
            spent=np.array(spent),
            fresh=np.array(fresh),
        )

    if todo:
        verifier.load()
        t_start = time.perf_counter()
        for i, p in enumerate(todo, 1):
            t = time.perf_counter()
            try:
                have[p] = np.asarray(verifier.represent(root / p).embedding, dtype=np.float32)
            except KycError as exc:
                errors[p] = f"{exc.code}: {exc.message}"
            spent += time.perf_counter() - t
            fresh += 1
            if i % 250 == 0 or i == len(todo):
                save()
                if progress:
                    rate = (time.perf_counter() - t_start) / i
                    print(
                        f"[{key}] {i}/{len(todo)} images, {1e3 * rate:.0f} ms/image",
                        file=sys.stderr,
                    )
    order = list(dict.fromkeys(rel_paths))
    dim = next(iter(have.values())).shape[0] if have else 1
    vectors = np.full((len(order), dim), np.nan, dtype=np.float32)
    ok = np.zeros(len(order), dtype=bool)
    for i, p in enumerate(order):
        if p in have:
            vectors[i] = have[p]
            ok[i] = True
    return Embeddings(
        paths=order,
        vectors=vectors,
        ok=ok,
        errors={p: e for p, e in errors.items() if p in set(order)},
        embedder=emb.name,
        sha256=sha,
        metric=emb.metric,
        seconds_per_image=spent / max(fresh, 1),
    )


def pair_scores(emb: Embeddings, pairs: Sequence[Pair]) -> np.ndarray:
    """Score of each pair with the embedder's metric; NaN where a face is missing."""
    row = emb.index()
    a = emb.vectors[[row[p.a] for p in pairs]].astype(np.float64)
    b = emb.vectors[[row[p.b] for p in pairs]].astype(np.float64)
    if emb.metric == "euclidean":
        return np.asarray(np.linalg.norm(a - b, axis=1))
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(1) / (na * nb))


def best_threshold(scores: np.ndarray, same: np.ndarray, higher_is_match: bool) -> float:
    """Threshold maximising accuracy (midpoints between sorted scores)."""
    s = -scores if higher_is_match else scores
    order = np.argsort(s, kind="stable")
    s, y = s[order], same[order]
    # accept the first i pairs (lowest distances): correct = same among them + diff after
    correct = np.concatenate([[0], np.cumsum(y)]) + (
        (~y).sum() - np.concatenate([[0], np.cumsum(~y)])
    )
    cuts = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    # only cut between distinct values
    valid = np.concatenate([[True], s[:-1] < s[1:], [True]])
    best = int(np.argmax(np.where(valid, correct, -1)))
    thr = float(cuts[best])
    return -thr if higher_is_match else thr


def decide(scores: np.ndarray, threshold: float, higher_is_match: bool) -> np.ndarray:
    """Match decisions; a NaN score (no face) is never a match."""
    with np.errstate(invalid="ignore"):
        m = scores >= threshold if higher_is_match else scores <= threshold
    return np.asarray(m & ~np.isnan(scores))


def ten_fold_accuracy(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray, higher_is_match: bool
) -> tuple[float, float, list[float]]:
    """LFW protocol: per fold, the threshold maximising accuracy on the other 9 folds.

    Pairs with a missing face (NaN score) count as "no match" decisions in the test fold
    and are left out when choosing the threshold. Returns (mean, std, per-fold accuracies).
    """
    accs = []
    for f in np.unique(folds):
        train = (folds != f) & ~np.isnan(scores)
        thr = best_threshold(scores[train], same[train], higher_is_match)
        test = folds == f
        pred = decide(scores[test], thr, higher_is_match)
        accs.append(float(np.mean(pred == same[test])))
    return float(np.mean(accs)), float(np.std(accs)), accs


def pct(x: float, digits: int = 2) -> str:
    """Format a rate as a percentage."""
    return f"{100 * x:.{digits}f} %"


def det_plot(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray, bool]],
    path: str,
    title: str,
    points: Sequence[tuple[str, float, float]] = (),
) -> None:
    """DET curves (FNMR against FMR on normal-deviate axes), one per (label, gen, imp, higher).

    ``points`` marks operating points as (label, fmr, fnmr).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from kyc.calibrate import error_rates

    ticks = [1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    lo_fmr = 0.5
    for label, gen, imp, higher in curves:
        both = np.concatenate([gen, imp])
        grid = np.unique(np.concatenate([gen, np.quantile(both, np.linspace(0, 1, 5001))]))
        fmr, fnmr = error_rates(gen, imp, grid, higher_is_match=higher)
        keep = (fmr > 0) & (fnmr > 0) & (fmr < 1) & (fnmr < 1)
        ax.plot(norm.ppf(fmr[keep]), norm.ppf(fnmr[keep]), label=label, lw=1.5)
        lo_fmr = min(lo_fmr, max(1.0 / imp.size, 1e-5))
    for label, fmr_p, fnmr_p in points:
        ax.plot(norm.ppf(fmr_p), norm.ppf(max(fnmr_p, 1e-3)), "o", ms=5)
        ax.annotate(
            label,
            (norm.ppf(fmr_p), norm.ppf(max(fnmr_p, 1e-3))),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    shown = [t for t in ticks if t >= lo_fmr / 2]

    def fmt(t: float) -> str:
        return f"1e{round(np.log10(t))}" if t < 0.01 else f"{t:g}"

    ax.set_xticks(norm.ppf(shown), [fmt(t) for t in shown])
    yt = [t for t in ticks if t >= 1e-3]
    ax.set_yticks(norm.ppf(yt), [fmt(t) for t in yt])
    ax.set_xlim(norm.ppf(lo_fmr / 2), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(1e-3), norm.ppf(0.5))
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
