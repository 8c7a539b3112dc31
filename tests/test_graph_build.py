"""The bipartite graph, hub cap and evidence rule (kyc.graph.build)."""

from __future__ import annotations

import hashlib
import itertools
import math
import random

import numpy as np
import pytest

from kyc.errors import ConfigError
from kyc.graph.build import (
    EVIDENCE_UNITS,
    RARITY_UNITS,
    GraphConfig,
    RingScoring,
    build_graph,
    candidate_pairs,
    component_sizes,
    linked_components,
    plain_components,
    role_bits,
    role_names,
)
from kyc.graph.records import HashedApplication


def tok(kind: str, name: str) -> str:
    return f"{kind}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def app(i: int | str, who: str, *links: tuple[str, str], ts: int = 1_700_000_000,
        thin: bool | None = None) -> HashedApplication:
    return HashedApplication(
        application_id=f"app-{i}", applicant=tok("applicant", who), lender_id="L1",
        lender_type="bank", ts=ts,
        links=tuple(sorted((role, tok("phone" if role == "contact" else role, v))
                           for role, v in links)),
        thin_file=thin,
    )


def linked_pairs(apps: list[HashedApplication], config: GraphConfig | None = None
                 ) -> set[frozenset[str]]:
    g = build_graph(apps)
    p = candidate_pairs(g, config)
    return {frozenset((g.applicants[a], g.applicants[b]))
            for a, b, ok in zip(p.a.tolist(), p.b.tolist(), p.linked.tolist(), strict=True)
            if ok}


def pair(a: str, b: str) -> frozenset[str]:
    return frozenset((tok("applicant", a), tok("applicant", b)))


def test_shared_office_ip_alone_does_not_link() -> None:
    apps = [app(1, "alice", ("ip", "10.1.1.1")), app(2, "bob", ("ip", "10.1.1.1"))]
    assert linked_pairs(apps) == set()


def test_shared_device_links() -> None:
    apps = [app(1, "alice", ("device", "d1"), ("ip", "1")),
            app(2, "bob", ("device", "d1"), ("ip", "2"))]
    assert linked_pairs(apps) == {pair("alice", "bob")}


def test_shared_phone_and_address_link_but_phone_alone_does_not() -> None:
    both = [app(1, "alice", ("phone", "555"), ("address", "1 main st")),
            app(2, "bob", ("phone", "555"), ("address", "1 main st"))]
    assert linked_pairs(both) == {pair("alice", "bob")}
    phone_only = [app(1, "alice", ("phone", "555")), app(2, "bob", ("phone", "555"))]
    assert linked_pairs(phone_only) == set()


def test_two_weak_identifiers_link_and_weaker_role_counts() -> None:
    ip_and_address = [app(1, "a", ("ip", "1"), ("address", "x")),
                      app(2, "b", ("ip", "1"), ("address", "x"))]
    assert linked_pairs(ip_and_address) == {pair("a", "b")}
    # a's own phone is b's emergency contact: the contact role (0.5) counts, not 0.75
    own_vs_contact = [app(1, "a", ("phone", "555")), app(2, "b", ("contact", "555"))]
    g = build_graph(own_vs_contact)
    p = candidate_pairs(g)
    assert p.evidence.tolist() == [500] and not p.linked.any()
    with_ip = [app(1, "a", ("phone", "555"), ("ip", "9")),
               app(2, "b", ("contact", "555"), ("ip", "9"))]
    assert linked_pairs(with_ip) == {pair("a", "b")}


def test_singletons_dropped_and_degree_counts_distinct_applicants() -> None:
    apps = [app(i, "alice", ("device", "d1"), ("email", f"e{i}")) for i in range(10)]
    apps.append(app(99, "bob", ("device", "d1")))
    g = build_graph(apps)
    assert g.n_applicants == 2
    assert g.n_identifiers == 1  # the ten e-mails are held by alice alone
    assert g.n_singletons == 10
    assert g.degree.tolist() == [2]
    assert g.n_applications == 11
    # the applicant's ten application times are kept, sorted
    a = g.applicants.index(tok("applicant", "alice"))
    assert g.times_ptr[a + 1] - g.times_ptr[a] == 10


