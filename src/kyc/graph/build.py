"""The bipartite applicant x identifier graph, hub damping and the evidence rule.

Applicants are never projected onto an applicant-applicant graph wholesale: one hub (a carrier
NAT IP used by 110 k applicants) alone would give 6e9 pairs. Instead :func:`build_graph` keeps
integer-coded *bipartite* edge arrays (applicant, identifier, roles), and :func:`candidate_pairs`
enumerates applicant pairs only inside identifiers whose degree is at most the hub cap, so the
number of pairs is bounded by ``cap / 2`` per link.

Rules (all configurable in :class:`GraphConfig`):

- **Singletons dropped.** An identifier seen by one applicant links nobody; it is not kept.
- **Degree** of an identifier is the number of *distinct applicants* holding it (one person
  applying ten times from one phone does not make the phone a hub).
- **Hubs.** An identifier held by more than ``hub_degree_cap`` applicants (default 50) links
  nobody. It stays in the graph as evidence (a ring's members may share a hub-sized mule
  card) and is reported as a hub.
- **Evidence rule.** Each shared non-hub identifier contributes the evidence weight of its role
  (:data:`kyc.graph.identifiers.ROLE_WEIGHT`: device, card, applicant 1.0; own phone, email
  0.75; contact phone, ip, address 0.5). When the two applicants hold the token in different
  roles (A's own phone is B's emergency contact) the weaker role counts. Two applicants are
  *linked* when their summed evidence reaches ``link_threshold`` (default 1.0): one strong
  identifier, a phone with anything else, or two weak ones. A shared office IP alone never
  links.

The cap and the evidence rule work together. Measured on :mod:`kyc.graph.synth` at 10^5
applications (66 k applicants, 45 planted rings of 5-50, NAT/Wi-Fi/call-centre/kiosk hubs):
any shared identifier linking puts 98.5 % of applicants in one component and isolates no ring;
a cap alone (20, 50 or 100, no evidence rule) still leaves a 97 % giant component (households,
offices and contacts chain through weak links); with the evidence rule the largest component
is 45-50 applicants (a ring) and the share of rings isolated as whole components is 0.86-0.91
with cap 20, 0.95-0.98 with 30 and 1.00 with 50 or 100. Rings of up to 50 share cards,
controller phones and drop addresses held by up to 50 members, which a cap of 20 cuts; hence
the default of 50 (DESIGN.md's 20 was measured without an evidence rule).
- **Rarity weight.** Linked pairs carry a weight for community detection: the sum over shared
  non-hub identifiers of ``evidence * 1 / log(degree + rarity_offset)`` (FRAUDAR's column
  weighting; ``rarity_offset`` 5). Weights are computed in exact integer units
  (:data:`EVIDENCE_UNITS`, :data:`RARITY_UNITS`) so the batch and the incremental paths agree
  to the last bit whatever the summation order.

>>> from kyc.graph.records import HashedApplication
>>> dev, ip = "device:" + "d" * 32, "ip:" + "1" * 32
>>> apps = [HashedApplication(f"a{i}", f"applicant:{i:032d}", "L1", "bank", 1_700_000_000 + i,
...                           (("device", dev), ("ip", ip)) if i < 2 else (("ip", ip),))
...         for i in range(3)]
>>> g = build_graph(apps)
>>> g.n_applicants, g.n_identifiers, int(g.degree.sum())
(3, 2, 5)
>>> p = candidate_pairs(g)
>>> p.a.tolist(), p.b.tolist(), p.linked.tolist()
([0, 0, 1], [1, 2, 2], [True, False, False])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from kyc.errors import ConfigError
from kyc.graph.identifiers import LINK_EVIDENCE_THRESHOLD, ROLE_WEIGHT, IdKind, Role
from kyc.graph.records import HashedApplication

__all__ = [
    "EVIDENCE_UNITS",
    "KINDS",
    "RARITY_UNITS",
    "ROLES",
    "BipartiteGraph",
    "GraphConfig",
    "PairTable",
    "RingScoring",
    "build_graph",
    "candidate_pairs",
    "component_sizes",
    "linked_components",
    "plain_components",
    "role_bits",
    "role_names",
]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolA = npt.NDArray[np.bool_]

#: Role names in bit order: a role bitmask has bit ``i`` set for ``ROLES[i]``.
ROLES: Final[tuple[str, ...]] = tuple(r.value for r in Role)
#: Identifier kinds (token prefixes), in code order.
KINDS: Final[tuple[str, ...]] = tuple(k.value for k in IdKind)
#: Evidence weights are integers in units of 1/EVIDENCE_UNITS.
EVIDENCE_UNITS: Final = 1000
#: Rarity weights ``1/log(degree + c)`` are integers in units of 1/RARITY_UNITS.
RARITY_UNITS: Final = 1 << 20

_ROLE_BIT: Final[Mapping[str, int]] = MappingProxyType({r: 1 << i for i, r in enumerate(ROLES)})
_KIND_CODE: Final[Mapping[str, int]] = MappingProxyType({k: i for i, k in enumerate(KINDS)})


def role_bits(roles: Iterable[str]) -> int:
    """Bitmask of role names (``ROLES`` order); ``ConfigError`` for an unknown role.

    >>> role_bits(["device", "phone"]) == (1 << ROLES.index("device")) | (1 << ROLES.index("phone"))
    True
    """
    out = 0
    for r in roles:
        bit = _ROLE_BIT.get(r)
        if bit is None:
            raise ConfigError(f"unknown link role {r!r}; expected one of {', '.join(ROLES)}")
        out |= bit
    return out


@functools.lru_cache(maxsize=1 << len(ROLES))
def role_names(bits: int) -> tuple[str, ...]:
    """Role names set in a bitmask, in ``ROLES`` order.

    >>> role_names(role_bits(["contact", "phone"]))
    ('phone', 'contact')
    """
    return tuple(r for i, r in enumerate(ROLES) if bits >> i & 1)


@dataclass(frozen=True)
class RingScoring:
    """Weights and saturation points of the transparent ring score (see :mod:`kyc.graph.rings`).

    Each piece of evidence has a *strength* in [0, 1] and a *weight* in [0, 1]; the ring score
    is the noisy-OR ``1 - prod(1 - weight * strength)``, so every reason's contribution can be
    read off its evidence. Defaults were tuned on :mod:`kyc.graph.synth` data (rings 5-50 with
    camouflage, hubs, households, offices); see ``benchmarks/`` for the figures.

    - ``shared_strong``: the most ring members sharing one device or card. Strength
      ``(n - 1) / (strong_full - 1)``; 2 members = a couple sharing a tablet, weak.
    - ``burst``: the most distinct members applying within ``burst_window_s`` (3 h).
      Strength ``(n - 2) / (full - 2)`` with ``full = min(burst_full, max(size,
      burst_full_min))``: a whole ring of 5 applying together is full lockstep, a household
      of 3 signing up the same day is not. The 24 h window counts with the same formula
      times ``burst_long_factor`` (0.75).
    - ``dense``: the ring's FRAUDAR block density ranks in the top 1/5/10 % of all ring
      candidates: strength 1.0 / 0.6 / 0.3.
    - ``thin_file``: share of thin-file members above ``thin_file_floor``, scaled to [0, 1].
    - ``confirmed_fraud``: a member is a confirmed fraud (labels from ``mark_fraud``).
    - ``near_fraud``: a member is within ``fraud_hops`` links of a confirmed fraud.
    - ``contact``: a member's emergency contact is the own phone of a member of another
      flagged ring.
    """

    shared_strong_weight: float = 0.3
    strong_full: int = 5
    burst_weight: float = 0.55
    burst_full: int = 8
    burst_full_min: int = 5
    burst_long_factor: float = 0.75
    dense_weight: float = 0.2
    thin_file_weight: float = 0.25
    thin_file_floor: float = 0.5
    confirmed_fraud_weight: float = 0.7
    near_fraud_weight: float = 0.35
    contact_weight: float = 0.3
    flag_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("shared_strong_weight", "burst_weight", "burst_long_factor", "dense_weight",
                     "thin_file_weight",
                     "confirmed_fraud_weight", "near_fraud_weight", "contact_weight",
                     "flag_threshold", "thin_file_floor"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"RingScoring.{name} must be a number in [0, 1], got {v!r}")
        if self.thin_file_floor >= 1.0:
            raise ConfigError("RingScoring.thin_file_floor must be below 1")
        if not isinstance(self.strong_full, int) or self.strong_full < 2:
            raise ConfigError(
                f"RingScoring.strong_full must be an int >= 2, got {self.strong_full!r}")
        if not isinstance(self.burst_full, int) or self.burst_full < 3:
            raise ConfigError(
                f"RingScoring.burst_full must be an int >= 3, got {self.burst_full!r}")
        if not isinstance(self.burst_full_min, int) or self.burst_full_min < 3:
            raise ConfigError(
                f"RingScoring.burst_full_min must be an int >= 3, got {self.burst_full_min!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _default_role_weights() -> Mapping[str, float]:
    return MappingProxyType({r.value: float(w) for r, w in ROLE_WEIGHT.items()})


@dataclass(frozen=True)
class GraphConfig:
    """How the graph links applicants, finds rings and scores them (immutable).

    Attributes:
        hub_degree_cap: identifiers held by more applicants than this link nobody (they are
            hubs, kept as evidence). Default 50 (see the module docstring for the figures).
        rarity_offset: ``c`` in the rarity weight ``1 / log(degree + c)`` (FRAUDAR uses 5).
        role_weights: evidence of one shared identifier per role (default
            :data:`kyc.graph.identifiers.ROLE_WEIGHT`).
        link_threshold: summed evidence from which two applicants are linked (default 1.0).
        min_ring_size: smallest community reported as a ring candidate (default 3).
        resolution: CPM resolution of Leiden inside components. A community holds together
            when its internal weighted link density beats it (two groups of sizes a and b
            merge when the links between them weigh more than ``resolution * a * b``).
            Rarity-weighted links weigh 0.1-1.5; 0.01 kept every planted ring of up to 50
            whole on synth data (0.05 split the large ones along their device groups).
        seed: Leiden seed (results are deterministic for a given graph and seed).
        leiden_trials: independent Leiden runs per component; the best is kept.
        fraud_hops: links from a confirmed fraud within which an applicant is "near" it.
        burst_window_s: the short burst window (3 h); ``burst_long_window_s`` the long one.
        dense_top_pct: percentiles of ring density that earn a ``DENSE_BLOCK_TOP_{p}PCT``.
        scoring: the ring score's weights (:class:`RingScoring`).
    """

    hub_degree_cap: int = 50
    rarity_offset: float = 5.0
    role_weights: Mapping[str, float] = field(default_factory=_default_role_weights)
    link_threshold: float = LINK_EVIDENCE_THRESHOLD
    min_ring_size: int = 3
    resolution: float = 0.01
    seed: int = 0
    leiden_trials: int = 1
    fraud_hops: int = 2
    burst_window_s: int = 3 * 3600
    burst_long_window_s: int = 24 * 3600
    dense_top_pct: tuple[float, ...] = (1.0, 5.0, 10.0)
    scoring: RingScoring = field(default_factory=RingScoring)

    def __post_init__(self) -> None:
        if not isinstance(self.hub_degree_cap, int) or self.hub_degree_cap < 2:
            raise ConfigError(f"hub_degree_cap must be an int >= 2, got {self.hub_degree_cap!r}")
        if not self.rarity_offset > 1.0:
            raise ConfigError(
                f"rarity_offset must be > 1 (log(degree + c) > 0), got {self.rarity_offset!r}")
        weights = dict(self.role_weights)
        unknown = sorted(set(weights) - set(ROLES))
        if unknown:
            raise ConfigError(f"role_weights has unknown roles {unknown}; roles are {list(ROLES)}")
        for r, w in weights.items():
            if not isinstance(w, int | float) or not 0.0 <= float(w) <= 10.0:
                raise ConfigError(f"role_weights[{r!r}] must be a number in [0, 10], got {w!r}")
        full = {r: float(weights.get(r, 0.0)) for r in ROLES}
        object.__setattr__(self, "role_weights", MappingProxyType(full))
        if not isinstance(self.link_threshold, int | float) or not self.link_threshold > 0:
            raise ConfigError(f"link_threshold must be > 0, got {self.link_threshold!r}")
        if not isinstance(self.min_ring_size, int) or self.min_ring_size < 2:
            raise ConfigError(f"min_ring_size must be an int >= 2, got {self.min_ring_size!r}")
        if not isinstance(self.resolution, int | float) or not self.resolution > 0:
            raise ConfigError(f"resolution must be > 0, got {self.resolution!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.leiden_trials, int) or self.leiden_trials < 1:
            raise ConfigError(f"leiden_trials must be an int >= 1, got {self.leiden_trials!r}")
        if not isinstance(self.fraud_hops, int) or self.fraud_hops < 0:
            raise ConfigError(f"fraud_hops must be an int >= 0, got {self.fraud_hops!r}")
        if not (isinstance(self.burst_window_s, int) and isinstance(self.burst_long_window_s, int)
                and 0 < self.burst_window_s <= self.burst_long_window_s):
            raise ConfigError(
                "burst windows must be ints with 0 < burst_window_s <= burst_long_window_s")
        pcts = tuple(float(p) for p in self.dense_top_pct)
        if not pcts or any(not 0 < p <= 100 for p in pcts) or list(pcts) != sorted(set(pcts)):
            raise ConfigError("dense_top_pct must be increasing percentages in (0, 100]")
        object.__setattr__(self, "dense_top_pct", pcts)
        if not isinstance(self.scoring, RingScoring):
            raise ConfigError("scoring must be a RingScoring")

    # -- integer units shared by the batch and the incremental paths -------------------------

    @functools.cached_property
    def evidence_units(self) -> tuple[int, ...]:
        """Evidence per role bitmask (the strongest role held), in ``EVIDENCE_UNITS``."""
        per_role = [round(self.role_weights[r] * EVIDENCE_UNITS) for r in ROLES]
        out = []
        for bits in range(1 << len(ROLES)):
            vals = [per_role[i] for i in range(len(ROLES)) if bits >> i & 1]
            out.append(max(vals) if vals else 0)
        return tuple(out)

    @functools.cached_property
    def threshold_units(self) -> int:
        """``link_threshold`` in ``EVIDENCE_UNITS``."""
        return round(self.link_threshold * EVIDENCE_UNITS)

    def rarity_units(self, degree: int) -> int:
        """``1 / log(degree + rarity_offset)`` in ``RARITY_UNITS`` (exact, cached per degree)."""
        return _rarity(int(degree), float(self.rarity_offset))

    def effective_degree(self, degree: int) -> int:
        """Degree as ring analysis sees it: exact up to the cap, ``cap + 1`` for every hub.

        Hubs link nobody and carry no weight, so nothing about a hub changes as it grows:
        an application joining a 100 k-member NAT ip touches only its own component.
        """
        return min(int(degree), self.hub_degree_cap + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for stores and reports)."""
        return {
            "hub_degree_cap": self.hub_degree_cap,
            "rarity_offset": self.rarity_offset,
            "role_weights": dict(self.role_weights),
            "link_threshold": self.link_threshold,
            "min_ring_size": self.min_ring_size,
            "resolution": self.resolution,
            "seed": self.seed,
            "leiden_trials": self.leiden_trials,
            "fraud_hops": self.fraud_hops,
            "burst_window_s": self.burst_window_s,
            "burst_long_window_s": self.burst_long_window_s,
            "dense_top_pct": list(self.dense_top_pct),
            "scoring": self.scoring.to_dict(),
        }


