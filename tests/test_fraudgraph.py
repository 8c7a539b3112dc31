"""FraudGraph: incremental adds, batch scans, persistence, labels (kyc.graph.fraudgraph)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.build import GraphConfig
from kyc.graph.fraudgraph import FraudGraph
from kyc.graph.identifiers import IdentifierHasher
from kyc.graph.records import Application
from kyc.graph.synth import SynthDataset, generate

SECRET = b"0123456789abcdef-fraudgraph-tests"
T0 = datetime(2024, 3, 1, 9, tzinfo=timezone.utc)


def rec(i: int | str, who: str, *, minutes: int = 0, **ids: Any) -> dict[str, Any]:
    return {"application_id": f"app-{i}", "applicant_id": who, "lender_id": ids.pop("lender", "L1"),
            "lender_type": ids.pop("lender_type", "nbank"),
            "timestamp": T0 + timedelta(minutes=minutes), **ids}


def dumps(rings: list[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in rings]


@pytest.fixture(scope="module")
def synth() -> SynthDataset:
    return generate(2000, seed=11, n_rings=4, ring_size=(5, 20))


@pytest.fixture(scope="module")
def hasher() -> IdentifierHasher:
    return IdentifierHasher(SECRET)


# --- incremental == batch ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("order_seed", [0, 1])
def test_incremental_adds_equal_batch_scan_on_random_interleavings(
    synth: SynthDataset, hasher: IdentifierHasher, order_seed: int
) -> None:
    rng = random.Random(order_seed)
    apps = list(synth.applications)
    rng.shuffle(apps)
    g = FraudGraph(hasher)
    i = 0
    while i < len(apps):  # single adds, batches and queries interleaved at random
        if rng.random() < 0.3:
            k = rng.randint(2, 60)
            g.add_many(apps[i:i + k])
            i += k
        else:
            report = g.add(apps[i])
            assert report.application_id == apps[i].application_id
            i += 1
        if rng.random() < 0.02:
            g.rings()
    incremental = dumps(g.rings())
    assert incremental == dumps(g.scan())
    assert len(incremental) > 10
    # and a fresh graph fed in time order gives the very same rings
    g2 = FraudGraph(hasher)
    g2.add_many(synth.applications)
    assert dumps(g2.rings()) == incremental


def test_small_hub_cap_streaming_equals_batch(synth: SynthDataset, hasher: IdentifierHasher
                                              ) -> None:
    # a cap of 4 makes hundreds of identifiers cross it while streaming
    cfg = GraphConfig(hub_degree_cap=4)
    apps = list(synth.applications)
    random.Random(3).shuffle(apps)
    g = FraudGraph(hasher, config=cfg)
    for k in range(0, len(apps), 97):
        g.add_many(apps[k:k + 97])
        if k % 3 == 0:
            g.rings()
    assert dumps(g.rings()) == dumps(g.scan())


def test_hub_crossing_the_cap_unlinks_and_rebuilds() -> None:
    cfg = GraphConfig(hub_degree_cap=3)
    g = FraudGraph(SECRET, config=cfg)
    for i, who in enumerate(["A", "B", "C"]):
        r = g.add(rec(i, who, minutes=i, device_id="tablet-1"))
    assert r.ring is not None and r.ring.size == 3 and r.component_size == 3
    # A and B also share a card: their link survives the device becoming a hub
    g.add(rec(10, "A", minutes=5, device_id="tablet-1", card="4111111111111111"))
    g.add(rec(11, "B", minutes=6, card="4111111111111111"))
    r = g.add(rec(3, "D", minutes=9, device_id="tablet-1"))  # 4th holder: a hub now
    assert r.component_size == 1 and r.hubs
    assert g.report("A").component_size == 2
    assert g.report("C").component_size == 1
    assert g.report("C").ring is None and g.rings() == []
    assert dumps(g.rings()) == dumps(g.scan())
    hub_token = g.report("C").hubs[0]
    assert hub_token.startswith("device:")


# --- persistence --------------------------------------------------------------------------


def test_restart_from_sqlite_gives_the_same_rings(tmp_path: Path, synth: SynthDataset) -> None:
    path = tmp_path / "graph.db"
    with FraudGraph(SECRET, store=path) as g:
        result = g.add_many(synth.applications[:1500])
        assert result.added == 1500
        for a in synth.applications[1500:1600]:
            g.add(a)
        g.mark_fraud([next(iter(synth.fraud))])
        before = dumps(g.rings())
        summary = g.summary()
    assert summary["applications"] == 1600 and summary["fraud_labels"] == 1
    with FraudGraph(SECRET, store=path) as g2:
        assert len(g2.store) == 1600
        assert dumps(g2.rings()) == before
        assert dumps(g2.scan()) == before
        assert len(g2.fraud_labels()) == 1
        # the reopened graph keeps streaming
        r = g2.add(synth.applications[1600])
        assert r.application_id == synth.applications[1600].application_id
        assert len(g2.store) == 1601


def test_store_written_under_another_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    with FraudGraph(SECRET, store=path) as g:
        g.add(rec(1, "A", device_id="x"))
    with pytest.raises(ConfigError, match="different HMAC secret"):
        FraudGraph(b"another-secret-of-16-bytes", store=path)


def test_store_holds_no_raw_identifier(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    raw = {"device_id": "RAW-DEVICE-77", "phones": "+1 415 555 2671",
           "contact_phones": "212-555-0100", "ip": "203.0.113.77",
           "address": "77 Sunset Boulevard", "card": "4111 1111 1111 1111",
           "email": "raw.person@example.org"}
    with FraudGraph(SECRET, store=path) as g:
        for i in range(4):
            g.add(rec(i, f"NATIONAL-ID-{i}", minutes=i, **raw))
        dump = json.dumps([*dumps(g.rings()), *dumps(g.scan()),
                           g.report("NATIONAL-ID-0").to_dict()])
        g.store.columns(refresh=True)  # the store's columnar copy is searched too
        assert g.store.get_meta("kyc:columns") is not None
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir()) + dump.encode()
    needles = ["RAW-DEVICE-77", "raw-device-77", "4155552671", "2125550100", "203.0.113.77",
               "Sunset", "sunset", "4111111111111111", "4111 1111", "raw.person",
               "NATIONAL-ID", "NATIONALID"]
    for needle in needles:
        assert needle.encode() not in blob, needle


# --- labels, reports, batches -------------------------------------------------------------


def test_mark_fraud_gives_confirmed_and_near_fraud_evidence(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    g = FraudGraph(SECRET, store=path)
    # a path of device links: P0 - P1 - P2 - P3, then a ring of five on one device
    g.add(rec(0, "P0", device_id="d01"))
    g.add(rec(1, "P1", device_id="d01", card="5500000000000004"))
    g.add(rec(2, "P2", card="5500000000000004", email="p2@example.org"))
    g.add(rec(3, "P3", email="p2@example.org", phones="4155552671"))
    g.mark_fraud(["P0"])
    assert g.report("P0").fraud_hops == 0
    r1, r2, r3 = g.report("P1"), g.report("P2"), g.report("P3")
    assert (r1.fraud_hops, r2.fraud_hops, r3.fraud_hops) == (1, 2, None)
    near = next(x for x in r2.reasons if x.code == "NEAR_CONFIRMED_FRAUD_2_HOPS")
    assert near.evidence["hops"] == 2
    assert any(x.code.startswith("CONFIRMED_FRAUD") for x in g.report("P0").reasons)
    ring = g.report("P1").ring
    assert ring is not None and ring.known_fraud == 1
    assert any(x.code == "CONFIRMED_FRAUD_1" for x in ring.reasons)
    g.close()
    with FraudGraph(SECRET, store=path) as again:  # labels persist in the store
        assert again.report("P1").fraud_hops == 1


def test_report_explains_links(tmp_path: Path) -> None:
    g = FraudGraph(SECRET)
    g.add(rec(1, "A", device_id="dev-9", ip="198.51.100.4"))
    g.add(rec(2, "B", device_id="dev-9"))
    g.add(rec(3, "C", ip="198.51.100.4"))
    r = g.report("A")
    links = {lk.other: lk for lk in r.links}
    b, c = g.applicant_token("B"), g.applicant_token("C")
    assert links[b].linked and links[b].evidence == 1.0
    assert [kind for _, kind in links[b].identifiers] == ["device"]
    assert not links[c].linked and links[c].evidence == 0.5
    assert r.component_size == 2
    json.dumps(r.to_dict())
    empty = g.report("never-seen")
    assert empty.component_size == 0 and empty.ring is None and not empty.flagged


def test_add_many_reports_bad_rows_and_goes_on() -> None:
    g = FraudGraph(SECRET)
    rows = [
        rec(1, "A", device_id="x"),
        {"application_id": "bad-1", "applicant_id": "B", "lender_id": "L1",
         "timestamp": "not a time"},
        rec(2, "C", phones="12"),  # not a valid phone number
        {"application_id": "bad-2", "lender_id": "L1", "timestamp": T0},  # no applicant
        rec(3, "D", device_id="x"),
        rec(1, "A", device_id="x"),  # duplicate application id
    ]
    result = g.add_many(rows)
    assert result.rows == 6 and result.added == 2 and result.duplicates == 1
    assert [(e.row, e.field) for e in result.errors] == [
        (1, "timestamp"), (2, "phones"), (3, "applicant_id")]
    assert g.report("D").component_size == 2
    json.dumps(result.to_dict())


def test_add_is_idempotent_and_validates() -> None:
    g = FraudGraph(SECRET)
    first = g.add(rec(1, "A", device_id="x"))
    again = g.add(rec(1, "A", device_id="x"))
    assert first == again and len(g.store) == 1
    with pytest.raises(InvalidRecord):
        g.add({"application_id": "z", "applicant_id": "A", "lender_id": "L",
               "timestamp": "yesterday"})
    with pytest.raises(InvalidRecord):
        g.add(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        g.mark_fraud("A")
    with pytest.raises(ConfigError):
        FraudGraph(b"short")


def test_velocity_and_rescan() -> None:
    g = FraudGraph(SECRET)
    for i in range(6):
        r = g.add(rec(i, "STACKER", minutes=i * 600, lender=f"L{i}",
                      lender_type="bank" if i % 2 else "nbank"))
    assert r.velocity["als_d7_id_all_orgnum"] == 6
    v = g.velocity("STACKER")
    assert v["als_d7_id_nbank_orgnum"] == 3 and v["als_m12_id_all_allnum"] == 6
    assert g.velocity("STACKER", at=T0 - timedelta(days=1))["als_m12_id_all_allnum"] == 0
    rs = g.rescan("STACKER", since=T0 + timedelta(minutes=1))
    assert rs.new_applications == 5
    assert any(x.code == "NEW_LENDERS_SINCE_APPROVAL" for x in rs.reasons)


def test_device_farm_flagged_through_add() -> None:
    g = FraudGraph(SECRET)
    for i in range(7):
        r = g.add(rec(i, f"FARM{i}", minutes=i * 10, device_id="farm-phone",
                      card="4000056655665556", thin_file=True))
    assert r.flagged and r.ring is not None and r.ring.flagged
    codes = [x.code for x in r.reasons]
    assert "DEVICE_SHARED_BY_7" in codes and "BURST_7_APPS_IN_3H" in codes
    assert g.rings()[0].ring_id == r.ring.ring_id


@pytest.mark.slow
def test_ring_recovery_on_synthetic_data(hasher: IdentifierHasher) -> None:
    ds = generate(10_000, seed=21)
    g = FraudGraph(hasher)
    g.add_many(ds.applications)
    rings = g.scan()
    truth = [{g.applicant_token(m) for m in mem} for mem in ds.rings.values()]
    flagged = [set(r.members) for r in rings if r.flagged]

    def hit(a: set[str], b: set[str]) -> bool:
        return len(a & b) / len(a | b) >= 0.5

    recall = sum(any(hit(t, f) for f in flagged) for t in truth) / len(truth)
    precision = sum(any(hit(t, f) for t in truth) for f in flagged) / max(1, len(flagged))
    assert len(truth) >= 3
    assert recall >= 0.9 and precision >= 0.9


def test_application_objects_and_mappings_are_both_accepted() -> None:
    g = FraudGraph(SECRET)
    app = Application.from_mapping(rec(1, "A", device_id="x"))
    g.add(app)
    g.add(rec(2, "B", device_id="x"))
    assert g.report("A").component_size == 2


def test_add_hashed_equals_add_many(synth: SynthDataset, hasher: IdentifierHasher) -> None:
    from kyc.graph.records import hash_application

    apps = synth.applications[:600]
    a = FraudGraph(hasher)
    a.add_many(apps)
    b = FraudGraph(hasher)
    b.rings()  # loaded first: add_hashed then indexes as it goes
    result = b.add_hashed(hash_application(x, hasher) for x in [*apps, apps[0]])
    assert (result.rows, result.added, result.duplicates) == (601, 600, 1)
    assert dumps(a.rings()) == dumps(b.rings())
    with pytest.raises(ConfigError):
        b.add_hashed([apps[0]])  # type: ignore[list-item]
