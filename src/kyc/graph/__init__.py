"""The applicant graph: shared identifiers, fraud rings, multi-lender velocity.

The names below are imported on first use (numpy, scipy and the Leiden extension load only
when a graph is built).

>>> from kyc.graph import FraudGraph, GraphConfig
>>> GraphConfig().hub_degree_cap
50

Modules: :mod:`~kyc.graph.identifiers` (normalise + HMAC), :mod:`~kyc.graph.records`
(Application schema and loading), :mod:`~kyc.graph.store` (SQLite/memory stores),
:mod:`~kyc.graph.velocity` (multi-lender windows), :mod:`~kyc.graph.build` (bipartite graph,
hub damping, evidence rule), :mod:`~kyc.graph.columns` (the integer-coded columnar form a
store persists for batch scans), :mod:`~kyc.graph.cluster` (components, Leiden CPM),
:mod:`~kyc.graph.dense` (FRAUDAR peeling), :mod:`~kyc.graph.rings` (ring evidence and
score), :mod:`~kyc.graph.fraudgraph` (the incremental, persistent graph),
:mod:`~kyc.graph.render` (ring pictures), :mod:`~kyc.graph.synth` (synthetic data).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "scan_applications": "kyc.graph.spark",
    "ScanResult": "kyc.graph.spark",
    "propagate_priors": "kyc.graph.propagate",
    "Application": "kyc.graph.records",
    "HashedApplication": "kyc.graph.records",
    "LoadResult": "kyc.graph.records",
    "hash_application": "kyc.graph.records",
    "read_applications": "kyc.graph.records",
    "IdKind": "kyc.graph.identifiers",
    "IdentifierHasher": "kyc.graph.identifiers",
    "Role": "kyc.graph.identifiers",
    "MemoryStore": "kyc.graph.store",
    "SQLiteStore": "kyc.graph.store",
    "Store": "kyc.graph.store",
    "open_store": "kyc.graph.store",
    "RescanReport": "kyc.graph.velocity",
    "VelocityIndex": "kyc.graph.velocity",
    "BipartiteGraph": "kyc.graph.build",
    "GraphConfig": "kyc.graph.build",
    "PairTable": "kyc.graph.build",
    "RingScoring": "kyc.graph.build",
    "build_graph": "kyc.graph.build",
    "candidate_pairs": "kyc.graph.build",
    "linked_components": "kyc.graph.build",
    "plain_components": "kyc.graph.build",
    "LinkColumns": "kyc.graph.columns",
    "columns_from_apps": "kyc.graph.columns",
    "graph_from_columns": "kyc.graph.columns",
    "UnionFind": "kyc.graph.cluster",
    "components": "kyc.graph.cluster",
    "leiden_cpm": "kyc.graph.cluster",
    "DenseBlock": "kyc.graph.dense",
    "fraudar": "kyc.graph.dense",
    "Link": "kyc.graph.rings",
    "Ring": "kyc.graph.rings",
    "RingReport": "kyc.graph.rings",
    "SharedIdentifier": "kyc.graph.rings",
    "BatchResult": "kyc.graph.fraudgraph",
    "FraudGraph": "kyc.graph.fraudgraph",
    "render_ring": "kyc.graph.render",
}

__all__ = [
    "Application",
    "BatchResult",
    "BipartiteGraph",
    "DenseBlock",
    "FraudGraph",
    "GraphConfig",
    "HashedApplication",
    "IdKind",
    "IdentifierHasher",
    "Link",
    "LinkColumns",
    "LoadResult",
    "MemoryStore",
    "PairTable",
    "RescanReport",
    "Ring",
    "RingReport",
    "RingScoring",
    "Role",
    "SQLiteStore",
    "ScanResult",
    "SharedIdentifier",
    "Store",
    "UnionFind",
    "VelocityIndex",
    "build_graph",
    "candidate_pairs",
    "columns_from_apps",
    "components",
    "fraudar",
    "graph_from_columns",
    "hash_application",
    "leiden_cpm",
    "linked_components",
    "open_store",
    "plain_components",
    "propagate_priors",
    "read_applications",
    "render_ring",
    "scan_applications",
]

if TYPE_CHECKING:  # pragma: no cover
    from kyc.graph.build import (
        BipartiteGraph,
        GraphConfig,
        PairTable,
        RingScoring,
        build_graph,
        candidate_pairs,
        linked_components,
        plain_components,
    )
    from kyc.graph.cluster import UnionFind, components, leiden_cpm
    from kyc.graph.columns import LinkColumns, columns_from_apps, graph_from_columns
    from kyc.graph.dense import DenseBlock, fraudar
    from kyc.graph.fraudgraph import BatchResult, FraudGraph
    from kyc.graph.identifiers import IdentifierHasher, IdKind, Role
    from kyc.graph.propagate import propagate_priors
    from kyc.graph.records import (
        Application,
        HashedApplication,
        LoadResult,
        hash_application,
        read_applications,
    )
    from kyc.graph.render import render_ring
    from kyc.graph.rings import Link, Ring, RingReport, SharedIdentifier
    from kyc.graph.spark import ScanResult, scan_applications
    from kyc.graph.store import MemoryStore, SQLiteStore, Store, open_store
    from kyc.graph.velocity import RescanReport, VelocityIndex


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kyc.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
