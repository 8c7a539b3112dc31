"""1:N search speed of kyc.face.index.FaceIndex on 10^5 templates.

Times single queries (``FaceIndex.search``, top-5) and batched queries (``search_many``)
over N random 128-d templates (dlib's size), side by side with the brute force that
``face_recognition`` users write for 1:N (``face_distance`` = ``np.linalg.norm(known -
query, axis=1)`` then a sort), in the same process on the same data. Also checks that both
return the same nearest neighbours (on unit vectors the orderings agree).

    nice -n 10 python benchmarks/face_index_bench.py --n 100000 --queries 200

Target (issue 2): well under 50 ms per query at N = 10^5 on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from kyc.face.index import FaceIndex


def face_distance_style(known: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The face_recognition way: Euclidean distance to every template, then argsort."""
    d = np.linalg.norm(known - query, axis=1)
    return np.argsort(d)[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="templates in the index")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    templates = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = [f"subject-{i}" for i in range(args.n)]

    t0 = time.perf_counter()
    index = FaceIndex(args.dim)
    index.add_many(ids, templates)
    build_s = time.perf_counter() - t0

    for q in queries[:5]:  # warm-up
        index.search(q, k=args.k)

    single_ms = []
    agree = 0
    peer_ms = []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, k=args.k)
        single_ms.append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        peer = face_distance_style(templates, q, args.k)
        peer_ms.append(1e3 * (time.perf_counter() - t))
        agree += [h.subject_id for h in hits] == [ids[i] for i in peer]

    t = time.perf_counter()
    index.search_many(queries, k=args.k)
    batch_ms = 1e3 * (time.perf_counter() - t) / args.queries

    def p(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    result = {
        "n_templates": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "build_s": round(build_s, 3),
        "search_ms_median": round(statistics.median(single_ms), 2),
        "search_ms_p95": round(p(single_ms, 95), 2),
        "search_many_ms_per_query": round(batch_ms, 2),
        "face_distance_style_ms_median": round(statistics.median(peer_ms), 2),
        "speedup_vs_face_distance_style": round(
            statistics.median(peer_ms) / statistics.median(single_ms), 1
        ),
        "same_top_k": f"{agree}/{args.queries}",
        "memory_mb": round(len(index) * args.dim * 4 / 2**20, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}",
        "load_avg_1min": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
