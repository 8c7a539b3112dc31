"""Components, union-find and Leiden CPM communities (kyc.graph.cluster)."""

from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest

from kyc.errors import ConfigError
from kyc.graph.cluster import UnionFind, components, leiden_cpm


def _partition(labels: list[int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for node, lab in enumerate(labels):
        groups.setdefault(lab, set()).add(node)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("seed", range(5))
def test_components_equal_networkx_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    m = int(rng.integers(0, n))
    a = rng.integers(0, n, m)
    b = rng.integers(0, n, m)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(a.tolist(), b.tolist(), strict=True))
    want = {frozenset(c) for c in nx.connected_components(g)}
    assert _partition(components(n, a, b).tolist()) == want


@pytest.mark.parametrize("seed", range(3))
def test_union_find_equals_networkx_on_random_unions(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [f"n{i}" for i in range(120)]
    uf: UnionFind[str] = UnionFind()
    g = nx.Graph()
    for x in nodes:
        uf.add(x)
        g.add_node(x)
    for _ in range(100):
        x, y = rng.choice(nodes), rng.choice(nodes)
        merged = uf.union(x, y)
        was_apart = not nx.has_path(g, x, y)
        g.add_edge(x, y)
        assert merged == was_apart
    for comp in nx.connected_components(g):
        for x in comp:
            assert set(uf.members(x)) == comp
            assert uf.size(x) == len(comp)
    assert len(uf) == len(nodes)
    assert sum(1 for _ in uf.roots()) == nx.number_connected_components(g)


def test_union_find_reset_rebuilds_components() -> None:
    uf: UnionFind[str] = UnionFind()
    for x, y in [("a", "b"), ("b", "c"), ("x", "y")]:
        uf.union(x, y)
    whole = list(uf.members("a"))
    uf.reset(whole)
    assert [uf.size(x) for x in "abc"] == [1, 1, 1]
    assert uf.size("x") == 2  # untouched component stays
    uf.union("a", "c")
    assert sorted(uf.members("c")) == ["a", "c"]
    assert uf.find("new") == "new" and "new" in uf


def _planted_cliques(k: int, size: int, seed: int) -> tuple[list[tuple[str, str, float]],
                                                             list[set[str]]]:
    rng = random.Random(seed)
    edges = []
    truth = []
    for c in range(k):
        members = [f"c{c}m{i}" for i in range(size)]
        truth.append(set(members))
        for i in range(size):
            for j in range(i + 1, size):
                if rng.random() < 0.8:  # dense, not complete
                    edges.append((members[i], members[j], rng.uniform(0.3, 1.5)))
    for c in range(k - 1):  # one light bridge between consecutive cliques
        edges.append((f"c{c}m0", f"c{c + 1}m1", 0.4))
    return edges, truth


def test_leiden_recovers_planted_cliques() -> None:
    edges, truth = _planted_cliques(k=6, size=10, seed=3)
    found = leiden_cpm(edges, resolution=0.05, seed=1)
    assert {frozenset(c) for c in found} == {frozenset(t) for t in truth}


def test_leiden_is_deterministic_and_order_free() -> None:
    edges, _ = _planted_cliques(k=4, size=8, seed=9)
    ref = leiden_cpm(edges, resolution=0.05, seed=4)
    for s in range(3):
        shuffled = list(edges)
        random.Random(s).shuffle(shuffled)
        flipped = [(v, u, w) if random.Random(s + 10).random() < 0.5 else (u, v, w)
                   for u, v, w in shuffled]
        assert leiden_cpm(flipped, resolution=0.05, seed=4) == ref


def test_leiden_beats_modularity_resolution_limit() -> None:
    # 30 small rings of 5 in a chain: modularity merges neighbours, CPM keeps them apart
    edges, truth = _planted_cliques(k=30, size=5, seed=2)
    cpm = {frozenset(c) for c in leiden_cpm(edges, resolution=0.05, seed=0)}
    exact_cpm = sum(frozenset(t) in cpm for t in truth)
    g = nx.Graph()
    g.add_weighted_edges_from(edges)
    louvain = {frozenset(c) for c in nx.community.louvain_communities(g, seed=0)}
    exact_louvain = sum(frozenset(t) in louvain for t in truth)
    assert exact_cpm == 30
    assert exact_louvain < exact_cpm


def test_leiden_isolated_nodes_and_duplicates() -> None:
    out = leiden_cpm([("a", "b", 1.0), ("b", "a", 1.0)], nodes=["z"], resolution=0.5)
    assert out == [["a", "b"], ["z"]]
    assert leiden_cpm([], nodes=["q", "p"]) == [["p"], ["q"]]
    # a weak link below the resolution does not hold two nodes together
    assert leiden_cpm([("a", "b", 0.01)], resolution=0.5) == [["a"], ["b"]]


def test_leiden_and_components_reject_bad_input() -> None:
    with pytest.raises(ConfigError):
        leiden_cpm([("a", "b", 1.0)], resolution=0)
    with pytest.raises(ConfigError):
        leiden_cpm([("a", "b", -1.0)])
    with pytest.raises(ConfigError):
        components(3, [0, 5], [1, 2])
    with pytest.raises(ConfigError):
        components(3, [0], [1, 2])