def test_repeated_application_id_read_once() -> None:
    a = app(1, "alice", ("device", "d1"))
    b = app(2, "bob", ("device", "d1"))
    g = build_graph([a, b, a, a])
    assert g.n_applications == 2
    assert int(g.times_ptr[-1]) == 2


def test_hub_above_cap_links_nobody_but_stays_in_graph() -> None:
    cfg = GraphConfig(hub_degree_cap=3)
    apps = [app(i, f"p{i}", ("device", "kiosk")) for i in range(4)]
    g = build_graph(apps)
    assert g.hubs(cfg).tolist() == [True]
    assert len(candidate_pairs(g, cfg)) == 0
    # three holders (at the cap) do link
    assert len(linked_pairs(apps[:3], cfg)) == 3


def test_hub_damping_breaks_the_giant_component() -> None:
    # two households of 3 (device + address) all on one carrier NAT ip and one call centre
    apps = []
    for h in range(2):
        for m in range(3):
            apps.append(app(f"{h}{m}", f"h{h}m{m}", ("device", f"tablet{h}"),
                            ("address", f"house{h}"), ("ip", "nat"),
                            ("contact", "callcentre")))
    for i in range(30):  # 30 strangers behind the same NAT, calling the same centre
        apps.append(app(f"s{i}", f"s{i}", ("ip", "nat"), ("contact", "callcentre")))
    g = build_graph(apps)
    assert component_sizes(plain_components(g))[0] == 36
    cfg = GraphConfig(hub_degree_cap=20)
    labels = linked_components(g, candidate_pairs(g, cfg))
    assert component_sizes(labels)[:2].tolist() == [3, 3]
    assert component_sizes(labels).size == 2 + 30


def test_candidate_pairs_match_brute_force_on_random_graphs() -> None:
    rng = random.Random(5)
    roles = ["device", "phone", "contact", "ip", "address", "card", "email"]
    for trial in range(5):
        apps = []
        for i in range(rng.randint(20, 60)):
            links = [(rng.choice(roles), f"v{rng.randint(0, 25)}")
                     for _ in range(rng.randint(0, 5))]
            apps.append(app(f"{trial}-{i}", f"p{rng.randint(0, 40)}", *links,
                            ts=1_700_000_000 + i))
        cfg = GraphConfig(hub_degree_cap=rng.randint(2, 8))
        g = build_graph(apps)
        p = candidate_pairs(g, cfg)
        got = {tuple(sorted((g.applicants[a], g.applicants[b]))): (e, w, ok)
               for a, b, e, w, ok in zip(
            p.a.tolist(), p.b.tolist(), p.evidence.tolist(), p.weight_units.tolist(),
            p.linked.tolist(), strict=True)}
        # brute force over the raw applications
        holds: dict[str, dict[str, int]] = {}
        for h in apps:
            for role, t in h.links:
                holds.setdefault(h.applicant, {})
                holds[h.applicant][t] = holds[h.applicant].get(t, 0) | role_bits([role])
        degree: dict[str, int] = {}
        for links in holds.values():
            for t in links:
                degree[t] = degree.get(t, 0) + 1
        ev_units = cfg.evidence_units
        want = {}
        for x, y in itertools.combinations(sorted(holds), 2):
            shared = [t for t in holds[x] if t in holds[y] and degree[t] <= cfg.hub_degree_cap]
            if not shared:
                continue
            ev = sum(min(ev_units[holds[x][t]], ev_units[holds[y][t]]) for t in shared)
            w = sum(min(ev_units[holds[x][t]], ev_units[holds[y][t]])
                    * cfg.rarity_units(degree[t]) for t in shared)
            want[(x, y)] = (ev, w, ev >= cfg.threshold_units)
        assert got == want