@functools.lru_cache(maxsize=4096)
def _rarity(degree: int, offset: float) -> int:
    return round(RARITY_UNITS / math.log(degree + offset))


@dataclass(frozen=True, eq=False)
class BipartiteGraph:
    """Integer-coded applicant x identifier graph (identifiers held by >= 2 applicants).

    Attributes:
        applicants: applicant tokens; position = applicant code (a list from
            :func:`build_graph`, a lazily decoded :class:`~kyc.graph.columns.TokenView` from
            :func:`~kyc.graph.columns.graph_from_columns`).
        identifiers: identifier tokens; position = identifier code.
        kind: per identifier, index into :data:`KINDS`.
        degree: per identifier, number of distinct applicants holding it (>= 2).
        edge_app, edge_id: one edge per (applicant, identifier), sorted by applicant then
            identifier.
        edge_roles: per edge, bitmask of the roles (:data:`ROLES`) the applicant used it in.
        times_ptr, times: CSR of each applicant's application timestamps (sorted).
        thin: per applicant 1 thin-file, 0 not, -1 unknown (the latest application that says).
        n_applications: distinct applications read.
        n_singletons: identifiers dropped because only one applicant held them.
        n_singleton_links: (applicant, identifier) links dropped with them.
    """

    applicants: Sequence[str]
    identifiers: Sequence[str]
    kind: npt.NDArray[np.int8]
    degree: I32
    edge_app: I32
    edge_id: I32
    edge_roles: npt.NDArray[np.int16]
    times_ptr: I64
    times: I64
    thin: npt.NDArray[np.int8]
    n_applications: int
    n_singletons: int
    n_singleton_links: int

    @property
    def n_applicants(self) -> int:
        """Number of distinct applicants."""
        return len(self.applicants)

    @property
    def n_identifiers(self) -> int:
        """Number of identifiers held by at least two applicants."""
        return len(self.identifiers)

    def hubs(self, config: GraphConfig | None = None) -> BoolA:
        """Mask of identifiers above the hub degree cap."""
        cap = (config or GraphConfig()).hub_degree_cap
        return np.asarray(self.degree > cap)

    def id_ptr(self) -> tuple[I64, I32]:
        """CSR by identifier: ``(ptr, edge positions)`` (members of identifier ``j`` are
        ``edge_app[pos[ptr[j]:ptr[j+1]]]``, in applicant order)."""
        order = np.argsort(self.edge_id, kind="stable").astype(np.int32)
        ptr = np.zeros(self.n_identifiers + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.edge_id, minlength=self.n_identifiers), out=ptr[1:])
        return ptr, order

    def app_ptr(self) -> I64:
        """CSR pointer by applicant into the (applicant-sorted) edge arrays."""
        ptr = np.zeros(self.n_applicants + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.edge_app, minlength=self.n_applicants), out=ptr[1:])
        return ptr


