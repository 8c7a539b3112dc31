"""Thresholds at a stated false-match rate, from labelled comparison scores.

A face matcher compares two faces and returns a score: a *distance* (dlib: Euclidean, a
match when ``distance <= threshold``) or a *similarity* (ArcFace-style models: cosine, a
match when ``similarity >= threshold``). Which threshold to use depends on the false-match
rate (FMR) a lender can accept and, crucially, on the population: a threshold set on one
population does not hold on another. :func:`calibrate` turns labelled scores (genuine =
same person, impostor = different people) into one threshold per FMR target, with

* the FMR and true-accept rate (TAR = 1 - FNMR) it achieves on the data,
* a bootstrap confidence interval of the threshold (impostors resampled) and of the TAR
  (impostors and genuines resampled),
* an exact (Clopper-Pearson) interval of the true FMR at the chosen threshold,
* the counts and a free-text ``source`` saying where the scores came from.

An FMR target can only be resolved when enough impostor pairs exist: at FMR 1e-4 and
3 allowed false matches that is 30,000 impostor pairs. With fewer, :func:`calibrate`
refuses (:class:`~kyc.errors.CalibrationError`) instead of returning a threshold that rests
on one or two scores.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> genuine = rng.normal(0.4, 0.08, 2_000)       # distances of same-person pairs
>>> impostor = rng.normal(1.0, 0.10, 100_000)    # distances of different-person pairs
>>> result = calibrate(genuine, impostor, fmr_targets=(1e-3,), n_bootstrap=100)
>>> est = result.at(1e-3)
>>> round(est.threshold, 2), est.fmr <= 1e-3, est.ci[0] <= est.threshold <= est.ci[1]
(0.69, True, True)

Scores for :func:`calibrate` can be built from embeddings with :func:`scores_from_pairs`
(explicit labelled pairs) or :func:`all_pair_scores` (every pair of a labelled set: a few
thousand faces give millions of impostor pairs).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kyc.errors import CalibrationError

__all__ = [
    "DEFAULT_FMR_TARGETS",
    "CalibrationResult",
    "ThresholdEstimate",
    "all_pair_scores",
    "calibrate",
    "equal_error_rate",
    "error_rates",
    "pair_scores",
    "roc_auc",
    "scores_from_pairs",
]

DEFAULT_FMR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)

Metric = Literal["euclidean", "cosine"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ThresholdEstimate:
    """The threshold for one FMR target and what it achieves on the calibration data.

    ``threshold`` is in the score's own unit: a distance (match when ``score <= threshold``)
    unless the result's ``higher_is_match`` is true (match when ``score >= threshold``).

    Attributes:
        fmr_target: the false-match rate asked for.
        threshold: the most permissive threshold whose FMR on the data is <= the target.
        ci: bootstrap percentile interval of the threshold (impostors resampled).
        fmr: false-match rate achieved on the data (``false_matches / n_impostor``).
        fmr_ci: exact Clopper-Pearson interval of the true FMR at ``threshold``.
        false_matches: impostor pairs accepted at ``threshold``.
        tar: true-accept rate on the data (``true_matches / n_genuine``).
        tar_ci: bootstrap percentile interval of the TAR (impostors and genuines resampled).
        true_matches: genuine pairs accepted at ``threshold``.
    """

    fmr_target: float
    threshold: float
    ci: tuple[float, float]
    fmr: float
    fmr_ci: tuple[float, float]
    false_matches: int
    tar: float
    tar_ci: tuple[float, float]
    true_matches: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (floats, ints, two-element lists)."""
        return {
            "fmr_target": self.fmr_target,
            "threshold": self.threshold,
            "ci": list(self.ci),
            "fmr": self.fmr,
            "fmr_ci": list(self.fmr_ci),
            "false_matches": self.false_matches,
            "tar": self.tar,
            "tar_ci": list(self.tar_ci),
            "true_matches": self.true_matches,
        }


