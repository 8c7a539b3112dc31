"""Multi-lender velocity windows (kyc.graph.velocity), checked against a brute-force oracle."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyc.errors import ConfigError
from kyc.graph.records import HashedApplication
from kyc.graph.velocity import DAY, KEYS, WINDOWS, VelocityIndex, feature_name

T0 = 1_700_000_000
TYPES = ("bank", "nbank", "cf")
LENDERS = {f"L{i}": TYPES[i % 3] for i in range(7)}
LENDERS["LX"] = "nbank"  # two lenders of one type


def _token(kind: str, i: int) -> str:
    return f"{kind}:{i:032x}"


def _app(i: int, applicant: int, lender: str, ts: int, phones: tuple[int, ...] = (),
         devices: tuple[int, ...] = (), contacts: tuple[int, ...] = ()) -> HashedApplication:
    links = [("phone", _token("phone", p)) for p in phones]
    links += [("device", _token("device", d)) for d in devices]
    links += [("contact", _token("phone", c)) for c in contacts]
    return HashedApplication(
        application_id=f"a{i}", applicant=_token("applicant", applicant), lender_id=lender,
        lender_type=LENDERS.get(lender, "bank"), ts=ts, links=tuple(sorted(set(links))),
    )


def _random_apps(rng: random.Random, n: int) -> list[HashedApplication]:
    # a small pool of timestamps makes ties and exact window boundaries common
    pool = [T0 + rng.choice([0, 1, 7, 15, 30, 90, 180, 365, 400]) * DAY + rng.choice([0, 0, 1, -1])
            for _ in range(12)]
    apps = []
    for i in range(n):
        ts = rng.choice(pool) if rng.random() < 0.6 else T0 + rng.randrange(0, 500 * DAY)
        apps.append(_app(
            i, rng.randrange(6), rng.choice(list(LENDERS)), ts,
            phones=tuple(rng.sample(range(5), rng.randint(0, 2))),
            devices=tuple(rng.sample(range(4), rng.randint(0, 1))),
            contacts=tuple(rng.sample(range(5), rng.randint(0, 1))),
        ))
    return apps


def _oracle(apps: list[HashedApplication], key: str, token: str, at: int,
            types: tuple[str, ...]) -> dict[str, int]:
    def has(a: HashedApplication) -> bool:
        if key == "id":
            return a.applicant == token
        role = "phone" if key == "cell" else "device"
        return (role, token) in a.links

    out: dict[str, int] = {}
    mine = [a for a in apps if has(a)]
    for wname, secs in WINDOWS.items():
        inside = [a for a in mine if at - secs < a.ts <= at]
        for t in ("all", *types):
            sel = [a for a in inside if t == "all" or a.lender_type == t]
            out[feature_name(wname, key, t, "allnum")] = len(sel)
            out[feature_name(wname, key, t, "orgnum")] = len({a.lender_id for a in sel})
    return out


def _check_against_oracle(apps: list[HashedApplication], order: list[HashedApplication],
                          ats: list[int]) -> None:
    idx = VelocityIndex()
    for a in order:
        idx.add(a)
    types = idx.lender_types
    assert set(types) == {a.lender_type for a in apps}
    tokens = {
        "id": {a.applicant for a in apps} | {_token("applicant", 99)},
        "cell": {t for a in apps for t in a.tokens("phone")},
        "device": {t for a in apps for t in a.tokens("device")},
    }
    for key in KEYS:
        for token in tokens[key]:
            for at in ats:
                got = idx.features(key, token, at)
                assert got == _oracle(apps, key, token, at, types), (key, token, at)
                assert list(got) == idx.feature_names(key)


def _boundary_times(apps: list[HashedApplication], rng: random.Random) -> list[int]:
    ats = set()
    for a in rng.sample(apps, min(len(apps), 15)):
        for secs in WINDOWS.values():
            ats.update({a.ts + secs, a.ts + secs - 1, a.ts})
    ats.update(a.ts - 1 for a in apps[:3])
    return sorted(ats)


@pytest.mark.parametrize("seed", range(4))
def test_features_match_brute_force_in_time_order(seed: int) -> None:
    rng = random.Random(seed)
    apps = _random_apps(rng, 120)
    in_order = sorted(apps, key=lambda a: a.ts)
    _check_against_oracle(apps, in_order, _boundary_times(apps, rng))


@pytest.mark.parametrize("seed", range(4))
def test_features_match_brute_force_out_of_order(seed: int) -> None:
    rng = random.Random(100 + seed)
    apps = _random_apps(rng, 120)
    shuffled = list(apps)
    rng.shuffle(shuffled)
    _check_against_oracle(apps, shuffled, _boundary_times(apps, rng))
    # reverse time order: every insert goes to the front
    _check_against_oracle(apps, sorted(apps, key=lambda a: -a.ts), _boundary_times(apps, rng))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(sorted(LENDERS)),
                  st.integers(0, 400 * DAY), st.integers(0, 2)),
        min_size=1, max_size=25,
    ),
    st.integers(0, 800 * DAY),
)
def test_features_match_brute_force_hypothesis(
    rows: list[tuple[int, str, int, int]], at_offset: int
) -> None:
    apps = [_app(i, who, lender, T0 + ts, phones=(ph,), devices=(ph,))
            for i, (who, lender, ts, ph) in enumerate(rows)]
    ats = [T0 + at_offset, *(a.ts + s for a in apps[:3] for s in WINDOWS.values())]
    _check_against_oracle(apps, apps, ats)


def test_window_is_half_open() -> None:
    idx = VelocityIndex()
    idx.add(_app(0, 1, "L1", T0))
    token = _token("applicant", 1)
    assert idx.features("id", token, T0)["als_d7_id_all_allnum"] == 1  # at == ts counts
    assert idx.features("id", token, T0 - 1)["als_d7_id_all_allnum"] == 0  # future not counted
    assert idx.features("id", token, T0 + 7 * DAY - 1)["als_d7_id_all_allnum"] == 1
    assert idx.features("id", token, T0 + 7 * DAY)["als_d7_id_all_allnum"] == 0
    assert idx.features("id", token, T0 + 7 * DAY)["als_d15_id_all_allnum"] == 1
    assert idx.features("id", token, T0 + 365 * DAY)["als_m12_id_all_allnum"] == 0


def test_bureau_names_and_counts() -> None:
    idx = VelocityIndex()
    for i, lender in enumerate(["L1", "L1", "LX", "L2"]):  # nbank, nbank, nbank, cf
        idx.add(_app(i, 1, lender, T0 + i * DAY, phones=(3,), devices=(2,)))
    f = idx.features("id", _token("applicant", 1), T0 + 3 * DAY)
    assert f["als_m3_id_nbank_allnum"] == 3 and f["als_m3_id_nbank_orgnum"] == 2
    assert f["als_m3_id_cf_orgnum"] == 1 and f["als_m3_id_all_orgnum"] == 3
    assert f["als_m3_id_all_allnum"] == 4
    cell = idx.features("cell", _token("phone", 3), T0 + 3 * DAY)
    assert cell["als_d7_cell_all_allnum"] == 4
    dev = idx.features("device", _token("device", 2), T0 + 3 * DAY)
    assert dev["als_m12_device_nbank_orgnum"] == 2
    assert len(f) == len(WINDOWS) * (1 + len(idx.lender_types)) * 2


def test_contact_phones_are_not_cell_velocity() -> None:
    idx = VelocityIndex()
    idx.add(_app(0, 1, "L1", T0, contacts=(4,)))
    assert idx.features("cell", _token("phone", 4), T0)["als_d7_cell_all_allnum"] == 0


def test_unknown_token_gives_zeros_and_duplicates_are_ignored() -> None:
    idx = VelocityIndex()
    a = _app(0, 1, "L1", T0)
    assert idx.add(a) is True
    assert idx.add(a) is False
    assert idx.add_many([a, _app(1, 1, "L1", T0)]) == 1
    assert len(idx) == 2 and "a0" in idx
    f = idx.features("id", _token("applicant", 1), T0)
    assert f["als_d7_id_all_allnum"] == 2 and f["als_d7_id_all_orgnum"] == 1
    zero = idx.features("device", _token("device", 9), T0)
    assert set(zero.values()) == {0}


def test_fixed_lender_types() -> None:
    idx = VelocityIndex(lender_types=["bank", "nbank"])
    idx.add(_app(0, 1, "L2", T0))  # type cf: only in "all"
    idx.add(_app(1, 1, "L1", T0))  # nbank
    f = idx.features("id", _token("applicant", 1), T0)
    assert not any("_cf_" in k for k in f)
    assert f["als_d7_id_all_allnum"] == 2 and f["als_d7_id_nbank_allnum"] == 1
    assert f["als_d7_id_bank_allnum"] == 0
    with pytest.raises(ConfigError):
        VelocityIndex(lender_types=["all"])


def test_bad_key_and_time() -> None:
    idx = VelocityIndex()
    with pytest.raises(ConfigError, match="key"):
        idx.features("email", "email:x", T0)
    with pytest.raises(ConfigError):
        idx.features("id", "applicant:x", "yesterday")  # type: ignore[arg-type]
    dt = datetime.fromtimestamp(T0, tz=timezone.utc)
    idx.add(_app(0, 1, "L1", T0))
    assert idx.features("id", _token("applicant", 1), dt)["als_d7_id_all_allnum"] == 1
    naive = dt.replace(tzinfo=None)  # naive = UTC
    assert idx.features("id", _token("applicant", 1), naive)["als_d7_id_all_allnum"] == 1


def test_applicant_features_take_the_busiest_phone() -> None:
    idx = VelocityIndex()
    idx.add(_app(0, 1, "L1", T0, phones=(1, 2), devices=(1,)))
    for i in range(1, 4):  # phone 2 is also used by applicant 2 at three lenders
        idx.add(_app(i, 2, f"L{i}", T0 + i, phones=(2,)))
    idx.add(_app(9, 1, "L5", T0 + 10 * DAY, phones=(3,)))  # later phone: not known at T0 + 5
    f = idx.applicant_features(_token("applicant", 1), T0 + 5)
    assert f["als_d7_id_all_allnum"] == 1
    assert f["als_d7_cell_all_allnum"] == 4 and f["als_d7_cell_all_orgnum"] == 3  # L1 twice
    assert f["als_d7_device_all_allnum"] == 1
    later = idx.applicant_features(_token("applicant", 1), T0 + 10 * DAY)
    assert later["als_m1_id_all_allnum"] == 2


def test_rescan_reports_what_changed_since_approval() -> None:
    idx = VelocityIndex()
    me = _token("applicant", 1)
    approval = T0 + 10 * DAY
    idx.add(_app(0, 1, "L1", T0, phones=(1,), devices=(1,)))  # the approved application
    idx.add(_app(1, 1, "L2", T0 + 2 * DAY, phones=(1,)))
    # after approval: two more lenders (one already known), a new phone, another
    # applicant on my device
    idx.add(_app(2, 1, "L2", approval + DAY, phones=(1,)))
    idx.add(_app(3, 1, "L3", approval + 2 * DAY, phones=(2,)))
    idx.add(_app(4, 1, "L4", approval + 3 * DAY))
    idx.add(_app(5, 7, "L5", approval + 4 * DAY, devices=(1,)))
    idx.add(_app(6, 7, "L5", approval - DAY, devices=(1,)))  # before approval: not counted
    r = idx.rescan(me, approval, approval + 5 * DAY)
    assert r.changed
    assert r.new_applications == 3
    assert set(r.lenders_since) == {"L2", "L3", "L4"}
    assert set(r.new_lenders) == {"L3", "L4"}
    assert r.new_phones == (_token("phone", 2),) and r.new_devices == ()
    assert r.linked_applicants == (_token("applicant", 7),) and r.linked_applications == 1
    codes = {x.code: x.evidence for x in r.reasons}
    assert codes["NEW_LENDERS_SINCE_APPROVAL"]["count"] == 2
    assert codes["NEW_APPLICATIONS_SINCE_APPROVAL"]["count"] == 3
    assert codes["NEW_PHONE_SINCE_APPROVAL"]["count"] == 1
    assert codes["LINKED_APPLICANTS_SINCE_APPROVAL"]["devices"] == [_token("device", 1)]
    assert "NEW_DEVICE_SINCE_APPROVAL" not in codes
    assert r.velocity_delta["als_d7_id_all_allnum"] == 3
    d = r.to_dict()
    assert d["changed"] is True and d["reasons"][0]["code"]
    # default 'at' is the latest time seen
    assert idx.rescan(me, approval).at == approval + 4 * DAY


def test_rescan_quiet_applicant() -> None:
    idx = VelocityIndex()
    idx.add(_app(0, 1, "L1", T0, phones=(1,)))
    r = idx.rescan(_token("applicant", 1), T0, T0 + 30 * DAY)
    # the application left the 7/15-day windows: a decay, not news
    assert not r.changed and r.reasons == () and r.velocity_delta == {}
    unknown = idx.rescan(_token("applicant", 5), T0, T0 + DAY)
    assert not unknown.changed
    with pytest.raises(ConfigError):
        idx.rescan(_token("applicant", 1), T0 + DAY, T0)