def build_graph(apps: Iterable[HashedApplication]) -> BipartiteGraph:
    """Build the :class:`BipartiteGraph` from hashed applications (any order).

    A repeated ``application_id`` is read once (the first). An applicant's links are the union
    over its applications. Identifiers held by a single applicant are dropped. Applicants and
    identifiers are numbered in order of first appearance. Raises
    :class:`~kyc.errors.ConfigError` on a link role outside :data:`ROLES`.

    This is :func:`kyc.graph.columns.graph_from_columns` of
    :func:`kyc.graph.columns.columns_from_apps`: one factorisation serves objects, store rows
    and the store's persisted columns.
    """
    from kyc.graph.columns import columns_from_apps, graph_from_columns

    return graph_from_columns(columns_from_apps(apps))


@dataclass(frozen=True, eq=False)
class PairTable:
    """Applicant pairs sharing at least one non-hub identifier (``a < b``, sorted).

    ``evidence``: summed role evidence in :data:`EVIDENCE_UNITS`; ``weight_units``: summed
    ``evidence * rarity`` in ``EVIDENCE_UNITS * RARITY_UNITS``; ``n_shared``: number of shared
    non-hub identifiers; ``linked``: the evidence rule holds.
    """

    a: I32
    b: I32
    evidence: I64
    weight_units: I64
    n_shared: I32
    linked: BoolA

    @property
    def weight(self) -> F64:
        """Rarity-weighted evidence as floats (``evidence * 1/log(deg + c)`` summed)."""
        return np.asarray(self.weight_units / float(EVIDENCE_UNITS * RARITY_UNITS))

    def __len__(self) -> int:
        return int(self.a.size)


