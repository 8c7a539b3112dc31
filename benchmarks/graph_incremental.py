"""Incremental ``FraudGraph.add`` latency with a large store behind it.

    nice -n 10 python benchmarks/graph_incremental.py --stored 1000000 --adds 2000

A copy of the hashed synthetic store made by ``graph_common.synth_store`` (``--stored``
applications from ``kyc.graph.synth.generate(stored, seed)``) is opened by a FraudGraph; the
first call rebuilds the in-memory state from it (timed separately as ``load_s``). Then
``--adds`` fresh applications (``generate(adds, seed + 1)``, application ids prefixed so none
is a duplicate; their applicants share hubs, household addresses and NAT IPs with the stored
population because those identifiers are the same strings across seeds) are added one by one,
each ``add()`` timed end to end: validation, HMAC hashing, the SQLite commit (WAL,
synchronous=NORMAL), the union-find / evidence / velocity update, the re-analysis of the
touched component and the applicant's RingReport. The first ``--warmup`` adds are not
counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_common import BENCH_SECRET, ROOT, peak_rss_mb, synth_store
from kyc.graph.fraudgraph import FraudGraph
from kyc.graph.synth import generate


def main(argv: list[str] | None = None) -> int:
    """Measure and print add() latency percentiles; write JSON."""
    ap = argparse.ArgumentParser(description="FraudGraph.add latency with a large store")
    ap.add_argument("--stored", type=int, default=1_000_000)
    ap.add_argument("--adds", type=int, default=2_000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store-dir", type=Path, default=ROOT / "benchmarks/out/graph_stores")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/graph_incremental.json")
    args = ap.parse_args(argv)

    info = synth_store(args.stored, args.seed, args.store_dir)
    fresh = generate(args.adds + args.warmup, seed=args.seed + 1).applications
    fresh = [dataclasses.replace(a, application_id="NEW-" + a.application_id) for a in fresh]
    # the hashing share of add(): validation + normalisation + HMAC of the same applications
    from kyc.graph.identifiers import IdentifierHasher
    from kyc.graph.records import hash_application

    hasher = IdentifierHasher(BENCH_SECRET)
    hash_ms = []
    for app in fresh[args.warmup:]:
        t = time.perf_counter()
        hash_application(app, hasher)
        hash_ms.append((time.perf_counter() - t) * 1000.0)
    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
        path = Path(tmp) / "store.sqlite"
        shutil.copy(info["path"], path)
        fg = FraudGraph(BENCH_SECRET, store=path)
        t0 = time.perf_counter()
        first = fg.add(fresh[0])  # loads the stored applications, then adds one
        load_s = time.perf_counter() - t0
        rss_loaded = peak_rss_mb()
        lat = []
        flagged = 0
        for k, app in enumerate(fresh[1:], start=1):
            t = time.perf_counter()
            rep = fg.add(app)
            dt = time.perf_counter() - t
            if k >= args.warmup:
                lat.append(dt)
                flagged += rep.flagged
        t = time.perf_counter()
        rings = fg.rings()
        rings_s = time.perf_counter() - t
        n_total = len(fg.store)
        fg.close()
    ms = np.array(lat) * 1000.0
    res = {
        "stored": args.stored, "adds_timed": int(ms.size), "warmup": args.warmup,
        "store_total_after": n_total, "load_s": round(load_s, 1),
        "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()), "flagged_reports": flagged,
        "hash_only_p50_ms": float(np.percentile(hash_ms, 50)),
        "hash_only_p99_ms": float(np.percentile(hash_ms, 99)),
        "first_report_component": first.component_size,
        "rings_after": len(rings), "rings_call_s": round(rings_s, 2),
        "peak_rss_mb_after_load": round(rss_loaded, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps(res))
    print(f"\n| stored | adds timed | p50 ms | p90 ms | p99 ms | max ms "
          f"| hashing alone p50 / p99 ms | load s | RSS MB |\n"
          f"|---|---|---|---|---|---|---|---|---|\n"
          f"| {args.stored:,} | {res['adds_timed']} | {res['p50_ms']:.2f} | {res['p90_ms']:.2f} | "
          f"{res['p99_ms']:.2f} | {res['max_ms']:.1f} | {res['hash_only_p50_ms']:.2f} / "
          f"{res['hash_only_p99_ms']:.2f} | {res['load_s']} | "
          f"{res['peak_rss_mb_after_load']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