def test_build_is_order_independent() -> None:
    rng = random.Random(1)
    apps = [app(i, f"p{rng.randint(0, 30)}", ("device", f"d{rng.randint(0, 10)}"),
                ("ip", f"i{rng.randint(0, 5)}"), ts=1_700_000_000 + rng.randint(0, 999),
                thin=rng.choice([True, False, None]))
            for i in range(80)]

    def canon(apps_in: list[HashedApplication]) -> tuple[object, ...]:
        g = build_graph(apps_in)
        p = candidate_pairs(g)
        pairs = sorted((min(g.applicants[a], g.applicants[b]), max(g.applicants[a],
                        g.applicants[b]), e) for a, b, e in
                       zip(p.a.tolist(), p.b.tolist(), p.evidence.tolist(), strict=True))
        thin = {g.applicants[i]: int(v) for i, v in enumerate(g.thin.tolist())}
        times = {g.applicants[i]: g.times[g.times_ptr[i]:g.times_ptr[i + 1]].tolist()
                 for i in range(g.n_applicants)}
        return pairs, thin, times

    ref = canon(apps)
    for seed in range(3):
        shuffled = list(apps)
        random.Random(seed).shuffle(shuffled)
        assert canon(shuffled) == ref


def test_thin_file_is_the_latest_application_that_says() -> None:
    apps = [app(1, "a", ("device", "d"), ts=100, thin=True),
            app(2, "a", ("device", "d"), ts=200, thin=False),
            app(3, "a", ("device", "d"), ts=300, thin=None),
            app(4, "b", ("device", "d"), ts=50)]
    g = build_graph(apps)
    thin = dict(zip(g.applicants, g.thin.tolist(), strict=True))
    assert thin[tok("applicant", "a")] == 0
    assert thin[tok("applicant", "b")] == -1


def test_rarity_weights_are_exact_integers_and_hubs_collapse() -> None:
    cfg = GraphConfig(hub_degree_cap=20)
    assert cfg.rarity_units(2) == round(RARITY_UNITS / math.log(7.0))
    assert cfg.effective_degree(20) == 20
    assert cfg.effective_degree(21) == 21
    assert cfg.effective_degree(110_000) == 21
    assert cfg.threshold_units == EVIDENCE_UNITS
    p = candidate_pairs(build_graph([app(1, "a", ("device", "d")), app(2, "b", ("device", "d"))]))
    assert p.weight.tolist() == pytest.approx([1.0 / math.log(7.0)], rel=1e-5)


def test_role_bits_round_trip_and_unknown_role() -> None:
    assert role_names(role_bits(["card", "device"])) == ("device", "card")
    with pytest.raises(ConfigError):
        role_bits(["fax"])
    bad = HashedApplication("x", tok("applicant", "a"), "L", "bank", 0, (("fax", "fax:1"),))
    with pytest.raises(ConfigError, match="fax"):
        build_graph([bad])


@pytest.mark.parametrize("kwargs", [
    {"hub_degree_cap": 1},
    {"rarity_offset": 1.0},
    {"role_weights": {"fax": 1.0}},
    {"link_threshold": 0},
    {"min_ring_size": 1},
    {"resolution": 0},
    {"seed": -1},
    {"burst_window_s": 0},
    {"dense_top_pct": (5.0, 1.0)},
])
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GraphConfig(**kwargs)  # type: ignore[arg-type]


def test_scoring_validation_and_to_dict() -> None:
    with pytest.raises(ConfigError):
        RingScoring(burst_weight=1.5)
    d = GraphConfig().to_dict()
    assert d["hub_degree_cap"] == 50 and d["scoring"]["flag_threshold"] == 0.5
    assert d["role_weights"]["device"] == 1.0


def test_empty_input() -> None:
    g = build_graph([])
    assert g.n_applicants == 0 and g.n_identifiers == 0
    assert len(candidate_pairs(g)) == 0
    assert linked_components(g, candidate_pairs(g)).size == 0
    assert np.asarray(plain_components(g)).size == 0
