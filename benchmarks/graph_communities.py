"""Communities inside the hub-damped graph: Leiden CPM (the project's choice) vs networkx Louvain.

    nice -n 10 python benchmarks/graph_communities.py --sizes 10000,100000,1000000

Every method partitions the *same* graph: applicants of a ``kyc.graph.synth`` store (hashed by
``graph_common.synth_store``, shared with the other graph benchmarks) joined by the pairs that
pass the hub cap and the evidence rule, weighted by rarity (``candidate_pairs``). Methods:

* ``components``: connected components, no community step;
* ``leiden_cpm``: ``kyc.graph.cluster.leiden_cpm`` at the default resolution (what
  ``FraudGraph.scan()`` runs; CPM decomposes over components, so one global run equals the
  per-component runs of the pipeline);
* ``louvain``: ``networkx.community.louvain_communities`` (modularity, resolution 1,
  weighted) on the whole graph, the baseline the issue names;
* ``louvain_per_component``: the same inside each component of 3 or more applicants.

``--link-threshold 0.5`` lets any shared non-hub identifier link (the evidence rule off, hub
cap kept): components then glue most applicants together and the community method alone has
to find the rings. ``--stealth`` uses the recovery benchmark's harder rings (longer bursts,
fewer shared devices and cards). For each: groups of at least ``min_ring_size`` (3)
applicants are the ring candidates; a planted ring is *recovered* when a candidate matches it
at Jaccard >= 0.5 (the recovery benchmark's criterion) and *exact* when a candidate equals
it. Wall time per method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_common import BENCH_SECRET, ROOT, synth_store
from graph_recovery import match_rings
from kyc.graph.build import GraphConfig, candidate_pairs, linked_components
from kyc.graph.cluster import leiden_cpm
from kyc.graph.columns import graph_from_columns
from kyc.graph.fraudgraph import FraudGraph
from kyc.graph.store import SQLiteStore


def _groups(labels: np.ndarray[Any, Any], names: list[str]) -> list[list[str]]:
    out: dict[int, list[str]] = {}
    for lab, name in zip(labels.tolist(), names, strict=True):
        out.setdefault(lab, []).append(name)
    return list(out.values())


def score(groups: list[list[str]], planted: dict[str, set[str]], raw_of: dict[str, str],
          min_size: int) -> dict[str, Any]:
    """Recovery figures of one method's groups against the planted rings."""
    cands = [{raw_of[t] for t in g} for g in groups if len(g) >= min_size]
    good, hit = match_rings(cands, planted)
    exact = {frozenset(c) for c in cands} & {frozenset(m) for m in planted.values()}
    sizes = sorted((len(c) for c in cands), reverse=True)
    return {"candidates": len(cands), "recovered": len(hit) / len(planted),
            "exact": len(exact) / len(planted),
            "candidates_matching_a_ring": good, "largest_candidate": sizes[0] if sizes else 0}


STEALTH = {"ring_burst_hours": [24.0, 240.0], "ring_device_share": 0.3, "ring_card_share": 0.3}


def run_size(n: int, seed: int, store_dir: Path, methods: list[str],
             stealth: bool = False, link_threshold: float = 1.0) -> dict[str, Any]:
    """Build the damped graph of one store and run every method on it."""
    import networkx as nx

    info = synth_store(n, seed, store_dir, gen_kwargs=STEALTH if stealth else None,
                       tag="_stealth" if stealth else "")
    ds = info["dataset"]
    cfg = GraphConfig(link_threshold=link_threshold)
    with SQLiteStore(info["path"]) as st:
        g = graph_from_columns(st.columns())
        names = list(g.applicants)
    pairs = candidate_pairs(g, cfg)
    keep = pairs.linked
    a, b, w = pairs.a[keep], pairs.b[keep], pairs.weight[keep]
    labels = linked_components(g, pairs)
    edges = [(names[i], names[j], float(x))
             for i, j, x in zip(a.tolist(), b.tolist(), w.tolist(), strict=True)]
    fg = FraudGraph(BENCH_SECRET)
    raw_of = {fg.applicant_token(x): x for x in ds.thin_file}
    planted = ds.rings
    row: dict[str, Any] = {"n_applications": n, "stealth": stealth,
                           "link_threshold": link_threshold, "applicants": len(names),
                           "linked_pairs": len(edges), "planted_rings": len(planted)}
    for method in methods:
        t0 = time.perf_counter()
        if method == "components":
            groups = _groups(labels, names)
        elif method == "leiden_cpm":
            linked = np.zeros(len(names), dtype=bool)
            linked[a] = linked[b] = True
            groups = leiden_cpm(edges, resolution=cfg.resolution, seed=cfg.seed)
            groups += [[names[i]] for i in np.flatnonzero(~linked).tolist()]
        elif method == "louvain":
            graph = nx.Graph()
            graph.add_nodes_from(names)
            graph.add_weighted_edges_from(edges)
            groups = [list(c) for c in nx.community.louvain_communities(graph, seed=0)]
        elif method == "louvain_per_component":
            by_comp: dict[int, list[tuple[str, str, float]]] = {}
            for (u, v, x), c in zip(edges, labels[a].tolist(), strict=True):
                by_comp.setdefault(c, []).append((u, v, x))
            groups = [grp for grp in _groups(labels, names) if len(grp) < 3]
            for comp_edges in by_comp.values():
                graph = nx.Graph()
                graph.add_weighted_edges_from(comp_edges)
                if graph.number_of_nodes() < 3:
                    groups.append(list(graph.nodes))
                    continue
                groups += [list(c) for c in nx.community.louvain_communities(graph, seed=0)]
        else:
            raise SystemExit(f"unknown method {method}")
        took = time.perf_counter() - t0
        row[method] = {**score(groups, planted, raw_of, cfg.min_ring_size),
                       "seconds": round(took, 3)}
        print(f"n={n} {method}: {row[method]}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the sizes, print a Markdown table, write JSON."""
    ap = argparse.ArgumentParser(description="Leiden CPM vs networkx Louvain on the damped graph")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store-dir", type=Path, default=ROOT / "benchmarks/out/graph_stores")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/graph_communities.json")
    ap.add_argument("--methods", default="components,leiden_cpm,louvain,louvain_per_component")
    ap.add_argument("--stealth", action="store_true",
                    help="the recovery benchmark's harder rings (same stores, tag _stealth)")
    ap.add_argument("--link-threshold", type=float, default=1.0,
                    help="evidence rule (default 1.0 as shipped; 0.5 lets any shared "
                         "identifier link, the stress case where communities must do the work)")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    rows = [run_size(int(x), args.seed, args.store_dir, methods, args.stealth,
                     args.link_threshold)
            for x in args.sizes.split(",") if x]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n| applications | method | ring candidates (>= 3) | rings recovered (Jaccard >= 0.5) "
          "| rings exact | largest candidate | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for m in methods:
            v = r[m]
            tag = (" stealth" if r["stealth"] else "") + (
                f" threshold {r['link_threshold']}" if r["link_threshold"] != 1.0 else "")
            print(f"| {r['n_applications']:,}{tag} | {m} | {v['candidates']:,} | "
                  f"{v['recovered']:.3f} | {v['exact']:.3f} | {v['largest_candidate']} | "
                  f"{v['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
