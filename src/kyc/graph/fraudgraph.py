"""FraudGraph: the applicant graph as one object, incremental and persistent.

>>> from datetime import datetime, timezone
>>> g = FraudGraph(secret=b"0123456789abcdef-doc-secret")
>>> t = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
>>> for i in range(6):
...     r = g.add({"application_id": f"a{i}", "applicant_id": f"P{i}", "lender_id": "L1",
...                "timestamp": t, "device_id": "farm-phone-1", "thin_file": True})
>>> r.ring.size, r.flagged, [x.code for x in r.reasons][:2]
(6, True, ['DEVICE_SHARED_BY_6', 'BURST_6_APPS_IN_3H'])
>>> [ring.members for ring in g.scan()] == [ring.members for ring in g.rings()]
True

How it works (see :mod:`kyc.graph.build` for the linking rules and :mod:`kyc.graph.rings` for
the score):

- **add** hashes the application (raw identifiers never go further), commits it to the store,
  then updates in-memory indexes in time proportional to the application's own links (at most
  ``hub_degree_cap`` pairs per link): identifier holders, pair evidence, a union-find of linked
  applicants, and the velocity counters. Components touched by the application are
  re-analysed (Leiden CPM communities, ring features): its own, and those holding at least two
  holders of a non-hub identifier whose degree (hence rarity weight) it changed. The cost of
  that step is proportional to the touched components' size, not to the graph's. A hub's
  growth beyond the cap touches nothing but the new holder's component (hubs carry no weight).
- **Hubs crossing the cap** remove links, which a union-find cannot undo: when an identifier
  gains its ``cap + 1``-th holder, its pair evidence is withdrawn, and if any link broke the
  affected components are reset and re-unioned from the remaining links.
- **Lazy state**: the in-memory indexes are built from the store on first need (``add``,
  ``rings``, ``report``, ``velocity``); ``add_many`` into a graph not loaded yet only writes
  the store, so bulk loads followed by :meth:`FraudGraph.scan` stay fast.
- **scan** recomputes everything from the store in batch (vectorised pair enumeration and
  scipy components) and analyses each component with the same pure function as the
  incremental path, so both give the same rings, member sets and scores.
- **Persistence**: the store (SQLite in WAL mode for a path) holds hashed applications and
  the fraud labels; a FraudGraph reopened on the same path rebuilds its in-memory state from
  it on first use. The store also keeps an HMAC fingerprint of the secret, so reopening it
  under another secret (whose tokens would never match) is refused.

One FraudGraph should be the only writer of its store; it is thread-safe (one lock).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.build import (
    ROLES,
    BipartiteGraph,
    GraphConfig,
    build_graph,
    candidate_pairs,
    linked_components,
)
from kyc.graph.cluster import UnionFind
from kyc.graph.columns import TokenView, graph_from_columns
from kyc.graph.identifiers import IdentifierHasher, IdKind
from kyc.graph.records import (
    Application,
    HashedApplication,
    hash_application,
    iter_applications,
)
from kyc.graph.rings import (
    ComponentAnalysis,
    ComponentView,
    Link,
    Ring,
    RingFeatures,
    RingReport,
    RingScorer,
    analyse_component,
)
from kyc.graph.store import Store, open_store
from kyc.graph.velocity import RescanReport, VelocityIndex
from kyc.reasons import Reason

__all__ = ["BatchResult", "FraudGraph"]

_BIT: Final = {r: 1 << i for i, r in enumerate(ROLES)}
_PHONE_BIT: Final = _BIT["phone"]
_CONTACT_BIT: Final = _BIT["contact"]
_META_FRAUD: Final = "graph.fraud_labels"
_META_SECRET: Final = "graph.secret_check"
_META_CONFIG: Final = "graph.config"
_CHUNK: Final = 1000


@dataclass(frozen=True)
class BatchResult:
    """What :meth:`FraudGraph.add_many` did.

    ``rows``: records read; ``added``: applications newly stored; ``duplicates``: application
    ids already stored (ignored); ``errors``: one :class:`~kyc.errors.InvalidRecord` per
    refused row (``row`` = 0-based position in the source, ``field`` = the offending field).
    """

    rows: int
    added: int
    duplicates: int
    errors: tuple[InvalidRecord, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"rows": self.rows, "added": self.added, "duplicates": self.duplicates,
                "errors": [e.to_dict() for e in self.errors]}


class FraudGraph:
    """Applicant-identifier graph with ring detection, velocity counters and a store.

    Args:
        secret: the deployment HMAC secret (bytes or str, >= 16 bytes), or a ready
            :class:`~kyc.graph.identifiers.IdentifierHasher`.
        store: ``None`` or ``":memory:"`` (in memory), a path (SQLite, WAL mode, created if
            absent) or any :class:`~kyc.graph.store.Store`.
        config: linking, community and scoring parameters (:class:`GraphConfig`).
        default_region: region for phone numbers without a country prefix.

    Raises :class:`~kyc.errors.ConfigError` for a short secret or a store written under a
    different secret, :class:`~kyc.errors.StoreError` when the store cannot be opened.
    """

    def __init__(
        self,
        secret: bytes | str | IdentifierHasher,
        store: Store | str | os.PathLike[str] | None = None,
        config: GraphConfig | None = None,
        *,
        default_region: str = "US",
    ) -> None:
        if config is not None and not isinstance(config, GraphConfig):
            raise ConfigError(f"config must be a GraphConfig, not {type(config).__name__}")
        self.config = config or GraphConfig()
        self._hasher = (secret if isinstance(secret, IdentifierHasher)
                        else IdentifierHasher(secret, default_region=default_region))
        self._owns_store = not isinstance(store, Store)
        self._store = open_store(store)
        self._lock = threading.RLock()
        check = self._hasher.token_normalised(IdKind.DEVICE, "kyc-graph-secret-check")
        stored = self._store.get_meta(_META_SECRET)
        if stored is None:
            self._store.set_meta(_META_SECRET, check)
        elif stored != check:
            raise ConfigError(
                "this store was written under a different HMAC secret: its tokens would never "
                "match new ones; open it with its own secret"
            )
        if self._store.get_meta(_META_CONFIG) != self.config.to_dict():
            self._store.set_meta(_META_CONFIG, self.config.to_dict())  # for the record
        self._fraud: set[str] = set(self._store.get_meta(_META_FRAUD, []))
        self._loaded = False
        self._loading = False
        self._reset_state()

    # -- state -------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._velocity = VelocityIndex()
        self._links: dict[str, dict[str, int]] = {}
        # identifiers held by >= 2 applicants -> {applicant: role bits}; held by one -> it
        self._holders: dict[str, dict[str, int]] = {}
        self._single: dict[str, str] = {}
        # own-phone holders of shared phone tokens (for CONTACT_IN_FLAGGED_RING)
        self._owners: dict[str, set[str]] = {}
        self._times: dict[str, list[int]] = {}
        self._thin: dict[str, tuple[int, str, bool]] = {}
        self._adj: dict[str, dict[str, int]] = {}
        self._uf: UnionFind[str] = UnionFind()
        self._analysis: dict[str, ComponentAnalysis] = {}
        self._pending: set[str] = set()
        self._ring_of: dict[str, RingFeatures] = {}
        self._densities: list[float] = []
        self._max_ts: int | None = None

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._reset_state()
        self._loading = True  # nothing is analysed yet: skip per-application invalidation
        try:
            for h in self._store.applications():
                if h.application_id not in self._velocity:
                    self._apply(h)
        finally:
            self._loading = False
        self._pending = set(self._links)
        self._loaded = True

    def _apply(self, h: HashedApplication) -> None:
        """Index one new application (its id is not yet indexed)."""
        cfg = self.config
        cap = cfg.hub_degree_cap
        ev = cfg.evidence_units
        self._velocity.add(h)
        if self._max_ts is None or h.ts > self._max_ts:
            self._max_ts = int(h.ts)
        a = h.applicant
        self._uf.add(a)
        links = self._links.setdefault(a, {})
        insort(self._times.setdefault(a, []), int(h.ts))
        if h.thin_file is not None:
            key = (int(h.ts), h.application_id, bool(h.thin_file))
            old_thin = self._thin.get(a)
            if old_thin is None or key[:2] > old_thin[:2]:
                self._thin[a] = key
        self._touch(a)
        single = self._single
        holders = self._holders
        for role, tok in h.links:
            bit = _BIT.get(role)
            if bit is None:
                raise ConfigError(f"application {h.application_id!r} has unknown role {role!r}")
            old = links.get(tok)
            if old is not None:  # a known identifier of this applicant, maybe a new role
                new = old | bit
                if new == old:
                    continue
                links[tok] = new
                hs = holders.get(tok)
                if hs is None:  # nobody else holds it
                    continue
                hs[a] = new
                if new & _PHONE_BIT:
                    self._owners.setdefault(tok, set()).add(a)
                if len(hs) <= cap and ev[new] != ev[old]:
                    # pair evidence changed; it matters only where a's links are, which is
                    # a's component (touched above) or one it is being merged with
                    for b, bb in hs.items():
                        if b != a:
                            delta = min(ev[new], ev[bb]) - min(ev[old], ev[bb])
                            if delta:
                                self._add_evidence(a, b, delta)
                continue
            links[tok] = bit
            hs = holders.get(tok)
            if hs is None:
                first = single.pop(tok, None)
                if first is None:  # first holder: nothing links through it yet
                    single[tok] = a
                    continue
                first_bits = self._links[first][tok]
                hs = holders[tok] = {first: first_bits}
                if first_bits & _PHONE_BIT:
                    self._owners.setdefault(tok, set()).add(first)
            hs[a] = bit
            if bit & _PHONE_BIT:
                self._owners.setdefault(tok, set()).add(a)
            deg = len(hs)
            if deg <= cap:
                for b, bb in hs.items():
                    if b != a:
                        self._add_evidence(a, b, min(ev[bit], ev[bb]))
                self._touch_holders(tok, everyone=deg == 2)
            elif deg == cap + 1:
                old_holders = [(b, bb) for b, bb in hs.items() if b != a]
                broken = False
                for x in range(len(old_holders)):
                    bx, vx = old_holders[x]
                    for y in range(x + 1, len(old_holders)):
                        by, vy = old_holders[y]
                        broken |= self._add_evidence(bx, by, -min(ev[vx], ev[vy]))
                if broken:
                    self._rebuild([b for b, _ in old_holders])
                self._touch_holders(tok)
            # beyond cap + 1 a hub's growth changes nothing but the new holder's component

    def _degree(self, tok: str) -> int:
        """Distinct applicants holding ``tok`` (1 for a singleton, 0 if unknown)."""
        hs = self._holders.get(tok)
        if hs is not None:
            return len(hs)
        return 1 if tok in self._single else 0

    def _add_evidence(self, a: str, b: str, delta: int) -> bool:
        """Change the pair's evidence; union on a new link. Returns True if a link broke."""
        thr = self.config.threshold_units
        adj_a = self._adj.setdefault(a, {})
        old = adj_a.get(b, 0)
        new = old + delta
        adj_b = self._adj.setdefault(b, {})
        if new:
            adj_a[b] = new
            adj_b[a] = new
        else:
            adj_a.pop(b, None)
            adj_b.pop(a, None)
        if old < thr <= new:
            ra, rb = self._uf.find(a), self._uf.find(b)
            if ra != rb:
                if not self._loading:
                    self._invalidate(ra)
                    self._invalidate(rb)
                    self._pending.add(a)
                self._uf.union(a, b)
        return new < thr <= old

    def _rebuild(self, seeds: Iterable[str]) -> None:
        """Recompute the components holding ``seeds`` from the current links."""
        thr = self.config.threshold_units
        roots = {self._uf.find(s) for s in seeds}
        everyone: list[str] = []
        for r in roots:
            everyone.extend(self._uf.members(r))
            self._invalidate(r)
        self._uf.reset(everyone)
        for m in everyone:
            for nb, e in self._adj.get(m, {}).items():
                if e >= thr:
                    self._uf.union(m, nb)
        self._pending.update(everyone)

    def _invalidate(self, root: str) -> None:
        an = self._analysis.pop(root, None)
        if an is None:
            return
        for rf in an.rings:
            for m in rf.members:
                self._ring_of.pop(m, None)
            i = bisect_left(self._densities, rf.density)
            if i < len(self._densities) and self._densities[i] == rf.density:
                del self._densities[i]
        self._pending.update(an.members)

    def _touch(self, a: str) -> None:
        if self._loading:
            return
        self._invalidate(self._uf.find(a))
        self._pending.add(a)

    def _touch_holders(self, tok: str, *, everyone: bool = True) -> None:
        """Mark for re-analysis the components of ``tok``'s holders.

        ``everyone=False`` (a non-hub identifier's degree changed, which changes its rarity
        weight) touches only components holding it at least twice: elsewhere the token
        enters no pair, no ring block and no hub flag, so their analysis cannot change.
        """
        if self._loading:
            return
        hs = self._holders.get(tok)
        if not hs:
            return
        if everyone:
            for b in hs:
                self._touch(b)
            return
        find = self._uf.find
        roots: dict[str, list[str]] = {}
        for b in hs:
            roots.setdefault(find(b), []).append(b)
        for group in roots.values():
            if len(group) >= 2:
                self._touch(group[0])

    def _view(self, members: Iterable[str]) -> ComponentView:
        hub = self.config.hub_degree_cap + 1
        mem = tuple(sorted(members))
        holders = self._holders
        links = []
        degree: dict[str, int] = {}
        for m in mem:
            row = []
            for tok, bits in sorted(self._links[m].items()):
                hs = holders.get(tok)
                if hs is not None:
                    d = len(hs)
                    row.append((tok, bits))
                    degree[tok] = d if d < hub else hub  # GraphConfig.effective_degree
            links.append(tuple(row))
        thin = tuple(-1 if m not in self._thin else int(self._thin[m][2]) for m in mem)
        return ComponentView(
            members=mem,
            links=tuple(links),
            times=tuple(tuple(self._times[m]) for m in mem),
            thin=thin,
            fraud=tuple(m in self._fraud for m in mem),
            degree=degree,
        )

    def _clean(self) -> None:
        """Analyse every component touched since the last call (those big enough for rings)."""
        min_size = self.config.min_ring_size
        while self._pending:
            x = self._pending.pop()
            root = self._uf.find(x)
            if root in self._analysis:
                continue
            members = self._uf.members(root)
            if len(members) < min_size:
                continue
            an = analyse_component(self._view(members), self.config)
            self._analysis[root] = an
            for rf in an.rings:
                for m in rf.members:
                    self._ring_of[m] = rf
                insort(self._densities, rf.density)

    def _scorer(self) -> RingScorer:
        owners = self._owners

        def phone_owners(tok: str) -> list[str]:
            return sorted(owners.get(tok, ()))

        return RingScorer(self.config, self._densities, phone_owners, self._ring_of.get)

    # -- public API --------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The underlying store (hashed applications and meta)."""
        return self._store

    def applicant_token(self, applicant_id: str) -> str:
        """The ``applicant:`` token of a raw applicant id (``InvalidRecord`` if malformed)."""
        return self._hasher.token(IdKind.APPLICANT, applicant_id)

    def _hash(self, application: Application | Mapping[str, Any]) -> HashedApplication:
        if isinstance(application, Application):
            app = application
        elif isinstance(application, Mapping):
            app = Application.from_mapping(application)
        else:
            raise InvalidRecord(
                f"an application must be an Application or a mapping, "
                f"not {type(application).__name__}"
            )
        return hash_application(app, self._hasher)

    def add(self, application: Application | Mapping[str, Any]) -> RingReport:
        """Add one application and return its applicant's :class:`RingReport`.

        The application is committed to the store before the in-memory state changes. A
        known ``application_id`` changes nothing (the report is returned all the same).
        Raises :class:`~kyc.errors.InvalidRecord` for an invalid record.
        """
        h = self._hash(application)
        with self._lock:
            self._ensure_loaded()
            if h.application_id not in self._velocity:
                self._store.add([h])
                self._apply(h)
            self._clean()
            return self._report(h.applicant, h.application_id, at=h.ts)

    def add_many(
        self,
        source: Any,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Add applications from ``source`` (CSV/Parquet path, DataFrame, Arrow table, iterable
        of mappings or :class:`Application`), committing every 1,000 rows.

        A bad row is reported in :attr:`BatchResult.errors` with its row number and the rest
        goes on. ``progress(n)`` is called after each chunk with the rows it held. Rings are
        recomputed lazily (on the next :meth:`rings`, :meth:`report` or :meth:`add`).
        """
        errors: list[InvalidRecord] = []
        rows = added = dups = 0
        chunk: list[HashedApplication] = []
        chunk_rows = 0

        def flush() -> None:
            nonlocal added, dups, chunk, chunk_rows
            n_new = self._store_chunk(chunk)
            added += n_new
            dups += len(chunk) - n_new
            if progress is not None:
                progress(chunk_rows)
            chunk = []
            chunk_rows = 0

        for row, item in enumerate(iter_applications(source)):
            rows += 1
            chunk_rows += 1
            if isinstance(item, InvalidRecord):
                errors.append(item if item.row is not None
                              else InvalidRecord(item.message, row=row, field=item.field))
            else:
                try:
                    chunk.append(hash_application(item, self._hasher))
                except InvalidRecord as exc:
                    errors.append(InvalidRecord(exc.message, row=row, field=exc.field))
            if chunk_rows >= _CHUNK:
                flush()
        if chunk_rows:
            flush()
        return BatchResult(rows=rows, added=added, duplicates=dups, errors=tuple(errors))

    def add_hashed(
        self,
        apps: Iterable[HashedApplication],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Add applications that are already hashed (for example copied from another store
        hashed under the same secret), committing every 1,000. Returns a :class:`BatchResult`.

        Raises :class:`~kyc.errors.ConfigError` for an item that is not a
        :class:`~kyc.graph.records.HashedApplication`.
        """
        rows = added = dups = 0
        chunk: list[HashedApplication] = []

        def flush() -> None:
            nonlocal added, dups, chunk
            n_new = self._store_chunk(chunk)
            added += n_new
            dups += len(chunk) - n_new
            if progress is not None:
                progress(len(chunk))
            chunk = []

        for h in apps:
            if not isinstance(h, HashedApplication):
                raise ConfigError(f"add_hashed takes HashedApplication items, not "
                                  f"{type(h).__name__}")
            rows += 1
            chunk.append(h)
            if len(chunk) >= _CHUNK:
                flush()
        if chunk:
            flush()
        return BatchResult(rows=rows, added=added, duplicates=dups, errors=())

    def _store_chunk(self, chunk: list[HashedApplication]) -> int:
        """Commit a chunk; index the new ones if the in-memory state is loaded."""
        with self._lock:
            if not self._loaded:
                return self._store.add(chunk)
            fresh: dict[str, HashedApplication] = {}
            for h in chunk:
                if h.application_id not in self._velocity:
                    fresh.setdefault(h.application_id, h)
            todo = list(fresh.values())
            n_new = self._store.add(todo)
            for h in todo:
                self._apply(h)
            return n_new

    def rings(self) -> list[Ring]:
        """Every ring candidate, scored, highest score first (ties by ring id)."""
        with self._lock:
            self._ensure_loaded()
            self._clean()
            scorer = self._scorer()
            seen: set[str] = set()
            out: list[Ring] = []
            for an in self._analysis.values():
                for rf in an.rings:
                    if rf.ring_id not in seen:
                        seen.add(rf.ring_id)
                        out.append(scorer.score(rf))
            out.sort(key=lambda r: (-r.score, r.ring_id))
            return out

    def scan(self, *, progress: Callable[[int], None] | None = None) -> list[Ring]:
        """Recompute every ring in batch from the store; the same rings as :meth:`rings`.

        Vectorised pair enumeration and scipy components over the whole store, then the same
        per-component analysis as the incremental path. ``progress(n)`` is called as
        components are analysed. Returns the rings, highest score first.
        """
        with self._lock:
            return _batch_rings(_store_graph(self._store), self.config, set(self._fraud),
                                progress=progress)

    def report(self, applicant_id: str) -> RingReport:
        """The :class:`RingReport` of an applicant (by raw applicant id).

        An applicant the graph has never seen gets an empty report (no ring, component size
        0, no reasons).
        """
        token = self.applicant_token(applicant_id)
        with self._lock:
            self._ensure_loaded()
            self._clean()
            return self._report(token, None, at=None)

    def velocity(self, applicant_id: str, at: datetime | int | None = None) -> dict[str, int]:
        """Multi-lender counters of an applicant (``als_{window}_{id|cell|device}_...``).

        ``at``: end of the windows (default: the latest application time the graph has seen).
        """
        token = self.applicant_token(applicant_id)
        with self._lock:
            self._ensure_loaded()
            t = at if at is not None else (self._max_ts or 0)
            return self._velocity.applicant_features(token, t)

    def rescan(
        self, applicant_id: str, since: datetime | int, at: datetime | int | None = None
    ) -> RescanReport:
        """Pre-disbursement re-scan: what changed for the applicant in ``(since, at]``."""
        token = self.applicant_token(applicant_id)
        with self._lock:
            self._ensure_loaded()
            return self._velocity.rescan(token, since, at)

    def mark_fraud(self, applicant_ids: Iterable[str]) -> None:
        """Record confirmed frauds (raw applicant ids); persisted in the store's meta.

        Rings holding them, or within ``fraud_hops`` links, get ``CONFIRMED_FRAUD_*`` /
        ``NEAR_CONFIRMED_FRAUD_*`` evidence. Labels of applicants not seen yet apply when
        they arrive.
        """
        if isinstance(applicant_ids, str):
            raise ConfigError("mark_fraud takes an iterable of applicant ids, not one string")
        tokens = {self.applicant_token(a) for a in applicant_ids}
        with self._lock:
            new = tokens - self._fraud
            if not new:
                return
            # persist first: if the store refuses (StoreLocked, ...) memory stays as it was,
            # so a retry still sees these labels as new and saves them
            self._store.set_meta(_META_FRAUD, sorted(self._fraud | new))
            self._fraud |= new
            if self._loaded:
                for t in new:
                    if t in self._uf:
                        self._touch(t)

    def fraud_labels(self) -> frozenset[str]:
        """Tokens of the applicants marked as confirmed fraud."""
        with self._lock:
            return frozenset(self._fraud)

    def summary(self) -> dict[str, Any]:
        """Counts for dashboards: applications, applicants, identifiers, hubs, rings."""
        with self._lock:
            self._ensure_loaded()
            rings = self.rings()
            cap = self.config.hub_degree_cap
            return {
                "applications": len(self._velocity),
                "applicants": len(self._links),
                "shared_identifiers": len(self._holders),
                "hubs": sum(1 for h in self._holders.values() if len(h) > cap),
                "ring_candidates": len(rings),
                "flagged_rings": sum(1 for r in rings if r.flagged),
                "fraud_labels": len(self._fraud),
            }

    def close(self) -> None:
        """Close the store if this graph opened it."""
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> FraudGraph:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FraudGraph(store={self._store!r}, loaded={self._loaded})"

    # -- reports -----------------------------------------------------------------------------

    def _report(self, a: str, application_id: str | None, at: int | None) -> RingReport:
        cfg = self.config
        sc = cfg.scoring
        if a not in self._links:
            return RingReport(a, application_id, None, 0, (), (), None, {}, 0.0, False, ())
        root = self._uf.find(a)
        members = self._uf.members(root)
        an = self._analysis.get(root)
        if an is None:
            an = analyse_component(self._view(members), cfg)
        scorer = self._scorer()
        rf = self._ring_of.get(a)
        ring = scorer.score(rf) if rf is not None else None
        mine = self._links[a]
        cap = cfg.hub_degree_cap
        ev_scale = 1.0 / 1000.0
        thr = cfg.threshold_units
        links = []
        for b, e in self._adj.get(a, {}).items():
            theirs = self._links[b]
            shared = tuple(sorted(
                (t, t.partition(":")[0]) for t in mine
                if t in theirs and self._degree(t) <= cap
            ))
            links.append(Link(b, shared, round(e * ev_scale, 6), e >= thr))
        links.sort(key=lambda lk: (-lk.evidence, lk.other))
        hubs = tuple(sorted(t for t in mine if self._degree(t) > cap))
        hops = an.fraud_hops.get(a)
        items: list[tuple[float, Reason]] = []
        if a in self._fraud:
            items.append((sc.confirmed_fraud_weight, Reason(
                "CONFIRMED_FRAUD", "this applicant is a confirmed fraud", {"hops": 0})))
        elif hops is not None:
            items.append((sc.near_fraud_weight, Reason(
                f"NEAR_CONFIRMED_FRAUD_{cfg.fraud_hops}_HOPS",
                f"a confirmed fraud is {hops} link(s) away",
                {"hops": hops, "limit": cfg.fraud_hops},
            )))
        hits: dict[str, set[str]] = {}
        for tok, bits in sorted(mine.items()):
            if not bits & _CONTACT_BIT:
                continue
            for owner in sorted(self._owners.get(tok, ())):
                other = self._ring_of.get(owner)
                if owner == a or other is None or (rf is not None and other.ring_id == rf.ring_id):
                    continue
                if scorer.base_flagged(other):
                    hits.setdefault(tok, set()).add(other.ring_id)
        if hits:
            items.append((sc.contact_weight, Reason(
                "CONTACT_IN_FLAGGED_RING",
                f"{len(hits)} emergency contact(s) belong to members of flagged rings",
                {"contacts": len(hits), "tokens": sorted(hits),
                 "rings": sorted({r for rs in hits.values() for r in rs})},
            )))
        score = scorer.combine(ring.score if ring is not None else 0.0, *(w for w, _ in items))
        reasons = list(ring.reasons) if ring is not None else []
        for w, r in items:
            reasons.append(Reason(r.code, r.message, {**r.evidence, "weight": w}))
        t = at if at is not None else self._times[a][-1]
        return RingReport(
            applicant=a,
            application_id=application_id,
            ring=ring,
            component_size=len(members),
            links=tuple(links),
            hubs=hubs,
            fraud_hops=hops,
            velocity=self._velocity.applicant_features(a, t),
            score=score,
            flagged=score >= sc.flag_threshold,
            reasons=tuple(reasons),
        )


# --- batch path ----------------------------------------------------------------------------


def _take(seq: Sequence[str], positions: npt.NDArray[Any]) -> list[str]:
    """Items of a token sequence at ``positions`` (vectorised for a :class:`TokenView`)."""
    if isinstance(seq, TokenView):
        return seq.take(positions)
    return [seq[i] for i in positions.tolist()]


def _store_graph(store: Store) -> BipartiteGraph:
    """The bipartite graph of everything in ``store``: from its columnar form when it has one
    (:meth:`~kyc.graph.store.SQLiteStore.columns`), else from its application objects."""
    columns = getattr(store, "columns", None)
    if callable(columns):
        return graph_from_columns(columns())
    return build_graph(store.applications())


def _batch_rings(
    apps: Iterable[HashedApplication] | BipartiteGraph,
    config: GraphConfig,
    fraud: set[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Ring]:
    """Rings of a set of applications (or of their graph), computed in batch (see
    :meth:`FraudGraph.scan`)."""
    cfg = config
    g = apps if isinstance(apps, BipartiteGraph) else build_graph(apps)
    pairs = candidate_pairs(g, cfg)
    labels = linked_components(g, pairs)
    sizes = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    big = np.flatnonzero(sizes >= cfg.min_ring_size)
    app_ptr = g.app_ptr()
    degree = g.degree
    eff = {int(d): cfg.effective_degree(int(d)) for d in np.unique(degree).tolist()}
    order = np.argsort(labels, kind="stable")
    starts = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    analyses: list[ComponentAnalysis] = []
    e_id = g.edge_id
    e_roles = g.edge_roles
    ids = g.identifiers
    for k, c in enumerate(big.tolist()):
        codes = order[starts[c]:starts[c + 1]].tolist()
        pairs_sorted = sorted((g.applicants[x], x) for x in codes)
        mem = tuple(t for t, _ in pairs_sorted)
        links_rows = []
        deg_map: dict[str, int] = {}
        times = []
        thin = []
        for _, x in pairs_sorted:
            lo, hi = int(app_ptr[x]), int(app_ptr[x + 1])
            row = sorted((ids[j], int(r)) for j, r in zip(e_id[lo:hi].tolist(),
                                                          e_roles[lo:hi].tolist(), strict=True))
            for j in e_id[lo:hi].tolist():
                deg_map[ids[j]] = eff[int(degree[j])]
            links_rows.append(tuple(row))
            times.append(tuple(g.times[g.times_ptr[x]:g.times_ptr[x + 1]].tolist()))
            thin.append(int(g.thin[x]))
        view = ComponentView(mem, tuple(links_rows), tuple(times), tuple(thin),
                             tuple(m in fraud for m in mem), deg_map)
        analyses.append(analyse_component(view, cfg))
        if progress is not None and (k + 1) % 100 == 0:
            progress(100)
    if progress is not None and big.size % 100:
        progress(int(big.size % 100))

    ring_of: dict[str, RingFeatures] = {}
    feats: list[RingFeatures] = []
    for an in analyses:
        for rf in an.rings:
            feats.append(rf)
            for m in rf.members:
                ring_of[m] = rf
    densities = sorted(rf.density for rf in feats)
    # own-phone holders of every shared phone token (vectorised, then one dict)
    phone_edges = np.flatnonzero(g.edge_roles.astype(np.int64) & _PHONE_BIT)
    by_id = np.argsort(g.edge_id[phone_edges], kind="stable")
    owners_of: dict[str, list[str]] = {}
    q_sorted = phone_edges[by_id]
    for tok, owner in zip(_take(ids, e_id[q_sorted]), _take(g.applicants, g.edge_app[q_sorted]),
                          strict=True):
        owners_of.setdefault(tok, []).append(owner)

    def phone_owners(tok: str) -> list[str]:
        return sorted(owners_of.get(tok, ()))

    scorer = RingScorer(cfg, densities, phone_owners, ring_of.get)
    out = [scorer.score(rf) for rf in feats]
    out.sort(key=lambda r: (-r.score, r.ring_id))
    return out
