"""Columnar form of stored applications (kyc.graph.columns, SQLiteStore.columns)."""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.errors import ConfigError, StoreError
from kyc.graph.build import KINDS, BipartiteGraph, build_graph, candidate_pairs, linked_components
from kyc.graph.build import ROLES as BUILD_ROLES
from kyc.graph.columns import (
    LinkColumns,
    TokenView,
    columns_from_apps,
    decode,
    graph_from_columns,
    merge_columns,
)
from kyc.graph.fraudgraph import FraudGraph, _batch_rings
from kyc.graph.records import HashedApplication
from kyc.graph.store import MemoryStore, SQLiteStore

SECRET = b"0123456789abcdef-columns-tests"
ROLES = ("device", "phone", "contact", "ip", "address", "card", "email")


def tok(kind: str, name: str) -> str:
    return f"{kind}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def random_apps(n: int, seed: int, *, n_people: int | None = None) -> list[HashedApplication]:
    """Applications with repeated applicants, shared identifiers in several roles, thin-file
    flags, same-second timestamps and repeated application ids."""
    rng = random.Random(seed)
    people = n_people or max(2, n * 2 // 3)
    out = []
    for i in range(n):
        links = set()
        for _ in range(rng.randint(0, 5)):
            role = rng.choice(ROLES)
            kind = "phone" if role == "contact" else role
            links.add((role, tok(kind, str(rng.randint(0, n // 2)))))
        out.append(HashedApplication(
            application_id=f"app-{rng.randint(0, n * 2) if rng.random() < 0.05 else i}",
            applicant=tok("applicant", str(rng.randint(0, people))),
            lender_id=f"L{rng.randint(0, 5)}", lender_type=rng.choice(["bank", "nbank"]),
            ts=1_700_000_000 + rng.randint(0, 50) * 60,
            links=tuple(sorted(links)),
            thin_file=rng.choice([None, True, False]),
        ))
    return out


def canon(g: BipartiteGraph) -> tuple[Any, ...]:
    """The graph in a numbering-free form."""
    a_tok, i_tok = list(g.applicants), list(g.identifiers)
    edges = sorted((a_tok[a], i_tok[i], r) for a, i, r in zip(
        g.edge_app.tolist(), g.edge_id.tolist(), g.edge_roles.tolist(), strict=True))
    ids = sorted(zip(i_tok, g.degree.tolist(), g.kind.tolist(), strict=True))
    per_app = sorted((a_tok[x], tuple(g.times[g.times_ptr[x]:g.times_ptr[x + 1]].tolist()),
                      int(g.thin[x])) for x in range(len(a_tok)))
    return (edges, ids, per_app, g.n_applications, g.n_singletons, g.n_singleton_links)


def partition(g: BipartiteGraph) -> list[tuple[str, ...]]:
    labels = linked_components(g, candidate_pairs(g))
    groups: dict[int, list[str]] = {}
    for t, lab in zip(g.applicants, labels.tolist(), strict=True):
        groups.setdefault(lab, []).append(t)
    return sorted(tuple(sorted(v)) for v in groups.values())


def reference(apps: list[HashedApplication]) -> tuple[Any, ...]:
    """The graph ``canon`` describes, computed the slow obvious way (the oracle)."""
    bit = {r: 1 << i for i, r in enumerate(BUILD_ROLES)}
    first: dict[str, HashedApplication] = {}
    for h in apps:
        first.setdefault(h.application_id, h)
    kept = list(first.values())
    roles: dict[tuple[str, str], int] = {}
    for h in kept:
        for r, t in h.links:
            roles[(h.applicant, t)] = roles.get((h.applicant, t), 0) | bit[r]
    holders: dict[str, set[str]] = {}
    for a, t in roles:
        holders.setdefault(t, set()).add(a)
    shared = {t for t, hs in holders.items() if len(hs) >= 2}
    edges = sorted((a, t, r) for (a, t), r in roles.items() if t in shared)
    kinds = {k: i for i, k in enumerate(KINDS)}
    ids = sorted((t, len(holders[t]), kinds.get(t.partition(":")[0], -1)) for t in shared)
    per_app = []
    for a in {h.applicant for h in kept}:
        mine = [h for h in kept if h.applicant == a]
        said = [h for h in mine if h.thin_file is not None]
        last = max(said, key=lambda h: (h.ts, h.application_id)) if said else None
        per_app.append((a, tuple(sorted(h.ts for h in mine)),
                        -1 if last is None else int(bool(last.thin_file))))
    singles = [t for t, hs in holders.items() if len(hs) == 1]
    return (edges, ids, sorted(per_app), len(kept), len(singles), len(singles))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_matches_the_brute_force_oracle(seed: int) -> None:
    apps = random_apps(600, seed)
    expected = reference(apps)
    g = build_graph(apps)
    assert canon(g) == expected
    assert g.n_identifiers > 20 and g.edge_app.size > 50  # the data links people
    # edges sorted by applicant then identifier, as BipartiteGraph promises
    key = g.edge_app.astype(np.int64) * (g.n_identifiers + 1) + g.edge_id
    assert np.all(np.diff(key) > 0)
    # the same graph from store rows (no objects) and from a reopened persisted copy
    store = SQLiteStore(":memory:")
    store.add(apps)
    assert canon(graph_from_columns(store.columns(refresh=True))) == expected
    assert canon(graph_from_columns(store.columns())) == expected
    assert canon(graph_from_columns(MemoryStore().columns())) == canon(build_graph([]))


@pytest.mark.parametrize("seed", [3, 4])
def test_merge_equals_building_everything_at_once(seed: int) -> None:
    apps = random_apps(900, seed)
    seen: set[str] = set()
    unique = [a for a in apps if not (a.application_id in seen or seen.add(a.application_id))]
    cuts = sorted(random.Random(seed).sample(range(1, len(unique)), 3))
    parts = [unique[a:b] for a, b in zip([0, *cuts], [*cuts, len(unique)], strict=True)]
    merged = columns_from_apps(parts[0], last_seq=1)
    for k, part in enumerate(parts[1:], start=2):
        merged = merge_columns(merged, columns_from_apps(part, last_seq=k))
    whole = columns_from_apps(unique)
    assert merged.last_seq == 4
    assert merged.n_tokens == whole.n_tokens and merged.n_edges == whole.n_edges
    merged.check()
    # token_order really sorts the merged token table
    sorted_toks = merged.tokens[merged.token_order]
    assert np.all(sorted_toks[:-1] < sorted_toks[1:])
    assert canon(graph_from_columns(merged)) == canon(build_graph(unique))


def test_merging_nothing_and_into_nothing() -> None:
    apps = random_apps(50, 5)
    cols = columns_from_apps(apps)
    empty = columns_from_apps([])
    assert merge_columns(cols, empty) is cols
    assert merge_columns(empty, cols) is cols
    g = graph_from_columns(empty)
    assert g.n_applicants == 0 and g.n_identifiers == 0 and g.edge_app.size == 0


def test_token_view_decodes_on_access() -> None:
    apps = random_apps(100, 6)
    g = graph_from_columns(columns_from_apps(apps))
    view = g.applicants
    assert isinstance(view, TokenView)
    as_list = list(view)
    assert len(view) == len(as_list) == len(set(as_list))
    assert view[0] == as_list[0] and view[-1] == as_list[-1]
    assert view[1:4] == as_list[1:4]
    assert view.take([2, 0]) == [as_list[2], as_list[0]]
    assert all(t.startswith("applicant:") for t in as_list)
    assert sorted(as_list) == sorted({a.applicant for a in apps})


def test_bad_input_is_refused_with_a_reason() -> None:
    bad_role = HashedApplication("a1", tok("applicant", "x"), "L1", "bank", 1,
                                 (("teleport", tok("device", "d")),))
    with pytest.raises(ConfigError, match="teleport"):
        columns_from_apps([bad_role])
    with pytest.raises(ConfigError, match="teleport"):
        build_graph([bad_role])
    cols = columns_from_apps(random_apps(30, 7))
    arrays = cols.arrays()
    arrays["edge_tok"] = arrays["edge_tok"] + cols.n_tokens
    with pytest.raises(ConfigError, match="edge_tok out of range"):
        LinkColumns.from_arrays(arrays)
    arrays = cols.arrays()
    arrays["token_order"] = arrays["token_order"][:-1]
    with pytest.raises(ConfigError, match="token_order length"):
        LinkColumns.from_arrays(arrays)


def test_strings_ending_in_nul_come_back_unchanged(tmp_path: Path) -> None:
    dev = "device:odd\x00"
    apps = [HashedApplication(f"a{i}\x00", tok("applicant", str(i)), "L1", "bank",
                              1_700_000_000 + i, (("device", dev), ("ip", "ip:\x00\x00")))
            for i in range(4)]
    g = graph_from_columns(columns_from_apps(apps))
    assert sorted(g.identifiers) == sorted([dev, "ip:\x00\x00"])
    path = tmp_path / "g.db"
    with FraudGraph(SECRET, store=path) as fg:
        fg.add_hashed(apps)
        fg.store.columns(refresh=True)
        rings = fg.scan()
        cols = fg.store.columns()
    assert len(rings) == 1 and len(rings[0].members) == 4
    assert sorted(decode(cols.app_ids.tolist())) == sorted(a.application_id for a in apps)
    assert dev in set(graph_from_columns(cols).identifiers)


# --- SQLiteStore persistence ----------------------------------------------------------------


def hashed_synth(n: int) -> list[HashedApplication]:
    from kyc.graph.synth import generate

    fg = FraudGraph(SECRET)
    return [fg._hash(a) for a in generate(n, seed=5, n_rings=4, ring_size=(5, 12)).applications]


@pytest.fixture(scope="module")
def synth_apps() -> list[HashedApplication]:
    return hashed_synth(3000)


def test_store_persists_columns_and_folds_in_new_applications(
        tmp_path: Path, synth_apps: list[HashedApplication]) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(synth_apps[:2000])
        assert st.get_meta("kyc:columns") is None
        cols = st.columns()  # 2,000 new applications: worth persisting
        head = st.get_meta("kyc:columns")
        assert head is not None and head["last_seq"] == 2000 == cols.last_seq
        st.add(synth_apps[2000:2100])
        more = st.columns()  # 100 more: folded in, below the rewrite threshold
        assert more.n_applications == 2100
        assert st.get_meta("kyc:columns")["last_seq"] == 2000
        st.columns(refresh=False)
        assert st.get_meta("kyc:columns")["last_seq"] == 2000
        st.columns(refresh=True)
        assert st.get_meta("kyc:columns")["last_seq"] == 2100
    with SQLiteStore(path) as again:
        reread = again.columns()
        assert canon(graph_from_columns(reread)) == canon(build_graph(synth_apps[:2100]))
        assert reread.n_applications == 2100


def test_tokens_load_after_the_store_is_closed(tmp_path: Path,
                                               synth_apps: list[HashedApplication]) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(synth_apps)
        st.columns(refresh=True)
    with SQLiteStore(path) as st:
        g = graph_from_columns(st.columns())
    assert set(g.applicants) == {a.applicant for a in synth_apps}


def test_damaged_persisted_columns_are_ignored_and_rebuilt(
        tmp_path: Path, synth_apps: list[HashedApplication],
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(synth_apps)
        expected = canon(graph_from_columns(st.columns(refresh=True)))
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE column_parts SET data = substr(data, 1, 10) WHERE name = 'edge_tok'")
    con.close()
    with caplog.at_level(logging.WARNING, logger="kyc.graph.store"), SQLiteStore(path) as st:
        cols = st.columns()
        assert "ignoring its persisted columns" in caplog.text
        assert canon(graph_from_columns(cols)) == expected
    with SQLiteStore(path) as st:  # and the rebuilt copy was written back
        caplog.clear()
        st.columns()
        assert "ignoring" not in caplog.text


def test_tokens_of_rewritten_columns_are_not_mixed_up(
        tmp_path: Path, synth_apps: list[HashedApplication]) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(synth_apps[:2000])
        st.columns(refresh=True)
        stale = st.columns()  # tokens not read yet
        with SQLiteStore(path) as other:
            other.add(synth_apps[2000:])
            other.columns(refresh=True)
        with pytest.raises(StoreError, match="rewritten by another process"):
            _ = stale.tokens


def test_scan_through_store_columns_equals_the_object_path(
        tmp_path: Path, synth_apps: list[HashedApplication]) -> None:
    path = tmp_path / "g.db"
    with FraudGraph(SECRET, store=path) as g:
        g.add_hashed(synth_apps[:2500])
        for h in synth_apps[2500:2600]:
            g.add_hashed([h])
        via_columns = [r.to_dict() for r in g.scan()]
        via_objects = [r.to_dict() for r in _batch_rings(list(g.store.applications()),
                                                         g.config, set())]
        incremental = [r.to_dict() for r in g.rings()]
    assert via_columns == via_objects == incremental
    assert sum(r["flagged"] for r in via_columns) >= 3


def test_non_ascii_tokens_and_ids_survive_the_round_trip(tmp_path: Path) -> None:
    odd = "address:Straße-7-ĳ"
    apps = [HashedApplication(f"antrag-{i}-é", tok("applicant", str(i)), "L1", "bank",
                              1_700_000_000 + i, (("address", odd), ("device", "device:x")))
            for i in range(3)]
    g = graph_from_columns(columns_from_apps(apps))
    assert sorted(g.identifiers) == sorted([odd, "device:x"])
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(apps)
        st.columns(refresh=True)
    with SQLiteStore(path) as st:
        cols = st.columns()
        assert canon(graph_from_columns(cols)) == canon(build_graph(apps))
        assert sorted(decode(cols.app_ids.tolist())) == sorted(
            a.application_id for a in apps)


def test_columns_are_returned_when_the_copy_cannot_be_written(
        tmp_path: Path, synth_apps: list[HashedApplication],
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as st:
        st.add(synth_apps)
        st._db().execute("PRAGMA query_only = ON")  # as a read-only file or replica would be
        with caplog.at_level(logging.WARNING, logger="kyc.graph.store"):
            cols = st.columns(refresh=True)
        assert "columns not persisted" in caplog.text
        assert cols.n_applications == len(synth_apps)
        assert st.get_meta("kyc:columns") is None
