"""Ring candidates, their evidence, and a transparent score.

A *ring candidate* is a Leiden CPM community (inside a hub-damped component, see
:mod:`kyc.graph.build`) of at least ``min_ring_size`` applicants. Candidates are not verdicts:
DESIGN.md measured 89-91 % of 5-100 member communities in a realistic population to be benign
(households, offices). The score decides, and every point of it is explained.

Evidence (strength ``s`` in [0, 1], weight ``w`` from :class:`~kyc.graph.build.RingScoring`),
each becoming a :class:`~kyc.reasons.Reason` with its values:

=========================  ========================================================  ===========
reason code                evidence                                                  strength
=========================  ========================================================  ===========
``DEVICE_SHARED_BY_{n}``   n members share one device (``CARD_SHARED_BY_{n}``: card)  (n-1)/(full-1)
``BURST_{n}_APPS_IN_3H``   n distinct members applied within 3 h (24 h: x0.75);     (n-2)/(full-2)
                           full = min(8, max(ring size, 5))
``DENSE_BLOCK_TOP_{p}PCT`` FRAUDAR density of members x shared identifiers ranks in  1 / .6 / .3
                           the top 1 / 5 / 10 % of all candidates
``THIN_FILE_{p}PCT``       p % of members (with a known flag) are thin-file          above floor
``CONFIRMED_FRAUD_{n}``    n members are confirmed fraud (``mark_fraud``)            1
``NEAR_CONFIRMED_FRAUD_``  members within ``fraud_hops`` links of a confirmed fraud  1
``{h}_HOPS``
``CONTACT_IN_FLAGGED_``    a member's emergency contact is the own phone of a        1
``RING``                   member of another ring that is flagged on its own evidence
=========================  ========================================================  ===========

The score is the noisy-OR ``1 - prod(1 - w * s)`` and the ring is flagged when it reaches
``flag_threshold`` (0.5). Shared IPs and addresses are reported (``shared``) but are no
evidence by themselves: a household or an office is not a ring.

Everything here is a pure function of a :class:`ComponentView` (plus, for the score, the
density ranks of all candidates and the flags of rings reached through contacts), which is
what makes incremental adds and a batch scan give the same rings.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kyc.graph.build import (
    EVIDENCE_UNITS,
    RARITY_UNITS,
    ROLES,
    GraphConfig,
    role_names,
)
from kyc.graph.cluster import leiden_cpm
from kyc.graph.dense import block_density
from kyc.reasons import Reason

__all__ = [
    "ComponentAnalysis",
    "ComponentView",
    "Link",
    "Ring",
    "RingFeatures",
    "RingReport",
    "RingScorer",
    "SharedIdentifier",
    "analyse_component",
    "density_top_pct",
    "ring_id",
]

_CONTACT_BIT = 1 << ROLES.index("contact")
_PHONE_BIT = 1 << ROLES.index("phone")


def ring_id(members: Iterable[str]) -> str:
    """Stable ring id: ``"ring:"`` + 16 hex of SHA-256 over the sorted member tokens.

    >>> ring_id(["applicant:b", "applicant:a"]) == ring_id(["applicant:a", "applicant:b"])
    True
    """
    text = "\n".join(sorted(members))
    return "ring:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _kind(token: str) -> str:
    return token.partition(":")[0]


@dataclass(frozen=True)
class SharedIdentifier:
    """An identifier held by several ring members (hashed token, never the raw value).

    ``roles``: the roles it was used in; ``members``: how many ring members hold it;
    ``holders``: their applicant tokens (sorted); ``hub``: its degree exceeds the hub cap (it
    links nobody, but it is evidence).
    """

    token: str
    kind: str
    roles: tuple[str, ...]
    members: int
    hub: bool
    holders: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"token": self.token, "kind": self.kind, "roles": list(self.roles),
                "members": self.members, "hub": self.hub, "holders": list(self.holders)}


@dataclass(frozen=True)
class ComponentView:
    """Everything ring analysis needs to know about one linked component.

    ``members``: sorted applicant tokens. Per member (same order): ``links`` its
    ``(token, role bitmask)`` pairs for identifiers held by >= 2 applicants anywhere (sorted
    by token), ``times`` its application timestamps (sorted), ``thin`` 1/0/-1, ``fraud``
    whether it is a confirmed fraud. ``degree``: global *effective* degree of every linked
    token (:meth:`~kyc.graph.build.GraphConfig.effective_degree`: exact up to the hub cap,
    ``cap + 1`` for hubs).
    """

    members: tuple[str, ...]
    links: tuple[tuple[tuple[str, int], ...], ...]
    times: tuple[tuple[int, ...], ...]
    thin: tuple[int, ...]
    fraud: tuple[bool, ...]
    degree: Mapping[str, int]


@dataclass(frozen=True)
class RingFeatures:
    """The measured, context-free facts about one ring candidate (input of the score)."""

    ring_id: str
    members: tuple[str, ...]
    component_size: int
    density: float
    link_density: float
    kinds: tuple[str, ...]
    shared: tuple[SharedIdentifier, ...]
    device_sharers: int
    device_token: str | None
    card_sharers: int
    card_token: str | None
    applications: int
    first_ts: int
    last_ts: int
    burst: int
    burst_long: int
    thin_file_share: float
    thin_file_known: int
    known_fraud: int
    near_fraud: int
    contact_tokens: tuple[str, ...]


@dataclass(frozen=True)
class ComponentAnalysis:
    """Communities, ring candidates and fraud distances of one component."""

    members: tuple[str, ...]
    rings: tuple[RingFeatures, ...]
    ring_of: Mapping[str, int] = field(default_factory=dict)
    fraud_hops: Mapping[str, int] = field(default_factory=dict)
    n_links: int = 0


@dataclass(frozen=True)
class Ring:
    """A scored ring candidate with the evidence that ties its members.

    ``members`` are applicant tokens (sorted); ``shared`` the identifiers (hashed) held by two
    or more members, with kind, roles and member count; ``density`` the FRAUDAR density of
    the members x shared-identifiers block and ``density_top_pct`` its rank among all current
    candidates (smaller = denser); ``burst`` / ``burst_long`` the most distinct members
    applying within the short (3 h) / long (24 h) window; ``score`` in [0, 1]; ``flagged``
    whether the score reached the threshold; ``reasons`` every piece of evidence with values.
    """

    ring_id: str
    members: tuple[str, ...]
    size: int
    component_size: int
    density: float
    density_top_pct: float
    link_density: float
    kinds: tuple[str, ...]
    shared: tuple[SharedIdentifier, ...]
    device_sharers: int
    card_sharers: int
    applications: int
    first_ts: int
    last_ts: int
    span_s: int
    burst: int
    burst_long: int
    thin_file_share: float
    known_fraud: int
    near_fraud: int
    contacts_in_flagged: int
    score: float
    flagged: bool
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "ring_id": self.ring_id,
            "members": list(self.members),
            "size": self.size,
            "component_size": self.component_size,
            "density": self.density,
            "density_top_pct": self.density_top_pct,
            "link_density": self.link_density,
            "kinds": list(self.kinds),
            "shared": [s.to_dict() for s in self.shared],
            "device_sharers": self.device_sharers,
            "card_sharers": self.card_sharers,
            "applications": self.applications,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "span_s": self.span_s,
            "burst": self.burst,
            "burst_long": self.burst_long,
            "thin_file_share": self.thin_file_share,
            "known_fraud": self.known_fraud,
            "near_fraud": self.near_fraud,
            "contacts_in_flagged": self.contacts_in_flagged,
            "score": self.score,
            "flagged": self.flagged,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class Link:
    """Why this applicant and ``other`` are (or are not quite) linked.

    ``identifiers``: the shared non-hub identifiers as ``(token, kind)``; ``evidence``: their
    summed role evidence; ``linked``: whether it reaches the link threshold.
    """

    other: str
    identifiers: tuple[tuple[str, str], ...]
    evidence: float
    linked: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"other": self.other, "identifiers": [list(i) for i in self.identifiers],
                "evidence": self.evidence, "linked": self.linked}


@dataclass(frozen=True)
class RingReport:
    """The graph's answer for one applicant.

    ``applicant``: its token; ``application_id``: the application this report answers (for
    ``add``) or None; ``ring``: the ring candidate it belongs to (or None); ``component_size``:
    size of its hub-damped linked component; ``links``: pairs sharing non-hub identifiers with
    it; ``hubs``: hub identifiers it uses (no link, evidence only); ``fraud_hops``: links to
    the nearest confirmed fraud (0 = itself), None beyond ``fraud_hops``; ``velocity``:
    multi-lender counters (``als_*``); ``score``: ring score combined (noisy-OR) with the
    applicant's own graph evidence; ``flagged``: score reached the threshold; ``reasons``.
    """

    applicant: str
    application_id: str | None
    ring: Ring | None
    component_size: int
    links: tuple[Link, ...]
    hubs: tuple[str, ...]
    fraud_hops: int | None
    velocity: Mapping[str, int]
    score: float
    flagged: bool
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "applicant": self.applicant,
            "application_id": self.application_id,
            "ring": None if self.ring is None else self.ring.to_dict(),
            "component_size": self.component_size,
            "links": [link.to_dict() for link in self.links],
            "hubs": list(self.hubs),
            "fraud_hops": self.fraud_hops,
            "velocity": dict(self.velocity),
            "score": self.score,
            "flagged": self.flagged,
            "reasons": [r.to_dict() for r in self.reasons],
        }


# --- analysis of one component ---------------------------------------------------------------


def _max_distinct_in_window(events: Sequence[tuple[int, int]], window: int) -> int:
    """Most distinct members with an event in any half-open window ``(t - window, t]``."""
    best = 0
    counts: dict[int, int] = {}
    lo = 0
    for hi in range(len(events)):
        t, m = events[hi]
        counts[m] = counts.get(m, 0) + 1
        while events[lo][0] <= t - window:
            mm = events[lo][1]
            counts[mm] -= 1
            if not counts[mm]:
                del counts[mm]
            lo += 1
        if len(counts) > best:
            best = len(counts)
    return best


def analyse_component(view: ComponentView, config: GraphConfig) -> ComponentAnalysis:
    """Pairs, Leiden CPM communities, fraud distances and ring features of one component.

    A pure function of ``view`` and ``config``: equal views give equal results.
    """
    cfg = config
    members = view.members
    n = len(members)
    cap = cfg.hub_degree_cap
    ev_units = cfg.evidence_units
    thr = cfg.threshold_units
    holders: dict[str, list[tuple[int, int]]] = {}
    for i, links in enumerate(view.links):
        for tok, bits in links:
            holders.setdefault(tok, []).append((i, bits))
    pair_ev: dict[tuple[int, int], int] = {}
    pair_w: dict[tuple[int, int], int] = {}
    for tok, hs in holders.items():
        if len(hs) < 2:
            continue
        deg = view.degree[tok]
        if deg > cap:
            continue
        rar = cfg.rarity_units(deg)
        for x in range(len(hs)):
            i, bi = hs[x]
            evi = ev_units[bi]
            for y in range(x + 1, len(hs)):
                j, bj = hs[y]
                ev = min(evi, ev_units[bj])
                key = (i, j) if i < j else (j, i)
                pair_ev[key] = pair_ev.get(key, 0) + ev
                pair_w[key] = pair_w.get(key, 0) + ev * rar
    linked = sorted(k for k, ev in pair_ev.items() if ev >= thr)
    adj: list[list[int]] = [[] for _ in range(n)]
    for i, j in linked:
        adj[i].append(j)
        adj[j].append(i)

    # distance (in links) to the nearest confirmed fraud, up to fraud_hops
    hops: dict[int, int] = {}
    queue: deque[int] = deque()
    for i in range(n):
        if view.fraud[i]:
            hops[i] = 0
            queue.append(i)
    while queue:
        x = queue.popleft()
        if hops[x] >= cfg.fraud_hops:
            continue
        for y in adj[x]:
            if y not in hops:
                hops[y] = hops[x] + 1
                queue.append(y)
    fraud_hops = {members[i]: h for i, h in sorted(hops.items())}

    if n < cfg.min_ring_size or not linked:
        return ComponentAnalysis(members, (), {}, fraud_hops, len(linked))

    scale = float(EVIDENCE_UNITS * RARITY_UNITS)
    comms = leiden_cpm(
        [(members[i], members[j], pair_w[(i, j)] / scale) for i, j in linked],
        nodes=members, resolution=cfg.resolution, seed=cfg.seed, trials=cfg.leiden_trials,
    )
    index = {m: i for i, m in enumerate(members)}
    comm_of = [0] * n
    for c, comm in enumerate(comms):
        for m in comm:
            comm_of[index[m]] = c
    inner_links = [0] * len(comms)
    for i, j in linked:
        if comm_of[i] == comm_of[j]:
            inner_links[comm_of[i]] += 1
    rings: list[RingFeatures] = []
    ring_of: dict[str, int] = {}
    for c, comm in enumerate(comms):
        if len(comm) < cfg.min_ring_size:
            continue
        idx = [index[m] for m in comm]
        feats = _ring_features(view, idx, inner_links[c], hops, cfg)
        for m in comm:
            ring_of[m] = len(rings)
        rings.append(feats)
    return ComponentAnalysis(members, tuple(rings), ring_of, fraud_hops, len(linked))


def _ring_features(
    view: ComponentView,
    idx: list[int],
    n_links: int,
    hops: Mapping[int, int],
    cfg: GraphConfig,
) -> RingFeatures:
    members = tuple(view.members[i] for i in idx)
    size = len(idx)
    cap = cfg.hub_degree_cap
    # identifiers held by >= 2 ring members (idx is in member order, so holders are too)
    ring_holders: dict[str, list[tuple[int, int]]] = {}
    for i in idx:
        for t, b in view.links[i]:
            ring_holders.setdefault(t, []).append((i, b))
    shared: list[SharedIdentifier] = []
    cols: list[str] = []
    col_holders: list[list[int]] = []
    for tok in sorted(ring_holders):
        hs = ring_holders[tok]
        if len(hs) < 2:
            continue
        bits = 0
        for _, b in hs:
            bits |= b
        deg = view.degree[tok]
        shared.append(SharedIdentifier(tok, _kind(tok), role_names(bits), len(hs), deg > cap,
                                       tuple(view.members[i] for i, _ in hs)))
        cols.append(tok)
        col_holders.append([i for i, _ in hs])
    # FRAUDAR density of the members x shared non-hub identifiers block, rarity-weighted
    # columns (hubs would weigh ~0 anyway and their degree keeps changing)
    pos = {i: k for k, i in enumerate(idx)}
    er: list[int] = []
    ec: list[int] = []
    ew: list[float] = []
    for c, (tok, hs_i) in enumerate(zip(cols, col_holders, strict=True)):
        if view.degree[tok] > cap:
            continue
        w = cfg.rarity_units(view.degree[tok]) / RARITY_UNITS
        for i in hs_i:
            er.append(pos[i])
            ec.append(c)
            ew.append(w)
    density = block_density(er, ec, ew, size, len(cols)) if er else 0.0
    link_density = n_links / (size * (size - 1) / 2)

    def top(kind: str) -> tuple[int, str | None]:
        best: tuple[int, str | None] = (0, None)
        for s in shared:
            if s.kind == kind and s.members > best[0]:
                best = (s.members, s.token)
        return best

    dev_n, dev_tok = top("device")
    card_n, card_tok = top("card")
    events = sorted((t, k) for k, i in enumerate(idx) for t in view.times[i])
    thin_known = [view.thin[i] for i in idx if view.thin[i] >= 0]
    contact_tokens = sorted({t for i in idx for t, b in view.links[i] if b & _CONTACT_BIT})
    shared.sort(key=lambda s: (-s.members, s.token))
    return RingFeatures(
        ring_id=ring_id(members),
        members=members,
        component_size=len(view.members),
        density=round(density, 9),
        link_density=round(link_density, 6),
        kinds=tuple(sorted({s.kind for s in shared})),
        shared=tuple(shared),
        device_sharers=dev_n,
        device_token=dev_tok,
        card_sharers=card_n,
        card_token=card_tok,
        applications=len(events),
        first_ts=events[0][0] if events else 0,
        last_ts=events[-1][0] if events else 0,
        burst=_max_distinct_in_window(events, cfg.burst_window_s),
        burst_long=_max_distinct_in_window(events, cfg.burst_long_window_s),
        thin_file_share=round(sum(thin_known) / len(thin_known), 6) if thin_known else 0.0,
        thin_file_known=len(thin_known),
        known_fraud=sum(1 for i in idx if view.fraud[i]),
        near_fraud=sum(1 for i in idx if 0 < hops.get(i, -1) <= cfg.fraud_hops),
        contact_tokens=tuple(contact_tokens),
    )


# --- scoring ---------------------------------------------------------------------------------


def density_top_pct(sorted_densities: Sequence[float], density: float) -> float:
    """Rank of ``density`` among all candidates as a top percentage (1 ring in 100 = 1.0).

    ``sorted_densities`` ascending; ties share the better rank.

    >>> density_top_pct([0.1, 0.2, 0.3, 0.4], 0.4), density_top_pct([0.1, 0.2, 0.3, 0.4], 0.1)
    (25.0, 100.0)
    """
    n = len(sorted_densities)
    if n == 0:
        return 100.0
    above = n - bisect_right(sorted_densities, density)
    return round(100.0 * (above + 1) / n, 4)


def _window_label(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"{seconds // 60}MIN"
    return f"{seconds}S"


def _pct_label(p: float) -> str:
    return f"{int(p)}" if float(p).is_integer() else f"{p:g}".replace(".", "_")


def _clip(x: float) -> float:
    return 0.0 if x <= 0 else 1.0 if x >= 1 else x


class RingScorer:
    """Scores :class:`RingFeatures` into :class:`Ring` objects, in the context of all rings.

    ``sorted_densities``: ascending densities of every current ring candidate;
    ``phone_owners(token)``: applicants holding a phone token as their own phone;
    ``ring_of(applicant)``: the :class:`RingFeatures` of that applicant's ring, or None.
    A ring's ``CONTACT_IN_FLAGGED_RING`` evidence uses the *base* flag of the other ring
    (its score without contact evidence), so flags do not chase each other in cycles.
    """

    def __init__(
        self,
        config: GraphConfig,
        sorted_densities: Sequence[float],
        phone_owners: Callable[[str], Iterable[str]],
        ring_of: Callable[[str], RingFeatures | None],
    ) -> None:
        self.config = config
        self._densities = sorted_densities
        self._owners = phone_owners
        self._ring_of = ring_of
        self._base: dict[str, bool] = {}

    def _items(self, f: RingFeatures) -> list[tuple[float, float, Reason]]:
        """(weight, strength, reason) for each piece of context-free + density evidence."""
        sc = self.config.scoring
        cfg = self.config
        items: list[tuple[float, float, Reason]] = []
        strong_items: list[tuple[float, float, Reason]] = []
        for n, code, tok, kind in ((f.device_sharers, "DEVICE", f.device_token, "device"),
                                   (f.card_sharers, "CARD", f.card_token, "card")):
            if n >= 2:
                s = _clip((n - 1) / (sc.strong_full - 1))
                strong_items.append((sc.shared_strong_weight, s, Reason(
                    f"{code}_SHARED_BY_{n}",
                    f"{n} ring members share one {kind}",
                    {"members": n, "token": tok, "kind": kind},
                )))
        if strong_items:  # both are reported; only the stronger counts in the score
            best = max(strong_items, key=lambda it: it[1])
            items.extend((w if it is best else 0.0, s, r)
                         for it in strong_items for (w, s, r) in (it,))
        full = min(sc.burst_full, max(len(f.members), sc.burst_full_min))
        s_short = _clip((f.burst - 2) / (full - 2))
        s_long = sc.burst_long_factor * _clip((f.burst_long - 2) / (full - 2))
        if s_short > 0 or s_long > 0:
            if s_short >= s_long:
                n, win, s = f.burst, cfg.burst_window_s, s_short
            else:
                n, win, s = f.burst_long, cfg.burst_long_window_s, s_long
            items.append((sc.burst_weight, s, Reason(
                f"BURST_{n}_APPS_IN_{_window_label(win)}",
                f"{n} ring members applied within {_window_label(win).lower()}",
                {"members": n, "window_s": win, "first_ts": f.first_ts, "last_ts": f.last_ts},
            )))
        pct = density_top_pct(self._densities, f.density)
        for rank, p in enumerate(cfg.dense_top_pct):
            if pct <= p:
                s = (1.0, 0.6, 0.3)[min(rank, 2)]
                items.append((sc.dense_weight, s, Reason(
                    f"DENSE_BLOCK_TOP_{_pct_label(p)}PCT",
                    f"members and shared identifiers form a block denser than {100 - p:g} % "
                    "of ring candidates",
                    {"density": f.density, "top_pct": pct, "candidates": len(self._densities)},
                )))
                break
        s_thin = _clip((f.thin_file_share - sc.thin_file_floor) / (1 - sc.thin_file_floor))
        if s_thin > 0:
            p = round(100 * f.thin_file_share)
            items.append((sc.thin_file_weight, s_thin, Reason(
                f"THIN_FILE_{p}PCT",
                f"{p} % of members with a known credit file are thin-file",
                {"share": f.thin_file_share, "known": f.thin_file_known},
            )))
        if f.known_fraud:
            items.append((sc.confirmed_fraud_weight, 1.0, Reason(
                f"CONFIRMED_FRAUD_{f.known_fraud}",
                f"{f.known_fraud} member(s) are confirmed fraud",
                {"members": f.known_fraud},
            )))
        if f.near_fraud:
            h = cfg.fraud_hops
            items.append((sc.near_fraud_weight, 1.0, Reason(
                f"NEAR_CONFIRMED_FRAUD_{h}_HOPS",
                f"{f.near_fraud} member(s) are within {h} links of a confirmed fraud",
                {"members": f.near_fraud, "hops": h},
            )))
        return items

    @staticmethod
    def _combine(items: Iterable[tuple[float, float, Reason]]) -> float:
        keep = 1.0
        for w, s, _ in items:
            keep *= 1.0 - w * s
        return round(1.0 - keep, 6)

    def base_flagged(self, f: RingFeatures) -> bool:
        """Whether the ring is flagged on its own evidence (no contact evidence)."""
        got = self._base.get(f.ring_id)
        if got is None:
            got = self._combine(self._items(f)) >= self.config.scoring.flag_threshold
            self._base[f.ring_id] = got
        return got

    def contact_hits(self, f: RingFeatures) -> list[tuple[str, tuple[str, ...]]]:
        """``(contact token, other ring ids)`` for members' contacts that are the own phone of
        a member of another ring flagged on its own evidence."""
        mine = set(f.members)
        hits: list[tuple[str, tuple[str, ...]]] = []
        for tok in f.contact_tokens:
            found: set[str] = set()
            for owner in self._owners(tok):
                if owner in mine:
                    continue
                other = self._ring_of(owner)
                if other is not None and other.ring_id != f.ring_id and self.base_flagged(other):
                    found.add(other.ring_id)
            if found:
                hits.append((tok, tuple(sorted(found))))
        return hits

    def score(self, f: RingFeatures) -> Ring:
        """The scored :class:`Ring`."""
        items = self._items(f)
        hits = self.contact_hits(f)
        if hits:
            sc = self.config.scoring
            items.append((sc.contact_weight, 1.0, Reason(
                "CONTACT_IN_FLAGGED_RING",
                f"{len(hits)} member contact phone(s) belong to members of flagged rings",
                {"contacts": len(hits), "tokens": [t for t, _ in hits],
                 "rings": sorted({r for _, rs in hits for r in rs})},
            )))
        total = self._combine(items)
        reasons = []
        for w, s, r in items:
            ev = dict(r.evidence)
            ev["weight"] = w
            ev["strength"] = round(s, 6)
            reasons.append(Reason(r.code, r.message, ev))
        return Ring(
            ring_id=f.ring_id,
            members=f.members,
            size=len(f.members),
            component_size=f.component_size,
            density=f.density,
            density_top_pct=density_top_pct(self._densities, f.density),
            link_density=f.link_density,
            kinds=f.kinds,
            shared=f.shared,
            device_sharers=f.device_sharers,
            card_sharers=f.card_sharers,
            applications=f.applications,
            first_ts=f.first_ts,
            last_ts=f.last_ts,
            span_s=f.last_ts - f.first_ts,
            burst=f.burst,
            burst_long=f.burst_long,
            thin_file_share=f.thin_file_share,
            known_fraud=f.known_fraud,
            near_fraud=f.near_fraud,
            contacts_in_flagged=len(hits),
            score=total,
            flagged=total >= self.config.scoring.flag_threshold,
            reasons=tuple(reasons),
        )

    def combine(self, *scores: float) -> float:
        """Noisy-OR of several scores in [0, 1]."""
        keep = 1.0
        for s in scores:
            keep *= 1.0 - s
        return round(1.0 - keep, 6)