@dataclass(frozen=True)
class CalibrationResult:
    """Thresholds for each FMR target, with the data they came from.

    Attributes:
        higher_is_match: false for distances (match when ``score <= threshold``), true for
            similarities (match when ``score >= threshold``).
        thresholds: one :class:`ThresholdEstimate` per FMR target, in the order asked.
        n_genuine: number of genuine (same-person) scores.
        n_impostor: number of impostor (different-person) scores.
        roc_auc: probability that a genuine score is more match-like than an impostor one
            (ties count half).
        eer: equal error rate (where FMR and FNMR cross) on the data.
        n_bootstrap: bootstrap replicates behind the intervals.
        confidence: level of every interval (0.95 = 95 %).
        seed: random seed of the bootstrap (results are reproducible).
        source: free text saying where the scores came from (data set, population, model).
    """

    higher_is_match: bool
    thresholds: tuple[ThresholdEstimate, ...]
    n_genuine: int
    n_impostor: int
    roc_auc: float
    eer: float
    n_bootstrap: int
    confidence: float
    seed: int
    source: str = ""

    @property
    def metric_kind(self) -> str:
        """``"similarity"`` when higher scores mean a match, else ``"distance"``."""
        return "similarity" if self.higher_is_match else "distance"

    def at(self, fmr_target: float) -> ThresholdEstimate:
        """Return the estimate for ``fmr_target`` (compared with a relative tolerance).

        Raises :class:`~kyc.errors.CalibrationError` when that target was not calibrated.
        """
        for est in self.thresholds:
            if math.isclose(est.fmr_target, fmr_target, rel_tol=1e-9):
                return est
        asked = ", ".join(f"{e.fmr_target:g}" for e in self.thresholds)
        raise CalibrationError(f"FMR target {fmr_target:g} was not calibrated (have: {asked})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the whole result."""
        return {
            "higher_is_match": self.higher_is_match,
            "metric_kind": self.metric_kind,
            "thresholds": [t.to_dict() for t in self.thresholds],
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "roc_auc": self.roc_auc,
            "eer": self.eer,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "source": self.source,
        }


# --- input checks -------------------------------------------------------------------------


def _scores(values: npt.ArrayLike, name: str) -> FloatArray:
    """Validate one score set: a non-empty 1-D float array without NaN/inf."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name} scores are not numbers: {exc}") from None
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise CalibrationError(f"no {name} scores given: calibration needs labelled pairs")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CalibrationError(
            f"{int(bad.sum())} of {arr.size} {name} scores are NaN or infinite "
            f"(first at position {first}): drop failed comparisons before calibrating"
        )
    return arr


def _oriented(values: FloatArray, higher_is_match: bool) -> FloatArray:
    """Map scores so that lower always means 'more alike' (negate similarities)."""
    return -values if higher_is_match else values


# --- core: threshold from sorted impostor scores ----------------------------------------------


def _below(sorted_imp: FloatArray, index: npt.NDArray[np.intp]) -> FloatArray:
    """For each position, the largest impostor score strictly below ``sorted_imp[index]``."""
    values = sorted_imp[index]
    first = np.searchsorted(sorted_imp, values, side="left")
    out = np.empty(values.shape, dtype=np.float64)
    has = first > 0
    out[has] = sorted_imp[first[has] - 1]
    out[~has] = np.nextafter(values[~has], -np.inf)
    return out


def _midpoint(lower: FloatArray, upper: FloatArray) -> FloatArray:
    """Midpoint between two score arrays, never equal to ``upper`` (strictly below it)."""
    mid = lower + (upper - lower) / 2.0
    return np.where(mid < upper, mid, lower)


def _threshold(sorted_imp: FloatArray, allowed: int) -> float:
    """Most permissive threshold accepting at most ``allowed`` impostors (lower = match).

    The threshold sits halfway between the (allowed+1)-th smallest impostor score and the
    largest impostor score strictly below it, so exactly the scores below it are accepted
    (``<=``) and ties at the boundary are never split.
    """
    idx = np.array([allowed], dtype=np.intp)
    upper = sorted_imp[idx]
    return float(_midpoint(_below(sorted_imp, idx), upper)[0])


def _bootstrap_thresholds(
    sorted_imp: FloatArray, allowed: int, n_boot: int, rng: np.random.Generator
) -> FloatArray:
    """Thresholds of ``n_boot`` bootstrap resamples of the impostor scores.

    Resampling n scores with replacement draws indices floor(n*U) for i.i.d. uniforms U; the
    map U -> sorted_imp[floor(n*U)] is monotone, so the resample's (k+1)-th smallest score is
    sorted_imp[floor(n * U_(k+1))] with U_(k+1) ~ Beta(k+1, n-k), and its k-th smallest is
    sorted_imp[floor(n * U_(k))] with U_(k) = U_(k+1) * W**(1/k), W uniform. This is the
    exact bootstrap distribution of the two order statistics the threshold is built from, in
    O(n_boot) instead of O(n_boot * n) (millions of impostor pairs resample in microseconds).
    """
    n = sorted_imp.size
    u_upper = rng.beta(allowed + 1, n - allowed, size=n_boot)
    u_lower = u_upper * rng.random(n_boot) ** (1.0 / allowed)
    j_upper = np.minimum((u_upper * n).astype(np.intp), n - 1)
    j_lower = np.minimum((u_lower * n).astype(np.intp), j_upper)
    upper = sorted_imp[j_upper]
    lower = sorted_imp[j_lower]
    tied = lower >= upper
    if tied.any():
        lower = np.where(tied, _below(sorted_imp, j_upper), lower)
    return _midpoint(lower, upper)


def _clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Exact binomial interval for a proportion."""
    from scipy.stats import beta

    alpha = 1.0 - confidence
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return lo, hi


def calibrate(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    *,
    higher_is_match: bool = False,
    fmr_targets: Sequence[float] = DEFAULT_FMR_TARGETS,
    n_bootstrap: int = 200,
    seed: int = 0,
    source: str = "",
    confidence: float = 0.95,
    min_false_matches: int = 3,
) -> CalibrationResult:
    """Compute thresholds for FMR targets from labelled comparison scores.

    Args:
        genuine: scores of same-person pairs (1-D, finite).
        impostor: scores of different-person pairs (1-D, finite).
        higher_is_match: false (default) for distances, match when ``score <= threshold``;
            true for similarities, match when ``score >= threshold``.
        fmr_targets: false-match rates to calibrate for, each in (0, 1).
        n_bootstrap: bootstrap replicates for the intervals (>= 20).
        seed: seed of the bootstrap; the same inputs and seed give the same result.
        source: where the scores came from (data set, population, embedder, command);
            stored in the result so a threshold never travels without it.
        confidence: level of the intervals, in (0, 1).
        min_false_matches: every target must allow at least this many impostor pairs
            below the threshold (``n_impostor * target >= min_false_matches``); otherwise
            the threshold rests on too few scores and calibration is refused.

    Returns:
        A :class:`CalibrationResult` with one :class:`ThresholdEstimate` per target.

    Raises:
        CalibrationError: empty or non-finite scores, targets outside (0, 1), or too few
            impostor pairs to resolve a target (the message says how many are needed).
    """
    gen = _oriented(_scores(genuine, "genuine"), higher_is_match)
    imp = _oriented(_scores(impostor, "impostor"), higher_is_match)
    targets = tuple(float(t) for t in fmr_targets)
    if not targets:
        raise CalibrationError("no FMR targets given")
    for t in targets:
        if not 0.0 < t < 1.0:
            raise CalibrationError(f"FMR target {t!r} is not a rate in (0, 1)")
    if n_bootstrap < 20:
        raise CalibrationError(f"n_bootstrap={n_bootstrap} is too small for an interval (>= 20)")
    if not 0.0 < confidence < 1.0:
        raise CalibrationError(f"confidence={confidence!r} is not in (0, 1)")
    if min_false_matches < 1:
        raise CalibrationError(f"min_false_matches={min_false_matches} must be >= 1")

    n_imp, n_gen = imp.size, gen.size
    unresolved = [t for t in targets if n_imp * t < min_false_matches * (1 - 1e-9)]
    if unresolved:
        worst = min(unresolved)
        need = math.ceil(min_false_matches / worst - 1e-9)
        raise CalibrationError(
            f"{n_imp} impostor pairs cannot resolve FMR target {worst:g}: a threshold there "
            f"would rest on fewer than {min_false_matches} impostor scores; need at least "
            f"{need} impostor pairs (or calibrate only targets >= "
            f"{min_false_matches / n_imp:.2g})"
        )

    sorted_imp = np.sort(imp)
    sorted_gen = np.sort(gen)
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    estimates: list[ThresholdEstimate] = []
    for t in targets:
        allowed = math.floor(n_imp * t + 1e-9)
        thr = _threshold(sorted_imp, allowed)
        false_matches = int(np.searchsorted(sorted_imp, thr, side="right"))
        true_matches = int(np.searchsorted(sorted_gen, thr, side="right"))

        boot_thr = _bootstrap_thresholds(sorted_imp, allowed, n_bootstrap, rng)
        p_gen = np.searchsorted(sorted_gen, boot_thr, side="right") / n_gen
        boot_tar = rng.binomial(n_gen, p_gen) / n_gen
        t_lo, t_hi = np.percentile(boot_thr, [lo_q, hi_q])
        a_lo, a_hi = np.percentile(boot_tar, [lo_q, hi_q])

        sign = -1.0 if higher_is_match else 1.0
        ci = sorted((sign * float(t_lo), sign * float(t_hi)))
        estimates.append(
            ThresholdEstimate(
                fmr_target=t,
                threshold=sign * thr,
                ci=(ci[0], ci[1]),
                fmr=false_matches / n_imp,
                fmr_ci=_clopper_pearson(false_matches, n_imp, confidence),
                false_matches=false_matches,
                tar=true_matches / n_gen,
                tar_ci=(float(a_lo), float(a_hi)),
                true_matches=true_matches,
            )
        )

    return CalibrationResult(
        higher_is_match=higher_is_match,
        thresholds=tuple(estimates),
        n_genuine=n_gen,
        n_impostor=n_imp,
        roc_auc=_auc_sorted(sorted_gen, sorted_imp),
        eer=_eer_sorted(sorted_gen, sorted_imp),
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        source=source,
    )


# --- summary metrics ------------------------------------------------------------------------


def _auc_sorted(sorted_gen: FloatArray, sorted_imp: FloatArray) -> float:
    """P(genuine < impostor) + P(tie)/2 for lower-is-match scores, from sorted arrays."""
    left = np.searchsorted(sorted_imp, sorted_gen, side="left")
    right = np.searchsorted(sorted_imp, sorted_gen, side="right")
    greater = sorted_imp.size - right
    wins = greater.sum(dtype=np.float64) + 0.5 * (right - left).sum(dtype=np.float64)
    return float(wins / (sorted_gen.size * sorted_imp.size))


def _eer_sorted(sorted_gen: FloatArray, sorted_imp: FloatArray) -> float:
    """Equal error rate for lower-is-match scores, from sorted arrays."""
    cand = np.unique(np.concatenate([sorted_gen, sorted_imp]))
    fmr = np.searchsorted(sorted_imp, cand, side="right") / sorted_imp.size
    fnmr = 1.0 - np.searchsorted(sorted_gen, cand, side="right") / sorted_gen.size
    # below every score: FMR 0, FNMR 1; fmr rises and fnmr falls with the threshold.
    fmr = np.concatenate([[0.0], fmr])
    fnmr = np.concatenate([[1.0], fnmr])
    i = int(np.argmax(fmr >= fnmr))  # first threshold where the curves have crossed
    if i == 0:
        return 0.0
    # crossing lies between steps i-1 and i: interpolate linearly
    d0, d1 = fnmr[i - 1] - fmr[i - 1], fnmr[i] - fmr[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.5
    return float(
        (fmr[i - 1] + w * (fmr[i] - fmr[i - 1]) + fnmr[i - 1] + w * (fnmr[i] - fnmr[i - 1])) / 2
    )


def roc_auc(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, *, higher_is_match: bool = False
) -> float:
    """Area under the ROC curve: P(a genuine score is more match-like than an impostor one).

    Ties count half. Raises :class:`~kyc.errors.CalibrationError` on empty or NaN input.
    """
    gen = np.sort(_oriented(_scores(genuine, "genuine"), higher_is_match))
    imp = np.sort(_oriented(_scores(impostor, "impostor"), higher_is_match))
    return _auc_sorted(gen, imp)


def equal_error_rate(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, *, higher_is_match: bool = False
) -> float:
    """Equal error rate: the rate where FMR equals FNMR (interpolated between steps)."""
    gen = np.sort(_oriented(_scores(genuine, "genuine"), higher_is_match))
    imp = np.sort(_oriented(_scores(impostor, "impostor"), higher_is_match))
    return _eer_sorted(gen, imp)


def error_rates(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    *,
    higher_is_match: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """FMR and FNMR at each threshold (for DET/ROC curves and for checking a profile).

    A pair matches when ``score <= threshold`` (distances) or ``score >= threshold``
    (``higher_is_match=True``). Returns ``(fmr, fnmr)``, arrays shaped like ``thresholds``.
    """
    gen = np.sort(_oriented(_scores(genuine, "genuine"), higher_is_match))
    imp = np.sort(_oriented(_scores(impostor, "impostor"), higher_is_match))
    thr = _oriented(np.asarray(thresholds, dtype=np.float64), higher_is_match)
    fmr = np.searchsorted(imp, thr, side="right") / imp.size
    fnmr = 1.0 - np.searchsorted(gen, thr, side="right") / gen.size
    return fmr.astype(np.float64), fnmr.astype(np.float64)


# --- scores from embeddings -------------------------------------------------------------------


def _matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name} are not numeric embeddings: {exc}") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CalibrationError(f"{name} must be a non-empty (N, D) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{name} contain NaN or infinite values")
    return arr


def _check_metric(metric: str) -> None:
    if metric not in ("euclidean", "cosine"):
        raise CalibrationError(f"unknown metric {metric!r}: use 'euclidean' or 'cosine'")


def _unit(x: FloatArray, name: str) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise CalibrationError(f"{name} contain an all-zero embedding (no direction for cosine)")
    unit: FloatArray = x / norms
    return unit


def pair_scores(a: npt.ArrayLike, b: npt.ArrayLike, metric: Metric = "euclidean") -> FloatArray:
    """Row-wise scores between two (N, D) embedding arrays.

    ``"euclidean"``: distance (lower = more alike), as dlib uses it. ``"cosine"``: cosine
    similarity (higher = more alike), as ArcFace-style models use it.
    """
    _check_metric(metric)
    ea, eb = _matrix(a, "embeddings a"), _matrix(b, "embeddings b")
    if ea.shape != eb.shape:
        raise CalibrationError(f"embedding arrays differ in shape: {ea.shape} vs {eb.shape}")
    if metric == "euclidean":
        return np.asarray(np.linalg.norm(ea - eb, axis=1), dtype=np.float64)
    return np.asarray(
        np.einsum("ij,ij->i", _unit(ea, "embeddings a"), _unit(eb, "embeddings b")),
        dtype=np.float64,
    )


def scores_from_pairs(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    same: npt.ArrayLike,
    metric: Metric = "euclidean",
) -> tuple[FloatArray, FloatArray]:
    """Split the scores of labelled pairs into ``(genuine, impostor)``.

    ``a[i]`` and ``b[i]`` are the embeddings of pair ``i``; ``same[i]`` is true when both
    show the same person. Feed the result to :func:`calibrate` (with
    ``higher_is_match=(metric == "cosine")``).
    """
    scores = pair_scores(a, b, metric)
    labels = np.asarray(same).reshape(-1)
    if labels.shape[0] != scores.shape[0]:
        raise CalibrationError(
            f"{labels.shape[0]} labels for {scores.shape[0]} pairs: give one 'same' per pair"
        )
    mask = labels.astype(bool)
    genuine: FloatArray = scores[mask]
    impostor: FloatArray = scores[~mask]
    return genuine, impostor


def all_pair_scores(
    embeddings: npt.ArrayLike,
    identities: Sequence[Hashable],
    metric: Metric = "euclidean",
    *,
    block: int = 2048,
) -> tuple[FloatArray, FloatArray]:
    """Scores of every unordered pair of a labelled embedding set: ``(genuine, impostor)``.

    Pairs whose identities are equal are genuine, all others impostor; map aliases (one
    person filed under two names) to one identity before calling. N embeddings give
    N*(N-1)/2 pairs (3,000 faces: about 4.5 million), computed block by block in float64.
    """
    _check_metric(metric)
    emb = _matrix(embeddings, "embeddings")
    if len(identities) != emb.shape[0]:
        raise CalibrationError(
            f"{len(identities)} identities for {emb.shape[0]} embeddings: give one per row"
        )
    if emb.shape[0] < 2:
        raise CalibrationError("need at least two embeddings to form a pair")
    _, codes = np.unique(np.array([str(i) for i in identities]), return_inverse=True)
    codes = codes.reshape(-1)
    if metric == "cosine":
        emb = _unit(emb, "embeddings")
    sq = np.einsum("ij,ij->i", emb, emb)
    n = emb.shape[0]
    gen_parts: list[FloatArray] = []
    imp_parts: list[FloatArray] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        gram = emb[start:stop] @ emb[start:].T  # rows start..stop against columns start..n
        if metric == "euclidean":
            d2 = sq[start:stop, None] + sq[None, start:] - 2.0 * gram
            vals = np.sqrt(np.maximum(d2, 0.0))
        else:
            vals = gram
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start, n)[None, :]
        upper = cols > rows
        same = codes[start:stop, None] == codes[None, start:]
        gen_parts.append(vals[upper & same])
        imp_parts.append(vals[upper & ~same])
    return np.concatenate(gen_parts), np.concatenate(imp_parts)
