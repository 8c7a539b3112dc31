"""The speed benchmark's two pipelines compute the same partition (benchmarks/graph_speed.py).

The benchmark's ratios only mean something if both sides solve the same problem; this runs
every pipeline of it on a small synthetic store and compares their partitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

graph_speed = pytest.importorskip("graph_speed")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graph_common import BENCH_SECRET
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.synth import generate

    path = tmp_path_factory.mktemp("speed") / "synth.sqlite"
    with FraudGraph(BENCH_SECRET, store=path) as g:
        g.add_many(generate(3000, seed=2, n_rings=5, ring_size=(5, 15)).applications)
    graph_speed.prepare_columns(path, rebuild=False)
    return path


def test_every_pipeline_gives_the_same_partition(store: Path) -> None:
    results = {m: graph_speed.child(m, store, trace=False, repeat=1) for m in graph_speed.MODES
               if m != "kyc-scan"}
    digests = {m: r["digest"] for m, r in results.items()}
    assert len(set(digests.values())) == 1, digests
    sizes = results["kyc"]
    assert sizes["groups_ge3"] >= 5  # the planted rings at least, as linked groups
    assert sizes["n_groups"] < 3000


def test_columns_rebuild_is_timed_and_persisted(store: Path) -> None:
    info = graph_speed.prepare_columns(store, rebuild=True)
    assert info["columns_present_before"] is False and info["columns_build_s"] > 0
    again = graph_speed.prepare_columns(store, rebuild=False)
    assert again == {"columns_build_s": None, "columns_present_before": True}