def candidate_pairs(graph: BipartiteGraph, config: GraphConfig | None = None) -> PairTable:
    """Enumerate applicant pairs inside non-hub identifiers and apply the evidence rule.

    Vectorised: identifiers are grouped by degree ``d`` (2..cap) and each group's members
    form a ``(n_ids, d)`` matrix whose upper-triangle column pairs are the applicant pairs;
    pair totals are integer sums, so the result does not depend on input order. Memory is
    ``O(sum over non-hub identifiers of d^2/2)``, at most ``cap/2`` per link.
    """
    cfg = config or GraphConfig()
    cap = cfg.hub_degree_cap
    ptr, pos = graph.id_ptr()
    deg = graph.degree.astype(np.int64)
    ev_table = np.asarray(cfg.evidence_units, dtype=np.int64)
    edge_ev = ev_table[graph.edge_roles.astype(np.int64)]
    max_deg = int(min(cap, deg.max())) if deg.size else 0
    rar = np.asarray([cfg.rarity_units(d) for d in range(max_deg + 1)], dtype=np.int64)
    pa_parts: list[I64] = []
    pb_parts: list[I64] = []
    ev_parts: list[I64] = []
    w_parts: list[I64] = []
    for d in range(2, max_deg + 1):
        ids = np.flatnonzero(deg == d)
        if ids.size == 0:
            continue
        m = pos[ptr[ids][:, None] + np.arange(d)[None, :]]  # (n_ids, d) edge positions
        iu, ju = np.triu_indices(d, 1)
        ei, ej = m[:, iu].ravel(), m[:, ju].ravel()
        pa_parts.append(graph.edge_app[ei].astype(np.int64))
        pb_parts.append(graph.edge_app[ej].astype(np.int64))
        ev = np.minimum(edge_ev[ei], edge_ev[ej])
        ev_parts.append(ev)
        w_parts.append(ev * rar[d])
    if not pa_parts:
        z32 = np.zeros(0, dtype=np.int32)
        z64 = np.zeros(0, dtype=np.int64)
        return PairTable(z32, z32.copy(), z64, z64.copy(), z32.copy(), np.zeros(0, dtype=bool))
    pa = np.concatenate(pa_parts)
    pb = np.concatenate(pb_parts)
    ev = np.concatenate(ev_parts)
    w = np.concatenate(w_parts)
    lo = np.minimum(pa, pb)
    hi = np.maximum(pa, pb)
    key = lo * graph.n_applicants + hi
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ukey = key[starts]
    ev_sum = np.add.reduceat(ev[order], starts)
    w_sum = np.add.reduceat(w[order], starts)
    n_shared = np.diff(np.r_[starts, key.size]).astype(np.int32)
    return PairTable(
        a=(ukey // graph.n_applicants).astype(np.int32),
        b=(ukey % graph.n_applicants).astype(np.int32),
        evidence=ev_sum,
        weight_units=w_sum,
        n_shared=n_shared,
        linked=ev_sum >= cfg.threshold_units,
    )


def linked_components(graph: BipartiteGraph, pairs: PairTable) -> I32:
    """Component label per applicant over *linked* pairs (hub-damped, evidence rule)."""
    n = graph.n_applicants
    a = pairs.a[pairs.linked]
    b = pairs.b[pairs.linked]
    m = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(m, directed=False)
    return np.asarray(labels, dtype=np.int32)


def plain_components(graph: BipartiteGraph) -> I32:
    """Component label per applicant when *any* shared identifier links (no damping).

    Computed on the bipartite edge arrays (applicants and identifiers as nodes), never on
    the projection: this is the "giant component" baseline hub damping is measured against.
    """
    n = graph.n_applicants
    size = n + graph.n_identifiers
    m = coo_matrix(
        (np.ones(graph.edge_app.size, dtype=np.int8),
         (graph.edge_app, graph.edge_id.astype(np.int64) + n)),
        shape=(size, size),
    )
    _, labels = connected_components(m, directed=False)
    return np.asarray(labels[:n], dtype=np.int32)


def component_sizes(labels: npt.ArrayLike) -> I64:
    """Sizes of the components in a label array, largest first."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return np.sort(counts[counts > 0])[::-1].astype(np.int64)
