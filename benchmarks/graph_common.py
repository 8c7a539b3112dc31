"""Shared helpers for the graph benchmarks: ranking metrics, peak memory, timing.

Metrics are computed here (numpy only) so every method, the project's and the peers', is
scored by the same code from the same labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BENCH_SECRET",
    "ROOT",
    "average_precision",
    "fingerprint",
    "peak_rss_mb",
    "python",
    "roc_auc",
    "run_child",
    "synth_store",
]

ROOT = Path(__file__).resolve().parents[1]


def _ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Average ranks (1-based) with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [xs.size]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1..end
    ranks = np.empty(xs.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC (Mann-Whitney, ties count one half); labels 1 = positive."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC AUC needs both classes")
    r = _ranks(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision as scikit-learn defines it: sum over thresholds of dRecall x P."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if not y.any():
        raise ValueError("average precision needs a positive")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.concatenate([np.flatnonzero(np.diff(ss)), [ss.size - 1]])  # end of each tie run
    tp = np.cumsum(ys)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(argv: list[str], *, timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` in a fresh child process and return the JSON object it prints last.

    Each measured pipeline runs in its own interpreter, so its peak RSS (which the child
    reports with :func:`peak_rss_mb`) is its own. ``wall_s`` (whole child, start-up
    included) is added; on failure ``status`` says why and ``stderr`` holds the tail.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"status": "timeout", "wall_s": time.perf_counter() - t0, "stderr": err[-2000:]}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"status": "failed", "returncode": proc.returncode, "wall_s": wall,
                "stderr": err[-4000:]}
    lines = [ln for ln in out.splitlines() if ln.strip()]
    res: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    res.setdefault("status", "ok")
    res["wall_s"] = wall
    return res


def python() -> str:
    """The interpreter running this benchmark (children use the same one)."""
    return sys.executable


#: HMAC secret of every graph benchmark (stores made by one benchmark are reused by others).
BENCH_SECRET = b"kyc-graph-benchmark-secret-0001"


def fingerprint(ds: Any) -> str:
    """SHA-256 over every 101st application row and the ground truth of a SynthDataset.

    Stores are reused only when the generator still produces the same data, whatever edits
    its source file went through.
    """
    cols = ds.applications_columns()
    h = hashlib.sha256()
    n = len(cols["application_id"])
    for i in range(0, n, 101):
        h.update(repr([cols[k][i] for k in cols]).encode())
    h.update(repr(sorted(ds.ring_of.items())).encode())
    h.update(repr(sorted(ds.fraud)).encode())
    return h.hexdigest()


def synth_store(n: int, seed: int, store_dir: Path, *, log: Any = print,
                gen_kwargs: dict[str, Any] | None = None, tag: str = "") -> dict[str, Any]:
    """Generate ``synth.generate(n, seed=seed, **gen_kwargs)``, hash it into a SQLite store.

    The store (named after ``n``, ``seed`` and ``tag``) is reused when its meta matches the
    arguments and the data the generator makes now (:func:`fingerprint`).

    Returns ``{"dataset", "path", "generate_s", "hash_s"}``; ``hash_s`` is None when an
    earlier, complete store was reused (the store's meta records the generator arguments).
    """
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.store import SQLiteStore
    from kyc.graph.synth import generate

    store_dir.mkdir(parents=True, exist_ok=True)
    path = store_dir / f"synth_n{n}_seed{seed}{tag}.sqlite"
    t0 = time.perf_counter()
    ds = generate(n, seed=seed, **(gen_kwargs or {}))
    gen_s = time.perf_counter() - t0
    key = {"n": n, "seed": seed, "generator": "kyc.graph.synth.generate",
           "kwargs": json.loads(json.dumps(gen_kwargs or {})), "fingerprint": fingerprint(ds)}
    if path.exists():
        st = SQLiteStore(path)
        try:
            if st.get_meta("bench.synth") == key and len(st) == n:
                log(f"reusing hashed store {path}")
                return {"dataset": ds, "path": path, "generate_s": gen_s, "hash_s": None}
        finally:
            st.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    log(f"hashing {n} applications into {path} ...")
    t0 = time.perf_counter()
    fg = FraudGraph(BENCH_SECRET, store=path)
    res = fg.add_many(ds.applications)
    if res.errors:
        raise RuntimeError(f"{len(res.errors)} synthetic rows refused: {res.errors[0].message}")
    fg.store.set_meta("bench.synth", key)
    fg.close()
    return {"dataset": ds, "path": path, "generate_s": gen_s,
            "hash_s": time.perf_counter() - t0}
