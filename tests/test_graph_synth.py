"""Tests for the seeded synthetic application generator (kyc.graph.synth)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import phonenumbers
import pytest

from kyc.errors import ConfigError
from kyc.graph import synth
from kyc.graph.synth import SynthDataset, generate, write_csv


@pytest.fixture(scope="module")
def ds() -> SynthDataset:
    return generate(20_000, seed=7)


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())[-10:]


def _identifiers(app: dict[str, object]) -> set[tuple[str, str]]:
    """(kind, canonical value) of every identifier an application carries; phones by digits."""
    out: set[tuple[str, str]] = set()
    for kind in ("device_id", "ip", "address", "card", "email"):
        v = app[kind]
        if v:
            out.add((kind, " ".join(str(v).lower().split())))
    for p in (*app["phones"], *app["contact_phones"]):  # type: ignore[misc]
        out.add(("phone", _digits(p)))
    return out


def _by_applicant(ds: SynthDataset) -> dict[str, list[dict[str, object]]]:
    cols = ds.applications_columns()
    out: dict[str, list[dict[str, object]]] = defaultdict(list)
    for i, who in enumerate(cols["applicant_id"]):
        out[who].append({k: cols[k][i] for k in cols})
    return out


def test_same_seed_gives_identical_dataset() -> None:
    a = generate(3_000, seed=11)
    b = generate(3_000, seed=11)
    assert a.applications_columns() == b.applications_columns()
    assert a.ring_of == b.ring_of and a.fraud == b.fraud and a.stackers == b.stackers
    assert a.hubs == b.hubs and a.ring_plans == b.ring_plans


def test_different_seed_gives_different_dataset() -> None:
    a = generate(3_000, seed=11)
    b = generate(3_000, seed=12)
    assert a.applications_columns()["applicant_id"] != b.applications_columns()["applicant_id"]
    assert set(a.applications_columns()["device_id"]) != set(b.applications_columns()["device_id"])


def test_different_seeds_draw_separate_identifier_universes() -> None:
    a = generate(3_000, seed=1).applications_columns()
    b = generate(3_000, seed=2).applications_columns()
    for col in ("device_id", "card", "email", "ip", "address"):
        shared = (set(a[col]) - {None}) & (set(b[col]) - {None})
        assert not shared, f"{col} values shared across seeds: {sorted(shared)[:3]}"


@pytest.mark.parametrize("n", [1, 7, 100, 2_345])
def test_exact_number_of_applications(n: int) -> None:
    d = generate(n, seed=1)
    assert len(d) == n
    cols = d.applications_columns()
    assert len(set(cols["application_id"])) == n
    ts = d.timestamps()
    assert (ts[1:] >= ts[:-1]).all(), "applications come in time order"


def test_population_matches_dgraph_fin_shape(ds: SynthDataset) -> None:
    s = ds.stats()
    assert s["n_applications"] == 20_000
    # DGraph-Fin: 0.42 % fraud among all nodes, 67 % background nodes without loans
    assert 0.008 <= s["fraud_rate_applicants"] <= 0.02
    assert 0.002 <= s["fraud_rate_population"] <= 0.007
    assert 0.6 <= s["background_share"] <= 0.75
    # about 3.5 emergency contacts per borrower (4.3 M edges / 1.2 M borrowers)
    assert 2.5 <= s["contact_links"] / s["n_applications"] <= 4.5
    assert s["n_rings"] >= 5 and s["n_stackers"] >= 50
    assert set(ds.ring_of) <= ds.fraud
    assert len(ds.fraud) > len(ds.ring_of), "lone fraudsters exist outside rings"
    assert not ds.stackers & set(ds.ring_of)


def test_timestamps_span_one_year_in_utc(ds: SynthDataset) -> None:
    times = ds.applications_columns()["timestamp"]
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert all(t.tzinfo is timezone.utc for t in times[:100])
    assert min(times) >= start and max(times) < start + timedelta(days=366)
    assert max(times) - min(times) > timedelta(days=300)


def test_rings_have_promised_structure(ds: SynthDataset) -> None:
    apps = _by_applicant(ds)
    all_ids = set(apps)
    normal = all_ids - ds.fraud
    owner_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for who, rows in apps.items():
        for row in rows:
            for ident in _identifiers(row):
                owner_of[ident].add(who)
    for rid, members in ds.rings.items():
        assert 5 <= len(members) <= 50
        assert all(ds.ring_of[m] == rid for m in members)
        plan = ds.ring_plans[rid]
        assert set(plan.members) == members
        # lockstep: every application of the ring inside its burst window
        times = [row["timestamp"] for m in members for row in apps[m]]
        assert min(times) >= plan.burst_start
        assert max(times) <= plan.burst_start + timedelta(hours=plan.burst_hours)
        assert {row["lender_id"] for m in members for row in apps[m]} <= set(plan.lenders)
        controller = {_digits(p) for p in plan.controller_phones}
        for m in members:
            idents = set().union(*(_identifiers(r) for r in apps[m]))
            # a strong tie to another member: a device, card or phone they also carry
            strong = {i for i in idents if i[0] in ("device_id", "card", "phone")}
            mates = set().union(*(owner_of[i] for i in strong)) & members
            assert mates - {m}, f"ring member {m} of {rid} shares nothing strong"
            assert any(i == ("phone", c) for i in idents for c in controller)
            # camouflage: a weak identifier shared with a normal applicant
            shared_normal = set().union(*(owner_of[i] for i in idents)) & normal
            assert shared_normal, f"ring member {m} has no camouflage link"


def test_ring_members_share_devices_from_the_device_farm(ds: SynthDataset) -> None:
    cols = ds.applications_columns()
    for rid, plan in ds.ring_plans.items():
        farm = set(plan.devices)
        used = [d for d, who in zip(cols["device_id"], cols["applicant_id"], strict=True)
                if who in ds.rings[rid]]
        assert sum(d in farm for d in used) >= 0.6 * len(used)


def test_hubs_are_planted_and_large(ds: SynthDataset) -> None:
    labels = {h.label for h in ds.hubs}
    assert {"carrier_nat_ip", "public_wifi_ip", "call_centre_contact",
            "branch_kiosk_device", "dormitory_address"} <= labels
    biggest = ds.hubs[0]
    assert biggest.label == "carrier_nat_ip" and biggest.n_applicants >= 1_000
    cc = max(h.n_applicants for h in ds.hubs if h.label == "call_centre_contact")
    assert cc >= 100
    # the recorded counts agree with the data
    cols = ds.applications_columns()
    nat = biggest.value
    users = {w for w, ip in zip(cols["applicant_id"], cols["ip"], strict=True) if ip == nat}
    assert len(users) == biggest.n_applicants


def test_without_hubs_no_identifier_is_huge() -> None:
    d = generate(20_000, seed=7, hubs=False)
    assert d.hubs == ()
    cols = d.applications_columns()
    per_ip: dict[str, set[str]] = defaultdict(set)
    for who, ip in zip(cols["applicant_id"], cols["ip"], strict=True):
        if ip:
            per_ip[ip].add(who)
    assert max(len(v) for v in per_ip.values()) <= 500


def test_stackers_apply_at_many_lenders_within_days(ds: SynthDataset) -> None:
    apps = _by_applicant(ds)
    for who in ds.stackers:
        rows = apps[who]
        lenders = [r["lender_id"] for r in rows]
        assert len(rows) >= 5 and len(set(lenders)) == len(lenders)
        times = [r["timestamp"] for r in rows]
        assert max(times) - min(times) <= timedelta(days=7)
    types = {r["lender_type"] for w in ds.stackers for r in apps[w]}
    assert types == {"bank", "nbank"}


def test_thin_file_flags_are_more_common_in_rings(ds: SynthDataset) -> None:
    ring_thin = [ds.thin_file[m] for m in ds.ring_of if ds.thin_file[m] is not None]
    normal = [v for k, v in ds.thin_file.items() if k not in ds.fraud and v is not None]
    assert sum(ring_thin) / len(ring_thin) > 2 * sum(normal) / len(normal)
    assert any(v is None for v in ds.thin_file.values())


def test_phones_are_valid_numbers_in_the_default_region(ds: SynthDataset) -> None:
    cols = ds.applications_columns()
    seen = 0
    styles = set()
    for phones, contacts in zip(cols["phones"][:1500], cols["contact_phones"][:1500],
                                strict=True):
        for p in (*phones, *contacts):
            num = phonenumbers.parse(p, "US")
            assert phonenumbers.is_valid_number(num), p
            styles.add(p[:2] if p.startswith("+") else p[0].isdigit())
            seen += 1
    assert seen > 3_000 and len(styles) >= 2


def test_e164_style_option() -> None:
    d = generate(500, seed=2, phone_style="e164")
    phones = [p for t in d.applications_columns()["phones"] for p in t]
    assert phones and all(p.startswith("+1") and p[1:].isdigit() for p in phones)


def test_hashing_accepts_every_generated_identifier() -> None:
    from kyc.graph.identifiers import IdentifierHasher
    from kyc.graph.records import hash_application

    d = generate(400, seed=4, n_rings=2)
    hasher = IdentifierHasher(b"synth-test-secret-0123456789")
    hashed = [hash_application(a, hasher) for a in d.applications]
    assert len(hashed) == 400 and all(h.links for h in hashed)


def test_csv_round_trip_through_read_applications(tmp_path: Path, ds: SynthDataset) -> None:
    from kyc.graph.records import CSV_COLUMNS, read_applications

    assert synth.CSV_COLUMNS == CSV_COLUMNS
    small = generate(1_500, seed=5)
    path = write_csv(small, tmp_path / "apps.csv")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(CSV_COLUMNS)
    loaded = read_applications(path)
    assert loaded.errors == []
    assert loaded.applications == small.applications
    again = read_applications(small.to_records())
    assert again.errors == [] and again.applications == small.applications


def test_explicit_ring_count_and_size_range() -> None:
    d = generate(600, seed=3, n_rings=3, ring_size=(6, 8))
    assert len(d.rings) == 3
    assert all(6 <= len(m) <= 8 for m in d.rings.values())


def test_stealth_knobs_spread_bursts_and_thin_out_the_device_farm() -> None:
    d = generate(20_000, seed=7, ring_burst_hours=(48.0, 240.0), ring_device_share=0.3)
    spans = [p.burst_hours for p in d.ring_plans.values()]
    assert min(spans) >= 48.0 and max(spans) <= 240.0
    cols = d.applications_columns()
    farm = {dv for p in d.ring_plans.values() for dv in p.devices}
    ring_devs = [dv for dv, who in zip(cols["device_id"], cols["applicant_id"], strict=True)
                 if who in d.ring_of]
    assert sum(dv in farm for dv in ring_devs) < 0.5 * len(ring_devs)


def test_to_dict_is_plain_json(ds: SynthDataset) -> None:
    import json

    json.dumps([h.to_dict() for h in ds.hubs])
    json.dumps([p.to_dict() for p in ds.ring_plans.values()])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_applications": 0}, "n_applications"),
        ({"n_applications": 100, "ring_size": (1, 3)}, "ring_size"),
        ({"n_applications": 100, "fraud_rate": 1.5}, "fraud_rate"),
        ({"n_applications": 40, "n_rings": 10, "ring_size": (20, 20)}, "rings"),
        ({"n_applications": 100, "phone_style": "dots"}, "phone_style"),
        ({"n_applications": 100, "ring_burst_hours": (5.0, 1.0)}, "ring_burst_hours"),
        ({"n_applications": 100, "ring_device_share": 2.0}, "ring_device_share"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        generate(**kwargs)  # type: ignore[arg-type]
