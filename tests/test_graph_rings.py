"""Dense blocks (kyc.graph.dense) and ring evidence and scoring (kyc.graph.rings)."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from kyc.errors import ConfigError
from kyc.graph.build import GraphConfig, role_bits
from kyc.graph.dense import block_density, column_weights, fraudar, peel
from kyc.graph.rings import (
    ComponentView,
    RingFeatures,
    RingScorer,
    analyse_component,
    density_top_pct,
    ring_id,
)

T0 = 1_700_000_000


def tok(kind: str, name: str) -> str:
    return f"{kind}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"


# --- FRAUDAR ----------------------------------------------------------------------------------


def test_fraudar_finds_planted_block_under_camouflage() -> None:
    rng = np.random.default_rng(7)
    n_rows, n_cols = 400, 300
    m = (rng.random((n_rows, n_cols)) < 0.01).astype(np.int8)  # honest background
    popular = np.arange(280, 300)  # honest popular identifiers (NAT ips, big employers)
    m[:, popular] = (rng.random((n_rows, popular.size)) < 0.3).astype(np.int8)
    rows, cols = np.arange(20, 45), np.arange(100, 112)  # 25 fraudsters x 12 identifiers
    m[np.ix_(rows, cols)] = (rng.random((rows.size, cols.size)) < 0.9).astype(np.int8)
    honest_cols = np.setdiff1d(np.arange(n_cols), cols)
    for r in rows:  # camouflage: each fraudster also uses 8 random honest identifiers
        m[r, rng.choice(honest_cols, 8, replace=False)] = 1
    blocks = fraudar(csr_matrix(m), n_blocks=2)
    top = blocks[0]
    assert set(top.rows.tolist()) == set(rows.tolist())
    found = set(top.cols.tolist())
    assert set(cols.tolist()) <= found
    # the only extra columns are popular ones the fraudsters happen to use often (a popular
    # column joins when its fraudster edges outweigh the block density, as FRAUDAR intends)
    assert found - set(cols.tolist()) <= set(popular.tolist())
    assert len(found) - cols.size <= 4
    assert blocks[0].density >= blocks[1].density
    # unweighted, the popular honest columns outweigh the block: log weights matter
    plain = fraudar(csr_matrix(m), col_weights=np.ones(n_cols))[0]
    assert set(plain.rows.tolist()) != set(rows.tolist())


def _best_density(edges: list[tuple[int, int, float]], n_rows: int, n_cols: int) -> float:
    best = 0.0
    nodes = [("r", i) for i in range(n_rows)] + [("c", j) for j in range(n_cols)]
    for k in range(1, len(nodes) + 1):
        for subset in itertools.combinations(nodes, k):
            s = set(subset)
            mass = sum(w for i, j, w in edges if ("r", i) in s and ("c", j) in s)
            best = max(best, mass / k)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_peel_is_within_factor_two_of_the_densest_block(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_rows, n_cols = 5, 4
    edges = [(i, j, float(rng.uniform(0.2, 1.0))) for i in range(n_rows) for j in range(n_cols)
             if rng.random() < 0.5]
    if not edges:
        return
    r, c, w = zip(*edges, strict=True)
    rmask, cmask, density, mass = peel(list(r), list(c), list(w), n_rows, n_cols)
    best = _best_density(edges, n_rows, n_cols)
    assert best / 2 - 1e-9 <= density <= best + 1e-9
    inside = sum(x for i, j, x in edges if rmask[i] and cmask[j])
    assert mass == pytest.approx(inside)
    assert block_density(list(r), list(c), list(w), n_rows, n_cols) == density


def test_dense_input_validation() -> None:
    assert column_weights([0, 3]).shape == (2,)
    with pytest.raises(ConfigError):
        column_weights([1], offset=1.0)
    with pytest.raises(ConfigError):
        peel([0], [0], [-1.0], 1, 1)
    with pytest.raises(ConfigError):
        fraudar(csr_matrix(np.ones((2, 2))), n_blocks=0)
    with pytest.raises(ConfigError):
        fraudar(csr_matrix(np.ones((2, 2))), col_weights=[1.0])
    assert fraudar(csr_matrix((3, 3))) == []


# --- component analysis and scoring -----------------------------------------------------------


def view(members: dict[str, dict[str, str | tuple[str, ...]]],
         times: dict[str, list[int]], degree: dict[str, int] | None = None,
         thin: dict[str, int] | None = None, fraud: set[str] = frozenset()  # type: ignore[assignment]
         ) -> ComponentView:
    """members: name -> {token: role or roles}."""
    names = sorted(members, key=lambda n: tok("applicant", n))
    toks = [tok("applicant", n) for n in names]
    links = []
    deg: dict[str, int] = {}
    for n in names:
        row = []
        for t, roles in members[n].items():
            rs = (roles,) if isinstance(roles, str) else roles
            row.append((t, role_bits(rs)))
            deg[t] = deg.get(t, 0) + 1
        links.append(tuple(sorted(row)))
    if degree:
        deg.update(degree)
    return ComponentView(
        members=tuple(toks),
        links=tuple(links),
        times=tuple(tuple(sorted(times.get(n, [T0]))) for n in names),
        thin=tuple((thin or {}).get(n, -1) for n in names),
        fraud=tuple(n in fraud for n in names),
        degree=deg,
    )


def device_farm(n: int = 7, spread_s: int = 600) -> ComponentView:
    dev = tok("device", "farm")
    card = tok("card", "mule")
    members = {f"f{i}": {dev: "device", card: "card", tok("phone", f"own{i}"): "phone"}
               for i in range(n)}
    times = {f"f{i}": [T0 + i * spread_s] for i in range(n)}
    return view(members, times, thin={f"f{i}": 1 for i in range(n)})


def score_all(analyses: list[object], config: GraphConfig) -> list[object]:
    feats = [rf for an in analyses for rf in an.rings]  # type: ignore[attr-defined]
    ring_of = {m: rf for rf in feats for m in rf.members}
    scorer = RingScorer(config, sorted(rf.density for rf in feats), lambda t: [], ring_of.get)
    return [scorer.score(rf) for rf in feats]


def test_device_farm_ring_is_flagged_with_valued_reasons() -> None:
    cfg = GraphConfig()
    an = analyse_component(device_farm(7), cfg)
    assert len(an.rings) == 1
    ring = score_all([an], cfg)[0]
    codes = [r.code for r in ring.reasons]  # type: ignore[attr-defined]
    assert "DEVICE_SHARED_BY_7" in codes
    assert "CARD_SHARED_BY_7" in codes
    assert "BURST_7_APPS_IN_3H" in codes
    assert "THIN_FILE_100PCT" in codes
    assert ring.flagged and 0.5 <= ring.score <= 1.0  # type: ignore[attr-defined]
    dev = next(r for r in ring.reasons if r.code == "DEVICE_SHARED_BY_7")  # type: ignore[attr-defined]
    assert dev.evidence["members"] == 7 and dev.evidence["token"] == tok("device", "farm")
    assert 0 < dev.evidence["weight"] <= 1 and dev.evidence["strength"] == 1.0
    shared = {s.token: s for s in ring.shared}  # type: ignore[attr-defined]
    assert shared[tok("device", "farm")].members == 7
    assert len(shared[tok("card", "mule")].holders) == 7
    json.dumps(ring.to_dict())  # type: ignore[attr-defined]


def test_office_cluster_is_a_candidate_but_not_flagged() -> None:
    # twelve colleagues: same office ip and office address (two weak identifiers: linked),
    # applying over months, with credit files
    ip, addr = tok("ip", "office"), tok("address", "office")
    members = {f"c{i}": {ip: "ip", addr: "address"} for i in range(12)}
    times = {f"c{i}": [T0 + i * 9 * 86_400] for i in range(12)}
    cfg = GraphConfig()
    an = analyse_component(view(members, times, thin={f"c{i}": 0 for i in range(12)}), cfg)
    assert len(an.rings) == 1 and an.rings[0].burst == 1
    ring = score_all([an], cfg)[0]
    assert not ring.flagged  # type: ignore[attr-defined]
    assert {s.kind for s in ring.shared} == {"ip", "address"}  # type: ignore[attr-defined]


def test_shared_office_ip_alone_makes_no_ring() -> None:
    ip = tok("ip", "office")
    members = {f"c{i}": {ip: "ip"} for i in range(6)}
    an = analyse_component(view(members, {f"c{i}": [T0] for i in range(6)}), GraphConfig())
    assert an.rings == () and an.n_links == 0


def test_two_farms_joined_by_a_weak_bridge_are_two_rings() -> None:
    members: dict[str, dict[str, str | tuple[str, ...]]] = {}
    for farm in range(2):
        dev = tok("device", f"farm{farm}")
        for i in range(12):
            members[f"f{farm}-{i}"] = {dev: "device"}
    # one member of each farm shares a phone and an address: a single link between them,
    # lighter (about 0.64) than the resolution times 12 x 12 (1.44): CPM keeps them apart
    bridge = {tok("phone", "b"): "phone", tok("address", "b"): "address"}
    members["f0-0"].update(bridge)
    members["f1-0"].update(bridge)
    an = analyse_component(view(members, {}), GraphConfig())
    assert len(an.members) == 24
    assert sorted(len(rf.members) for rf in an.rings) == [12, 12]
    assert len({rf.ring_id for rf in an.rings}) == 2


def test_hub_identifier_is_evidence_but_not_a_link() -> None:
    cfg = GraphConfig(hub_degree_cap=5)
    dev = tok("device", "farm")
    nat = tok("ip", "nat")
    members = {f"f{i}": {dev: "device", nat: "ip"} for i in range(4)}
    an = analyse_component(view(members, {}, degree={nat: 5000}), cfg)
    (rf,) = an.rings
    hub = next(s for s in rf.shared if s.token == nat)
    assert hub.hub and hub.members == 4
    assert not next(s for s in rf.shared if s.token == dev).hub


def test_fraud_hops_and_confirmed_fraud_reasons() -> None:
    # a path a - b - c - d of device links; a is confirmed fraud
    members = {
        "a": {tok("device", "1"): "device"},
        "b": {tok("device", "1"): "device", tok("device", "2"): "device"},
        "c": {tok("device", "2"): "device", tok("device", "3"): "device"},
        "d": {tok("device", "3"): "device"},
    }
    cfg = GraphConfig(resolution=0.001)
    an = analyse_component(view(members, {}, fraud={"a"}), cfg)
    hops = {k: v for k, v in an.fraud_hops.items()}
    assert hops == {tok("applicant", "a"): 0, tok("applicant", "b"): 1,
                    tok("applicant", "c"): 2}
    (rf,) = an.rings
    assert rf.known_fraud == 1 and rf.near_fraud == 2
    ring = score_all([an], cfg)[0]
    codes = {r.code for r in ring.reasons}  # type: ignore[attr-defined]
    assert {"CONFIRMED_FRAUD_1", "NEAR_CONFIRMED_FRAUD_2_HOPS"} <= codes


def test_contact_in_flagged_ring() -> None:
    cfg = GraphConfig()
    farm = analyse_component(device_farm(7), cfg)
    boss_phone = tok("phone", "own0")  # member f0's own phone
    # a household of three, one of whom lists the farm member's phone as emergency contact
    addr, ip = tok("address", "home"), tok("ip", "home")
    members = {f"h{i}": {addr: "address", ip: "ip"} for i in range(3)}
    members["h0"][boss_phone] = "contact"
    home = analyse_component(view(members, {}, degree={boss_phone: 2}), cfg)
    feats = [*farm.rings, *home.rings]
    ring_of = {m: rf for rf in feats for m in rf.members}
    owner = tok("applicant", "f0")

    def owners(t: str) -> list[str]:
        return [owner] if t == boss_phone else []

    scorer = RingScorer(cfg, sorted(rf.density for rf in feats), owners, ring_of.get)
    home_ring = scorer.score(home.rings[0])
    reason = next(r for r in home_ring.reasons if r.code == "CONTACT_IN_FLAGGED_RING")
    assert reason.evidence["rings"] == [farm.rings[0].ring_id]
    assert reason.evidence["tokens"] == [boss_phone]
    assert home_ring.contacts_in_flagged == 1
    assert not scorer.score(farm.rings[0]).contacts_in_flagged


def test_bursts_count_distinct_members_in_the_window() -> None:
    cfg = GraphConfig()
    # seven members 29 minutes apart: 7 within 3 h
    an = analyse_component(device_farm(7, spread_s=29 * 60), cfg)
    assert an.rings[0].burst == 7
    # 2 h apart: at most 2 in any 3 h window, 7 within 24 h (12 h span)
    an = analyse_component(device_farm(7, spread_s=2 * 3600), cfg)
    assert (an.rings[0].burst, an.rings[0].burst_long) == (2, 7)
    ring = score_all([an], cfg)[0]
    assert any(r.code == "BURST_7_APPS_IN_24H" for r in ring.reasons)  # type: ignore[attr-defined]


def test_dense_block_reason_uses_the_rank_among_candidates() -> None:
    assert density_top_pct([], 1.0) == 100.0
    dens = sorted(np.linspace(0.01, 0.5, 200).tolist())
    assert density_top_pct(dens, 0.5) == 0.5
    assert density_top_pct(dens, 0.01) == 100.0
    cfg = GraphConfig()
    an = analyse_component(device_farm(7), cfg)
    rf = an.rings[0]
    assert rf.density > 0.5
    scorer = RingScorer(cfg, sorted([*dens, rf.density]), lambda t: [], lambda a: None)
    ring = scorer.score(rf)
    assert any(r.code == "DENSE_BLOCK_TOP_1PCT" and r.evidence["top_pct"] <= 1.0
               for r in ring.reasons)


def test_analysis_is_a_pure_function_of_the_view() -> None:
    cfg = GraphConfig()
    a1 = analyse_component(device_farm(9), cfg)
    a2 = analyse_component(device_farm(9), cfg)
    assert a1 == a2
    assert a1.rings[0].ring_id == ring_id(a1.rings[0].members)
    assert isinstance(a1.rings[0], RingFeatures)
