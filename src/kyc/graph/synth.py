"""Seeded synthetic loan applications with planted fraud rings, hubs and stackers.

No public loan-applicant graph (shared devices, phones, emergency contacts) can be shipped, so
tests and benchmarks use this generator. Its shape follows the published figures of
DGraph-Fin (FinVolution; 3.7 M users, 4.3 M emergency-contact edges, 0.42 % fraud, 67 % of
nodes are "background" people who never borrow and only appear as someone's contact):

* **Normal applicants** live in households (heavy-tailed sizes) that share an address, a home
  IP, sometimes a family tablet or a bank card; they list one to five emergency contacts
  (3.5 on average, as DGraph-Fin's 4.3 M edges over 1.2 M borrowers), mostly people who
  never apply (background phones, a few of them listed by a dozen), some of them household
  members or friends who also apply. Half of them work somewhere whose office
  IP is shared by 2 to 500 colleagues. A few second-hand phones link unrelated people.
* **Hubs** that glue naive graphs into one giant component: carrier NAT IPs (thousands of
  applicants each), public Wi-Fi IPs, call-centre numbers written as the contact by hundreds,
  branch kiosk tablets used by hundreds, and dormitory addresses.
* **Rings** of 5 to 50 synthetic identities: a few shared devices (a device farm), mule cards,
  one or two controller phones that every member lists as a contact, members listing each
  other as contacts, drop addresses and a proxy IP, with lockstep timing (all applications in
  a burst of 2 to 36 hours at a handful of lenders) and camouflage: each member also lists a
  normal applicant as a contact, and uses NAT, Wi-Fi or real household addresses shared with
  normal applicants.
* **Lone fraudsters** (thin-file identities in no ring), so ``fraud`` is wider than the rings.
* **Stackers**: ordinary people who apply at 5 to 15 different lenders (``bank`` and
  ``nbank``) within a few days (the multi-lender signal of the velocity counters).

With the defaults, applicants are 1.27 % fraudulent, which with two background contacts per
applicant is DGraph-Fin's 0.42 % of all people; :meth:`SynthDataset.stats` reports the
figures. Knobs (``ring_burst_hours``, ``ring_device_share``, ``ring_card_share``, ``hubs``,
``camouflage``) make rings stealthier or remove hubs.

Everything is drawn from :class:`numpy.random.Generator` streams seeded by ``seed``, so the
same seed gives the same dataset byte for byte, and different seeds draw separate identifier
universes (they can be mixed). Arrays are generated vectorised (10^6 applications in about
20 s on one loaded core); the :class:`~kyc.graph.records.Application` objects are only built
when :attr:`SynthDataset.applications` is first read (CSV export does not need them).

>>> from kyc.graph.synth import generate
>>> ds = generate(2_000, seed=1)
>>> len(ds.applications_columns()["application_id"])
2000
>>> all(5 <= len(m) <= 50 for m in ds.rings.values())
True
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from kyc.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kyc.graph.records import Application

__all__ = [
    "CSV_COLUMNS",
    "Hub",
    "RingPlan",
    "SynthDataset",
    "generate",
    "write_csv",
]

CSV_COLUMNS: tuple[str, ...] = (
    "application_id",
    "applicant_id",
    "lender_id",
    "lender_type",
    "timestamp",
    "device_id",
    "phones",
    "contact_phones",
    "ip",
    "address",
    "card",
    "email",
    "thin_file",
)
"""Column order of :func:`write_csv` (the CSV format :mod:`kyc.graph.records` reads)."""

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolA = npt.NDArray[np.bool_]

_DEFAULT_START = datetime(2024, 1, 1, tzinfo=timezone.utc)

# Area codes checked valid for phonenumbers' US metadata (any exchange 200-999 except N11/555).
_AREA_CODES = np.array(
    [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224,
     225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270,
     276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318,
     319, 320, 321, 323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402,
     404, 405, 406, 407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425, 432, 434,
     435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512,
     513, 515, 516, 517, 518, 520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573,
     574, 580, 585, 586, 601, 602, 603, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617,
     618, 619, 620, 623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 682, 701,
     702, 703, 704, 706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731,
     732, 734, 740, 754, 757, 760, 763, 765, 770, 772, 773, 774, 775, 781, 785, 786, 801, 802,
     803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816, 817, 818, 828, 830, 831, 832, 843,
     845, 847, 848, 850, 856, 857, 858, 859, 860, 862, 863, 864, 865, 870, 901, 903, 904, 906,
     907, 908, 909, 910, 912, 913, 914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937,
     940, 941, 947, 949, 951, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980, 985, 989],
    dtype=np.int64,
)

_STREETS = (
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
    "Walnut", "Spring", "North", "Ridge", "Church", "Willow", "Mill", "Sunset", "Railroad",
    "Jackson", "Cherry", "Highland", "Lincoln", "Forest", "Jefferson", "Center", "River",
    "Madison", "Meadow", "Franklin", "Chestnut", "Adams", "Dogwood", "Hickory", "Laurel",
    "Poplar", "Sycamore", "Birch", "Valley", "Lakeview", "Broad", "Prospect", "Union", "Grove",
    "Front", "Locust", "Bridge", "School", "Market", "Water", "Clinton", "Liberty", "Academy",
    "Summit", "Hillside", "Green", "Orchard", "Mulberry", "Aspen", "Magnolia", "Wood",
    "Spruce", "Harrison", "Monroe",
)
_SUFFIXES = ("St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Way")
_CITIES = (
    ("Springfield", "IL", 62701), ("Columbus", "OH", 43004), ("Austin", "TX", 73301),
    ("Denver", "CO", 80201), ("Portland", "OR", 97201), ("Phoenix", "AZ", 85001),
    ("Atlanta", "GA", 30301), ("Boston", "MA", 2108), ("Seattle", "WA", 98101),
    ("Miami", "FL", 33101), ("Nashville", "TN", 37201), ("Detroit", "MI", 48201),
    ("Raleigh", "NC", 27601), ("Tampa", "FL", 33601), ("Omaha", "NE", 68101),
    ("Tucson", "AZ", 85701), ("Fresno", "CA", 93701), ("Oakland", "CA", 94601),
    ("Madison", "WI", 53701), ("Reno", "NV", 89501), ("Boise", "ID", 83701),
    ("Richmond", "VA", 23218), ("Dayton", "OH", 45401), ("Albany", "NY", 12201),
    ("Tulsa", "OK", 74101), ("Wichita", "KS", 67201), ("Newark", "NJ", 7101),
    ("Buffalo", "NY", 14201), ("Memphis", "TN", 37501), ("Louisville", "KY", 40201),
    ("Baltimore", "MD", 21201), ("Milwaukee", "WI", 53201),
)
_FIRST = (
    "james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "david",
    "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas",
    "sarah", "chris", "karen", "daniel", "lisa", "matthew", "nancy", "anthony", "betty", "mark",
    "sandra", "paul", "ashley", "steven", "emily", "andrew", "donna", "kevin", "michelle",
    "brian", "carol", "george", "amanda", "wei", "mei", "jose", "maria", "ahmed", "fatima",
    "ivan", "olga", "kofi", "ama", "raj", "priya", "hiro", "yuki", "min", "ji",
)
_LAST = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
    "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor",
    "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez",
    "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright",
    "scott", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall",
    "rivera", "campbell", "mitchell", "carter", "roberts", "chen", "wang", "kim", "patel",
    "singh", "okafor", "mensah", "ivanov", "tanaka", "sato",
)
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com",
            "proton.me", "mail.com")

# Hour-of-day weights for ordinary applications (quiet at night, busy at lunch and evening).
_HOUR_W = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 5.5, 5, 4.5, 4.5, 4.5, 5,
                    5.5, 6, 6, 5, 3.5, 2], dtype=np.float64)

# identifier id spaces (kept apart by an offset so ids never collide across sources)
_SPACE = 1 << 40


@dataclass(frozen=True)
class Hub:
    """One planted hub identifier (raw value) and how many applicants use it.

    ``kind`` is the identifier kind (``"ip"``, ``"phone"``, ``"device"``, ``"address"``),
    ``label`` what it stands for (``"carrier_nat_ip"``, ``"public_wifi_ip"``,
    ``"call_centre_contact"``, ``"branch_kiosk_device"``, ``"dormitory_address"``).
    """

    kind: str
    label: str
    value: str
    n_applicants: int
    n_applications: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields."""
        return {"kind": self.kind, "label": self.label, "value": self.value,
                "n_applicants": self.n_applicants, "n_applications": self.n_applications}


@dataclass(frozen=True)
class RingPlan:
    """How one planted ring was built: its members and the identifiers they share (raw)."""

    ring_id: str
    members: tuple[str, ...]
    burst_start: datetime
    burst_hours: float
    lenders: tuple[str, ...]
    devices: tuple[str, ...]
    cards: tuple[str, ...]
    controller_phones: tuple[str, ...]
    drop_addresses: tuple[str, ...]
    proxy_ip: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields (timestamps as ISO 8601)."""
        return {
            "ring_id": self.ring_id, "members": list(self.members),
            "burst_start": self.burst_start.isoformat(), "burst_hours": self.burst_hours,
            "lenders": list(self.lenders), "devices": list(self.devices),
            "cards": list(self.cards), "controller_phones": list(self.controller_phones),
            "drop_addresses": list(self.drop_addresses), "proxy_ip": self.proxy_ip,
        }


@dataclass(frozen=True, eq=False)
class SynthDataset:
    """A generated population of applications with ground truth.

    Attributes:
        ring_of: applicant_id -> ring_id for every planted ring member.
        rings: ring_id -> set of member applicant_ids (5 to 50 each).
        fraud: applicant_ids that are fraudulent (ring members and lone fraudsters).
        stackers: applicant_ids of multi-lender stackers (not fraud by themselves).
        hubs: the planted hub identifiers with their applicant counts.
        ring_plans: ring_id -> :class:`RingPlan` (the shared identifiers, raw).
        thin_file: applicant_id -> thin-file flag (``None`` when unknown).
        n_background: distinct contact phones of people who never apply.
        seed: the seed it was generated with.

    :attr:`applications` (a list of :class:`kyc.graph.records.Application`, sorted by time) is
    built on first access; :meth:`applications_columns` gives the same data as string columns.
    """

    ring_of: dict[str, str]
    rings: dict[str, set[str]]
    fraud: set[str]
    stackers: set[str]
    hubs: tuple[Hub, ...]
    ring_plans: dict[str, RingPlan]
    thin_file: dict[str, bool | None]
    n_background: int
    seed: int
    _columns: dict[str, list[Any]] = field(repr=False)

    def __len__(self) -> int:
        return len(self._columns["application_id"])

    @functools.cached_property
    def applications(self) -> list[Application]:
        """The applications as :class:`kyc.graph.records.Application` objects (time order)."""
        from kyc.graph.records import Application

        c = self._columns
        out: list[Application] = []
        start = _DEFAULT_START
        for i in range(len(self)):
            out.append(
                Application(
                    application_id=c["application_id"][i],
                    applicant_id=c["applicant_id"][i],
                    lender_id=c["lender_id"][i],
                    lender_type=c["lender_type"][i],
                    timestamp=start + timedelta(seconds=int(c["_ts"][i])),
                    device_id=c["device_id"][i],
                    phones=c["phones"][i],
                    contact_phones=c["contact_phones"][i],
                    ip=c["ip"][i],
                    address=c["address"][i],
                    card=c["card"][i],
                    email=c["email"][i],
                    thin_file=c["thin_file"][i],
                )
            )
        return out

    @property
    def applicant_ids(self) -> list[str]:
        """Distinct applicant ids, in order of first application."""
        return list(dict.fromkeys(self._columns["applicant_id"]))

    def applications_columns(self) -> dict[str, list[Any]]:
        """The applications as columns: ``CSV_COLUMNS`` names -> list (time order).

        Values are Python objects: ``timestamp`` a tz-aware UTC datetime, ``phones`` and
        ``contact_phones`` tuples of raw strings, missing identifiers ``None``.
        """
        c = self._columns
        out = {k: c[k] for k in CSV_COLUMNS if k != "timestamp"}
        out["timestamp"] = [_DEFAULT_START + timedelta(seconds=int(s)) for s in c["_ts"]]
        return {k: out[k] for k in CSV_COLUMNS}

    def timestamps(self) -> npt.NDArray[np.int64]:
        """Epoch seconds (UTC) of the applications, in time order."""
        base = int(_DEFAULT_START.timestamp())
        return np.asarray(self._columns["_ts"], dtype=np.int64) + base

    def to_records(self) -> Iterator[dict[str, Any]]:
        """Yield one plain dict per application, keyed by ``CSV_COLUMNS``.

        Values are strings the way the CSV holds them (``timestamp`` ISO 8601 UTC, phones
        ``"|"``-joined, ``thin_file`` ``"1"``/``"0"``/``""``, missing values ``""``), so the
        dicts go through the same parsing path as a CSV row.
        """
        c = self._columns
        for i in range(len(self)):
            yield _row_strings(c, i)

    def stats(self) -> dict[str, float]:
        """Summary figures to compare with DGraph-Fin (plain floats)."""
        c = self._columns
        n_app = len(self)
        n_applicants = len(self.thin_file)
        contacts = {p for t in c["contact_phones"] for p in t}
        return {
            "n_applications": float(n_app),
            "n_applicants": float(n_applicants),
            "n_background": float(self.n_background),
            "background_share": self.n_background / max(1, self.n_background + n_applicants),
            "contact_links": float(sum(len(t) for t in c["contact_phones"])),
            "distinct_contact_phones": float(len(contacts)),
            "fraud_rate_applicants": len(self.fraud) / max(1, n_applicants),
            "fraud_rate_population": len(self.fraud) / max(1, n_applicants + self.n_background),
            "n_rings": float(len(self.rings)),
            "ring_members": float(len(self.ring_of)),
            "n_stackers": float(len(self.stackers)),
            "n_hubs": float(len(self.hubs)),
        }


def _row_strings(c: dict[str, list[Any]], i: int) -> dict[str, str]:
    ts = _DEFAULT_START + timedelta(seconds=int(c["_ts"][i]))
    thin = c["thin_file"][i]
    return {
        "application_id": c["application_id"][i],
        "applicant_id": c["applicant_id"][i],
        "lender_id": c["lender_id"][i],
        "lender_type": c["lender_type"][i],
        "timestamp": ts.isoformat(),
        "device_id": c["device_id"][i] or "",
        "phones": "|".join(c["phones"][i]),
        "contact_phones": "|".join(c["contact_phones"][i]),
        "ip": c["ip"][i] or "",
        "address": c["address"][i] or "",
        "card": c["card"][i] or "",
        "email": c["email"][i] or "",
        "thin_file": "" if thin is None else ("1" if thin else "0"),
    }


def write_csv(dataset: SynthDataset, path: str | os.PathLike[str]) -> Path:
    """Write the applications as CSV (header ``CSV_COLUMNS``) to ``path``; return the path.

    Timestamps are ISO 8601 with ``+00:00``; multi-valued phone columns are ``"|"``-joined;
    ``thin_file`` is ``1``/``0``/empty. Written to a temporary file and renamed into place.
    """
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    c = dataset._columns
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for i in range(len(dataset)):
            row = _row_strings(c, i)
            w.writerow([row[k] for k in CSV_COLUMNS])
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------
# formatting helpers (vectorised where it matters)


def _mix64(x: I64, salt: int) -> npt.NDArray[np.uint64]:
    """A bijective 64-bit mix (splitmix64 finaliser) so ids look random but never collide."""
    z = x.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def _fmt_devices(ids: I64) -> list[str]:
    h = _mix64(ids, 1)
    return [f"dev-{v:016x}" for v in h.tolist()]


def _fmt_ips(ids: I64) -> list[str]:
    # bijection on 31 bits; first octet from 128 public values (no 0, 10, 127, 172, 192...)
    octets = np.array([*range(11, 127), *range(128, 140)], dtype=np.int64)
    j = (ids.astype(np.int64) * 1_103_515_245 + 12_345) & 0x7FFFFFFF
    o1 = octets[j >> 24]
    rest = j & 0xFFFFFF
    o2, o3, o4 = rest >> 16, (rest >> 8) & 0xFF, rest & 0xFF
    o4 = np.where(o4 == 0, 1, np.where(o4 == 255, 254, o4))
    return [f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(o1.tolist(), o2.tolist(), o3.tolist(),
                                                     o4.tolist(), strict=True)]


_ADDR_M = 9_899 * len(_STREETS) * len(_SUFFIXES) * len(_CITIES)
# address id spaces (all below _ADDR_M, where the address mapping is a bijection)
_ADDR_DORM = _ADDR_M - 10_000
_ADDR_DROP = _ADDR_M // 2
_ADDR_OWN = 3 * _ADDR_M // 4
# ip id spaces (all below 2^31, where the ip mapping is a bijection)
_IP_HOME = 0
_IP_DYN = 1 << 27
_IP_OFFICE = 1 << 28
_IP_NAT = (1 << 28) + (1 << 26)
_IP_WIFI = (1 << 28) + (1 << 27)
_IP_PROXY = 1 << 29
_CARD_RING = 2 * _SPACE


def _fmt_addresses(ids: I64) -> list[str]:
    j = (ids.astype(np.int64) * 1_000_003 + 7) % _ADDR_M  # 1_000_003 is prime, coprime to M
    no = j % 9_899 + 1
    j = j // 9_899
    st = j % len(_STREETS)
    j = j // len(_STREETS)
    sf = j % len(_SUFFIXES)
    ci = j // len(_SUFFIXES)
    out = []
    for a, b, c, d in zip(no.tolist(), st.tolist(), sf.tolist(), ci.tolist(), strict=True):
        city, state, zip0 = _CITIES[d]
        out.append(f"{a} {_STREETS[b]} {_SUFFIXES[c]}, {city}, {state} {zip0 + b % 40:05d}")
    return out


def _fmt_emails(ids: I64) -> list[str]:
    h = (_mix64(ids, 2) % np.uint64(1 << 62)).astype(np.int64)
    nf, nl = len(_FIRST), len(_LAST)
    f = h % nf
    lst = (h // nf) % nl
    dom = (h // (nf * nl)) % len(_DOMAINS)
    # the person index keeps every address unique
    return [f"{_FIRST[a]}.{_LAST[b]}{i}@{_DOMAINS[d]}" for a, b, d, i in
            zip(f.tolist(), lst.tolist(), dom.tolist(), ids.tolist(), strict=True)]


def _fmt_cards(ids: I64) -> list[str]:
    body = (_mix64(ids, 3) % np.uint64(10**14)).astype(np.int64) + 4 * 10**14  # 15 digits
    digits = np.stack([(body // 10**k) % 10 for k in range(15)], axis=1)  # least significant 1st
    # Luhn: double every digit at even offset from the right of the 15-digit payload
    dbl = digits.copy()
    dbl[:, 0::2] *= 2
    dbl = np.where(dbl > 9, dbl - 9, dbl)
    check = (10 - dbl.sum(axis=1) % 10) % 10
    full = body * 10 + check
    out = []
    for v in full.tolist():
        s = f"{v:016d}"
        out.append(f"{s[0:4]} {s[4:8]} {s[8:12]} {s[12:16]}")
    return out


def _fmt_phones(nums: I64, styles: I64) -> list[str]:
    """Format 10-digit US numbers; style 0 ``+1 AAA-EEE-LLLL``, 1 ``(AAA) EEE-LLLL``,
    2 ``AAA.EEE.LLLL``, 3 ``AAAEEELLLL``, 4 ``+1AAAEEELLLL``."""
    digits = list(map(str, nums.tolist()))
    out = [""] * len(digits)
    st = np.asarray(styles)
    for style in range(5):
        sel = np.flatnonzero(st == style).tolist()
        if style == 0:
            vals = [f"+1 {d[:3]}-{d[3:6]}-{d[6:]}" for d in (digits[i] for i in sel)]
        elif style == 1:
            vals = [f"({d[:3]}) {d[3:6]}-{d[6:]}" for d in (digits[i] for i in sel)]
        elif style == 2:
            vals = [f"{d[:3]}.{d[3:6]}.{d[6:]}" for d in (digits[i] for i in sel)]
        elif style == 3:
            vals = [digits[i] for i in sel]
        else:
            vals = ["+1" + digits[i] for i in sel]
        for i, v in zip(sel, vals, strict=True):
            out[i] = v
    return out


class _Formatters:
    """Identifier formatters with a per-seed offset in each id space.

    Identifier ids are derived from positions (person 5, household 12, NAT hub 0); the offset
    makes two seeds draw disjoint-looking identifier universes, so datasets of different
    seeds can be mixed without person 5 of one seed sharing a device with person 5 of the
    other. Offsets keep every mapping a bijection within its space.
    """

    def __init__(self, seed: int) -> None:
        off = np.random.default_rng([int(seed), 0x5EED]).integers(0, 1 << 40, 5)
        self.dev, self.ip, self.addr, self.email, self.card = (int(x) for x in off)
        self.email %= 10**9  # keeps the numbers in addresses short

    def devices(self, ids: I64) -> list[str]:
        return _fmt_devices(ids + self.dev)

    def ips(self, ids: I64) -> list[str]:
        return _fmt_ips((ids + self.ip) & 0x7FFFFFFF)

    def addresses(self, ids: I64) -> list[str]:
        return _fmt_addresses((ids + self.addr) % _ADDR_M)

    def emails(self, ids: I64) -> list[str]:
        return _fmt_emails(ids + self.email)

    def cards(self, ids: I64) -> list[str]:
        return _fmt_cards(ids + self.card)


def _e164(num: int) -> str:
    return f"+1{num}"


# --------------------------------------------------------------------------------------------
# generation


def _unique_phone_numbers(rng: np.random.Generator, n: int) -> I64:
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        k = int((n - out.size) * 1.05) + 16
        area = _AREA_CODES[rng.integers(0, _AREA_CODES.size, k)]
        ex = rng.integers(200, 1000, k)
        ex = np.where((ex % 100 == 11) | (ex == 555), ex + 1, ex)
        line = rng.integers(0, 10_000, k)
        cand = np.concatenate([out, area * 10**7 + ex * 10**4 + line])
        _, first = np.unique(cand, return_index=True)
        out = cand[np.sort(first)]
    return out[:n]


def _heavy_sizes(rng: np.random.Generator, total: int, lo: int, hi: int, alpha: float) -> I64:
    """Pareto-ish integer sizes in [lo, hi] whose sum reaches ``total`` (last one trimmed)."""
    if total <= 0:
        return np.empty(0, dtype=np.int64)
    k = max(4, int(total / lo) + 4)
    s = np.minimum(hi, np.floor(lo * (1.0 + rng.pareto(alpha, k)))).astype(np.int64)
    cs = np.cumsum(s)
    while cs[-1] < total:  # pragma: no cover - k is large enough in practice
        s = np.concatenate([s, s])
        cs = np.cumsum(s)
    m = int(np.searchsorted(cs, total)) + 1
    s = s[:m].copy()
    s[-1] -= int(cs[m - 1] - total)
    return s


def _weighted_index(rng: np.random.Generator, cdf: F64, n: int) -> I64:
    out: I64 = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").astype(np.int64)
    return out


class _LevelSampler:
    """Draw indices of a pool whose weights are log-normal, in O(1) per draw.

    The pool is cut into contiguous blocks of equal weight level (levels spaced evenly on
    the log scale, block sizes from the log-normal density), so a draw picks a level by its
    total weight and then a uniform member of the block. Pool members are exchangeable, so
    giving the heavy weights to one block changes nothing.
    """

    def __init__(self, rng: np.random.Generator, n: int, sigma: float, levels: int = 40) -> None:
        z = rng.normal(0.0, sigma, n)
        edges = np.linspace(z.min(), z.max() + 1e-9, levels + 1)
        sizes = np.histogram(z, bins=edges)[0].astype(np.int64)
        mids = np.exp(0.5 * (edges[:-1] + edges[1:]))
        self.first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.sizes = sizes
        self.cdf = np.cumsum(sizes * mids)

    def sample(self, rng: np.random.Generator, n: int) -> I64:
        """``n`` pool indices drawn with replacement."""
        lv = np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right")
        lv = np.minimum(lv, self.sizes.size - 1)
        out: I64 = self.first[lv] + (rng.random(n) * self.sizes[lv]).astype(np.int64)
        return out


def _ring_sizes(rng: np.random.Generator, lo: int, hi: int, count: int) -> I64:
    # more small rings than large ones: lo + (hi - lo + 1) * u^3
    u = rng.random(count)
    out: I64 = np.minimum(hi, lo + np.floor((hi - lo + 1) * u**3)).astype(np.int64)
    return out


def generate(
    n_applications: int,
    *,
    seed: int = 0,
    fraud_rate: float = 0.0127,
    ring_share: float = 0.85,
    n_rings: int | None = None,
    ring_size: tuple[int, int] = (5, 50),
    ring_burst_hours: tuple[float, float] = (2.0, 36.0),
    ring_device_share: float = 0.85,
    ring_card_share: float = 0.7,
    stacker_rate: float = 0.01,
    hubs: bool = True,
    camouflage: bool = True,
    background_ratio: float = 6.0,
    n_lenders: int = 30,
    days: int = 366,
    phone_style: str = "mixed",
) -> SynthDataset:
    """Generate ``n_applications`` applications with planted rings, hubs and stackers.

    Args:
        n_applications: exact number of applications (>= 1).
        seed: seed of the numpy Generator; the same seed gives the same dataset.
        fraud_rate: fraudulent share of *applicants* (default 1.27 %: with two background
            people per applicant that is DGraph-Fin's 0.42 % of all nodes).
        ring_share: share of the fraudulent applicants that sit in rings (the rest are lone).
        n_rings: plant exactly this many rings instead of deriving it from ``fraud_rate``.
        ring_size: inclusive (min, max) ring size.
        ring_burst_hours: range of a ring's burst length (all its applications fall inside);
            widen it (e.g. ``(24, 240)``) for stealthier rings.
        ring_device_share: chance a ring member's application uses a device of the ring's
            device farm (else the member's own phone).
        ring_card_share: chance a ring member uses one of the ring's mule cards.
        stacker_rate: share of applicants who stack applications at many lenders.
        hubs: plant hub identifiers (NAT/Wi-Fi IPs, call-centre contacts, kiosks, dorms);
            with ``False`` those applications use ordinary unique identifiers instead.
        camouflage: give ring members weak links to normal applicants.
        background_ratio: size of the pool of non-applicant contact phones, per applicant
            (about a third of the pool ends up listed: two background people per applicant).
        n_lenders: number of lenders (the first third are ``bank``, the rest ``nbank``).
        days: time span of the applications, from 2024-01-01 UTC.
        phone_style: ``"mixed"`` (E.164, national, dotted, bare digits) or ``"e164"``.

    Returns:
        A :class:`SynthDataset`.

    Raises:
        ConfigError: on out-of-range arguments, or when the rings asked for need more
            applications than ``n_applications``.
    """
    if isinstance(n_applications, bool) or not isinstance(n_applications, int | np.integer):
        raise ConfigError(f"n_applications must be an int, got {type(n_applications).__name__}")
    n = int(n_applications)
    if n < 1:
        raise ConfigError(f"n_applications must be >= 1, got {n}")
    lo, hi = int(ring_size[0]), int(ring_size[1])
    if not 2 <= lo <= hi:
        raise ConfigError(f"ring_size must satisfy 2 <= min <= max, got {ring_size!r}")
    for name, v in (("fraud_rate", fraud_rate), ("ring_share", ring_share),
                    ("stacker_rate", stacker_rate)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    burst_lo, burst_hi = float(ring_burst_hours[0]), float(ring_burst_hours[1])
    if not 0.0 < burst_lo <= burst_hi <= 24.0 * (days - 2):
        raise ConfigError(f"ring_burst_hours must satisfy 0 < min <= max <= {24 * (days - 2)}, "
                          f"got {ring_burst_hours!r}")
    for name, v in (("ring_device_share", ring_device_share),
                    ("ring_card_share", ring_card_share)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    if n_rings is not None and n_rings < 0:
        raise ConfigError(f"n_rings must be >= 0, got {n_rings}")
    if n_lenders < 2:
        raise ConfigError(f"n_lenders must be >= 2, got {n_lenders}")
    if days < 10:
        raise ConfigError(f"days must be >= 10, got {days}")
    if background_ratio < 0:
        raise ConfigError(f"background_ratio must be >= 0, got {background_ratio}")
    if phone_style not in ("mixed", "e164"):
        raise ConfigError(f"phone_style must be 'mixed' or 'e164', got {phone_style!r}")

    rng = np.random.default_rng(seed)
    span = days * 86_400
    a_est = n / 1.5

    # ---- who applies, and how often -------------------------------------------------------
    if n_rings is None:
        target = fraud_rate * ring_share * a_est
        cand = _ring_sizes(rng, lo, hi, max(1, int(target / lo) + 2))
        cs = np.cumsum(cand)
        k = int(np.searchsorted(cs, target, side="right"))
        if k == 0 and target >= lo / 2 and n >= 8 * lo:
            k = 1
        ring_sizes = cand[:k]
    else:
        ring_sizes = _ring_sizes(rng, lo, hi, n_rings)
    n_lone = round(fraud_rate * (1.0 - ring_share) * a_est)
    n_stack = round(stacker_rate * a_est)
    ring_apps = 1 + rng.binomial(2, 0.25, int(ring_sizes.sum()))
    lone_apps = 1 + rng.binomial(2, 0.3, n_lone)
    stack_apps = np.minimum(n_lenders, 5 + rng.poisson(5.0, n_stack))
    if n_rings is None:  # keep the planted population well under half of the applications
        while ring_sizes.size and int(ring_apps.sum()) > n // 3:
            ring_sizes = ring_sizes[:-1]
            ring_apps = ring_apps[: int(ring_sizes.sum())]
    while n_stack and int(stack_apps.sum() + lone_apps.sum() + ring_apps.sum()) > n // 2:
        n_stack -= 1
        stack_apps = stack_apps[:n_stack]
    while n_lone and int(stack_apps.sum() + lone_apps.sum() + ring_apps.sum()) > n // 2:
        n_lone -= 1
        lone_apps = lone_apps[:n_lone]
    special = int(ring_apps.sum() + lone_apps.sum() + stack_apps.sum())
    if special > n - 1:
        raise ConfigError(
            f"{n_applications} applications cannot hold {ring_sizes.size} rings "
            f"({int(ring_apps.sum())} applications): ask for more applications or fewer rings")

    rest = n - special
    reg = rng.geometric(0.7, rest).astype(np.int64)
    cs = np.cumsum(reg)
    m = int(np.searchsorted(cs, rest)) + 1
    reg = reg[:m]
    reg[-1] -= int(cs[m - 1] - rest)
    n_norm = m + n_stack
    norm_apps = np.empty(n_norm, dtype=np.int64)
    stack_pos = np.sort(rng.choice(n_norm, n_stack, replace=False)) if n_stack else \
        np.empty(0, dtype=np.int64)
    is_stack = np.zeros(n_norm, dtype=bool)
    is_stack[stack_pos] = True
    norm_apps[is_stack] = stack_apps
    norm_apps[~is_stack] = reg

    n_ring_members = int(ring_sizes.size and ring_sizes.sum())
    p_total = n_norm + n_lone + n_ring_members
    lone0, ring0 = n_norm, n_norm + n_lone
    counts = np.concatenate([norm_apps, lone_apps, ring_apps]).astype(np.int64)
    kind = np.zeros(p_total, dtype=np.int8)  # 0 normal, 1 stacker, 2 lone fraud, 3 ring
    kind[:n_norm][is_stack] = 1
    kind[lone0:ring0] = 2
    kind[ring0:] = 3
    n_r = int(ring_sizes.size)
    ring_of_p = np.full(p_total, -1, dtype=np.int64)
    ring_start = np.concatenate([[0], np.cumsum(ring_sizes)[:-1]]).astype(np.int64) + ring0
    if n_r:
        ring_of_p[ring0:] = np.repeat(np.arange(n_r), ring_sizes)

    # ---- households (normal people and lone fraudsters) ------------------------------------
    hh_sizes = rng.choice(np.arange(1, 9), size=n_norm + 1,
                          p=[0.42, 0.25, 0.14, 0.1, 0.04, 0.025, 0.015, 0.01])
    hcs = np.cumsum(hh_sizes)
    nh = int(np.searchsorted(hcs, n_norm)) + 1
    hh_sizes = hh_sizes[:nh].astype(np.int64)
    hh_sizes[-1] -= int(hcs[nh - 1] - n_norm)
    hh_sizes = np.concatenate([hh_sizes, np.ones(n_lone, dtype=np.int64)])
    n_hh = hh_sizes.size
    hh_first = np.concatenate([[0], np.cumsum(hh_sizes)[:-1]]).astype(np.int64)
    hh_of = np.full(p_total, -1, dtype=np.int64)
    hh_of[:ring0] = np.repeat(np.arange(n_hh), hh_sizes)
    n_hp = ring0  # people with a household
    p_hh = hh_of[:n_hp]
    p_hsize = hh_sizes[p_hh]
    p_hfirst = hh_first[p_hh]

    # employers (office IPs), heavy-tailed sizes 2..500
    employed = np.flatnonzero(rng.random(n_norm) < 0.55)
    rng.shuffle(employed)
    emp_sizes = _heavy_sizes(rng, employed.size, 2, 500, 1.3)
    employer_of = np.full(p_total, -1, dtype=np.int64)
    employer_of[employed] = np.repeat(np.arange(emp_sizes.size), emp_sizes)

    # ---- phones ---------------------------------------------------------------------------
    n_bg = round(background_ratio * p_total)
    n_ctrl_r = 1 + rng.binomial(1, 0.4, n_r)
    n_ctrl = int(n_ctrl_r.sum())
    n_cc = (2 + p_total // 100_000) if hubs else 0
    second = np.flatnonzero(rng.random(p_total) < 0.03)
    bg0, ctrl0 = p_total, p_total + n_bg
    cc0 = ctrl0 + n_ctrl
    sec0 = cc0 + n_cc
    phone_num = _unique_phone_numbers(rng, sec0 + second.size)
    second_phone = np.full(p_total, -1, dtype=np.int64)
    second_phone[second] = sec0 + np.arange(second.size)
    ctrl_first = ctrl0 + np.concatenate([[0], np.cumsum(n_ctrl_r)[:-1]]).astype(np.int64)

    # ---- emergency contacts (phone indices; -1 none) --------------------------------------
    n_slots = 5
    contacts = np.full((p_total, n_slots), -1, dtype=np.int64)
    kcont = rng.choice(np.arange(1, n_slots + 1), size=n_hp, p=[0.05, 0.15, 0.25, 0.3, 0.25])
    bg_pick = _LevelSampler(rng, max(1, n_bg), sigma=0.8)
    cc_cdf = np.cumsum(1.0 / np.arange(1, n_cc + 1)) if n_cc else np.zeros(0)
    idx = np.arange(n_hp)
    for j in range(n_slots):
        u = rng.random(n_hp)
        hh_off = rng.integers(1, np.maximum(p_hsize, 2))
        hh_mate = p_hfirst + (idx - p_hfirst + hh_off) % np.maximum(p_hsize, 1)
        friend = np.clip(idx + np.round(rng.normal(0, 300, n_hp)).astype(np.int64), 0,
                         max(0, n_norm - 1))
        friend = np.where(friend == idx, (idx + 1) % max(1, n_norm), friend)
        bg = bg0 + bg_pick.sample(rng, n_hp) if n_bg else friend
        slot = bg.copy()
        slot = np.where((u < 0.12) & (p_hsize > 1), hh_mate, slot)
        slot = np.where((u >= 0.12) & (u < 0.19) & (n_norm > 1), friend, slot)
        if n_cc:
            cc = cc0 + _weighted_index(rng, cc_cdf, n_hp)
            slot = np.where((u >= 0.19) & (u < 0.20), cc, slot)
        slot = np.where(j < kcont, slot, -1)
        # a household mate or friend index only names a phone if that person exists
        contacts[:n_hp, j] = slot
    if n_ring_members:
        rp = np.arange(ring0, p_total)
        r_of = ring_of_p[ring0:]
        rsz = ring_sizes[r_of]
        rst = ring_start[r_of]
        mate = rst + (rp - rst + rng.integers(1, rsz)) % rsz
        contacts[ring0:, 0] = mate
        contacts[ring0:, 1] = ctrl_first[r_of] + rng.integers(0, n_ctrl_r[r_of])
        mate2 = rst + (rp - rst + rng.integers(1, rsz)) % rsz
        contacts[ring0:, 2] = np.where(rng.random(rsz.size) < 0.5, mate2, -1)
        if camouflage and n_norm:
            normal_mate = rng.integers(0, n_norm, rsz.size)
            contacts[ring0:, 3] = normal_mate
        elif n_bg:
            contacts[ring0:, 3] = bg0 + bg_pick.sample(rng, rsz.size)
        if n_bg:
            contacts[ring0:, 4] = bg0 + bg_pick.sample(rng, rsz.size)
    # drop repeated contacts within a row and own phone
    srt = np.sort(contacts, axis=1)
    dup = np.zeros_like(srt, dtype=bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    contacts = np.where(dup | (srt == np.arange(p_total)[:, None]), -1, srt)

    # ---- per-person identifiers ----------------------------------------------------------
    own_dev = np.arange(p_total, dtype=np.int64)
    resold = np.flatnonzero(rng.random(n_norm) < 0.003)
    if resold.size and n_norm > 1:
        own_dev[resold] = rng.integers(0, n_norm, resold.size)
    has_tablet = (hh_sizes > 1) & (rng.random(n_hh) < 0.3)
    has_card = rng.random(p_total) < 0.75
    card_of = np.where(has_card, np.arange(p_total), -1)
    shared_card_hh = (hh_sizes > 1) & (rng.random(n_hh) < 0.15)
    sc = shared_card_hh[p_hh] & has_card[:n_hp]
    card_of[:n_hp] = np.where(sc, p_hfirst, card_of[:n_hp])
    has_email = rng.random(p_total) < 0.85
    addr_of = np.full(p_total, -1, dtype=np.int64)
    addr_of[:n_hp] = p_hh
    n_dorm = (1 + p_total // 40_000) if hubs else 0
    dorm_base = _ADDR_DORM
    if n_dorm:
        dorm_p = np.flatnonzero(rng.random(n_norm) < 0.004)
        addr_of[dorm_p] = dorm_base + rng.integers(0, n_dorm, dorm_p.size)
    thin = np.where(kind >= 2, rng.random(p_total) < 0.7, rng.random(p_total) < 0.15)
    thin_known = rng.random(p_total) >= 0.05

    # ring plans
    r_dev_n = np.maximum(1, (ring_sizes + rng.integers(3, 9, n_r)) // 7)
    r_dev_first = np.concatenate([[0], np.cumsum(r_dev_n)[:-1]]).astype(np.int64)
    r_card_n = 1 + rng.integers(0, 3, n_r)
    r_card_first = np.concatenate([[0], np.cumsum(r_card_n)[:-1]]).astype(np.int64)
    r_drop_n = 1 + rng.binomial(1, 0.4, n_r)
    r_drop_first = np.concatenate([[0], np.cumsum(r_drop_n)[:-1]]).astype(np.int64)
    r_t0 = rng.integers(0, max(1, span - max(3 * 86_400, int(burst_hi * 3600) + 86_400)), n_r)
    r_hours = np.round(rng.uniform(burst_lo, burst_hi, n_r), 2)
    n_bank = max(1, n_lenders // 3)
    r_lend_n = 2 + rng.integers(0, 3, n_r)
    r_lenders = [np.sort(rng.choice(n_lenders, int(k), replace=False)) for k in r_lend_n]
    if n_ring_members:
        r_of = ring_of_p[ring0:]
        ring_dev_member = r_dev_first[r_of] + rng.integers(0, r_dev_n[r_of])
        ring_card_member = np.where(rng.random(r_of.size) < ring_card_share,
                                    r_card_first[r_of] + rng.integers(0, r_card_n[r_of]), -1)
        card_of[ring0:] = np.where(ring_card_member >= 0, _CARD_RING + ring_card_member,
                                   card_of[ring0:])
        drop = np.where(rng.random(r_of.size) < 0.5,
                        r_drop_first[r_of] + rng.integers(0, r_drop_n[r_of]), -1)
        camo_addr = rng.integers(0, max(1, n_hh), r_of.size)
        addr_of[ring0:] = np.where(drop >= 0, _ADDR_DROP + drop,
                                   camo_addr if camouflage else _ADDR_OWN + rp)
    else:
        ring_dev_member = np.empty(0, dtype=np.int64)

    # ---- applications ---------------------------------------------------------------------
    app_p = np.repeat(np.arange(p_total), counts)
    n_app = app_p.size
    k_of = kind[app_p]
    ts = np.empty(n_app, dtype=np.int64)
    day = rng.integers(0, days, n_app)
    hour = _weighted_index(rng, np.cumsum(_HOUR_W), n_app)
    ts[:] = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n_app)
    st_mask = k_of == 1
    if st_mask.any():
        st_t0 = rng.integers(0, span - 10 * 86_400, p_total)
        st_span = rng.uniform(1.0, 7.0, p_total) * 86_400
        ps = app_p[st_mask]
        ts[st_mask] = st_t0[ps] + (rng.random(ps.size) * st_span[ps]).astype(np.int64)
    rg_mask = k_of == 3
    if rg_mask.any():
        pr = ring_of_p[app_p[rg_mask]]
        ts[rg_mask] = r_t0[pr] + (rng.random(pr.size) * r_hours[pr] * 3_600).astype(np.int64)
    ts = np.clip(ts, 0, span - 1)

    # lenders: popularity skew for ordinary apps, distinct lenders for stackers, targets for rings
    lend_cdf = np.cumsum(1.0 / np.arange(1, n_lenders + 1) ** 0.8)
    lender = _weighted_index(rng, lend_cdf, n_app)
    lender = rng.permutation(n_lenders)[lender]
    if st_mask.any():
        first_app = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n_app) - first_app[app_p]
        stackers_p = np.flatnonzero(kind == 1)
        order = np.argsort(rng.random((stackers_p.size, n_lenders)), axis=1)
        row = np.full(p_total, -1, dtype=np.int64)
        row[stackers_p] = np.arange(stackers_p.size)
        lender[st_mask] = order[row[app_p[st_mask]], rank[st_mask]]
    if rg_mask.any():
        pr = ring_of_p[app_p[rg_mask]]
        pick = rng.random(pr.size)
        lender[rg_mask] = np.array(
            [r_lenders[r][int(x * r_lenders[r].size)] for r, x in zip(pr.tolist(), pick.tolist(),
                                                                      strict=True)],
            dtype=np.int64)

    # devices
    u = rng.random(n_app)
    dev = own_dev[app_p].copy()
    in_hh = app_p < n_hp
    hh_a = np.where(in_hh, hh_of[app_p], 0)
    tab = in_hh & has_tablet[hh_a] & (rng.random(n_app) < 0.4)
    dev = np.where(tab, _SPACE + hh_a, dev)
    n_kiosk = (1 + p_total // 50_000) if hubs else 0
    if n_kiosk:
        kiosk = (k_of <= 1) & (u < 0.01)
        dev = np.where(kiosk, 2 * _SPACE + rng.integers(0, n_kiosk, n_app), dev)
    if n_ring_members:
        use_ring_dev = rg_mask & (rng.random(n_app) < ring_device_share)
        dev[use_ring_dev] = 3 * _SPACE + ring_dev_member[app_p[use_ring_dev] - ring0]
    dev = np.where((rng.random(n_app) < 0.08) & (k_of != 3), -1, dev)

    # ips
    u = rng.random(n_app)
    n_nat = (2 + p_total // 25_000) if hubs else 0
    n_wifi = (3 + p_total // 5_000) if hubs else 0
    ip = np.full(n_app, -1, dtype=np.int64)
    home = _IP_HOME + hh_a
    dynamic = _IP_DYN + np.arange(n_app)
    home_ip = np.where(rng.random(n_app) < 0.25, dynamic, home)
    emp = employer_of[app_p]
    office = _IP_OFFICE + emp
    nat = _IP_NAT + _weighted_index(rng, np.cumsum(1.0 / np.arange(1, n_nat + 1) ** 0.5),
                                       n_app) if n_nat else dynamic
    wifi = _IP_WIFI + _weighted_index(rng, np.cumsum(1.0 / np.arange(1, n_wifi + 1)),
                                        n_app) if n_wifi else dynamic
    norm_a = k_of != 3
    ip = np.where(norm_a & (u < 0.45), np.where(in_hh, home_ip, dynamic), ip)
    ip = np.where(norm_a & (u >= 0.45) & (u < 0.60), np.where(emp >= 0, office, home_ip), ip)
    ip = np.where(norm_a & (u >= 0.60) & (u < 0.88), nat, ip)
    ip = np.where(norm_a & (u >= 0.88) & (u < 0.93), wifi, ip)
    if n_ring_members:
        r_a = ring_of_p[app_p]
        proxy = _IP_PROXY + np.maximum(r_a, 0)
        ring_ip = np.where(u < 0.6, proxy,
                           np.where(u < 0.85, nat if camouflage else dynamic,
                                    np.where(u < 0.95, wifi if camouflage else dynamic, -1)))
        ip = np.where(rg_mask, ring_ip, ip)

    # per-application presence of the person's identifiers
    addr = np.where(rng.random(n_app) < 0.9, addr_of[app_p], -1)
    card = np.where(rng.random(n_app) < 0.8, card_of[app_p], -1)
    card = np.where(rg_mask & (card_of[app_p] >= _CARD_RING), card_of[app_p], card)
    email = np.where(has_email[app_p] & (rng.random(n_app) < 0.9), app_p, -1)
    own_ph = np.where(rng.random(n_app) < 0.97, app_p, -1)
    sec_ph = second_phone[app_p]
    cont_present = (rng.random(n_app) < 0.93) | rg_mask

    # ---- sort by time, build string columns -----------------------------------------------
    order = np.argsort(ts, kind="stable")
    app_p, ts, lender, dev, ip = app_p[order], ts[order], lender[order], dev[order], ip[order]
    addr, card, email, own_ph, sec_ph = addr[order], card[order], email[order], own_ph[order], \
        sec_ph[order]
    cont_present = cont_present[order]

    id_mix = (np.arange(p_total, dtype=np.int64)[rng.permutation(p_total)] * 387_420_489
              + 123_456_789) % 1_000_000_000  # 387420489 = 3^18, coprime to 10^9
    applicant_ids = [f"{v:09d}" for v in id_mix.tolist()]
    lender_ids = [f"L{j + 1:03d}" for j in range(n_lenders)]
    lender_types = ["bank" if j < n_bank else "nbank" for j in range(n_lenders)]

    def by_unique(vals: I64, fmt: Any) -> list[str | None]:
        uniq, inv = np.unique(vals, return_inverse=True)
        valid = uniq >= 0
        strs: list[str | None] = [None] * uniq.size
        if valid.any():
            for i_, s_ in zip(np.flatnonzero(valid).tolist(), fmt(uniq[valid]), strict=True):
                strs[i_] = s_
        return [strs[i] for i in inv.tolist()]

    fm = _Formatters(seed)
    dev_s = by_unique(dev, fm.devices)
    ip_s = by_unique(ip, fm.ips)
    addr_s = by_unique(addr, fm.addresses)
    card_s = by_unique(card, fm.cards)
    email_s = by_unique(email, fm.emails)

    # phones: own, second, contacts; a style per occurrence
    cont_a = np.where(cont_present[:, None], contacts[app_p], -1)
    ph_idx = np.concatenate([own_ph[:, None], sec_ph[:, None], cont_a], axis=1)
    flat = ph_idx.ravel()
    valid = flat >= 0
    nums = phone_num[flat[valid]]
    if phone_style == "mixed":
        styles = rng.choice(5, size=nums.size, p=[0.3, 0.2, 0.1, 0.2, 0.2])
    else:
        styles = np.full(nums.size, 4, dtype=np.int64)
    formatted = _fmt_phones(nums, styles)
    ph_obj = np.full(flat.size, "", dtype=object)
    ph_obj[valid] = formatted
    w = ph_idx.shape[1]
    rows_ = ph_obj.reshape(n_app, w).tolist()
    phones_col = [tuple(x for x in r_[:2] if x) for r_ in rows_]
    contacts_col = [tuple(x for x in r_[2:] if x) for r_ in rows_]
    del rows_, ph_obj

    thin_p: list[bool | None] = [bool(t) if k_ else None for t, k_ in
                                 zip(thin.tolist(), thin_known.tolist(), strict=True)]
    width = max(7, len(str(n_app)))
    ap_list = app_p.tolist()
    cols: dict[str, list[Any]] = {
        "application_id": [f"APP{i:0{width}d}" for i in range(n_app)],
        "applicant_id": [applicant_ids[p] for p in ap_list],
        "lender_id": [lender_ids[x] for x in lender.tolist()],
        "lender_type": [lender_types[x] for x in lender.tolist()],
        "_ts": ts.tolist(),
        "device_id": dev_s,
        "phones": phones_col,
        "contact_phones": contacts_col,
        "ip": ip_s,
        "address": addr_s,
        "card": card_s,
        "email": email_s,
        "thin_file": [thin_p[p] for p in ap_list],
    }

    # ---- ground truth ---------------------------------------------------------------------
    ring_ids = [f"R{r + 1:04d}" for r in range(n_r)]
    rings: dict[str, set[str]] = {rid: set() for rid in ring_ids}
    ring_of: dict[str, str] = {}
    for p in range(ring0, p_total):
        rid = ring_ids[int(ring_of_p[p])]
        rings[rid].add(applicant_ids[p])
        ring_of[applicant_ids[p]] = rid
    fraud = {applicant_ids[p] for p in range(lone0, p_total)}
    stackers = {applicant_ids[p] for p in np.flatnonzero(kind == 1).tolist()}
    thin_map = {applicant_ids[p]: thin_p[p] for p in range(p_total)}

    plans: dict[str, RingPlan] = {}
    all_devs = fm.devices(3 * _SPACE + np.arange(int(r_dev_n.sum()), dtype=np.int64))
    all_cards = fm.cards(_CARD_RING + np.arange(int(r_card_n.sum()), dtype=np.int64))
    all_drops = fm.addresses(_ADDR_DROP + np.arange(int(r_drop_n.sum()), dtype=np.int64))
    all_proxies = fm.ips(_IP_PROXY + np.arange(n_r, dtype=np.int64))
    for r in range(n_r):
        members = tuple(sorted(rings[ring_ids[r]]))
        devs = all_devs[r_dev_first[r]:r_dev_first[r] + r_dev_n[r]]
        cards = all_cards[r_card_first[r]:r_card_first[r] + r_card_n[r]]
        ctrl = tuple(_e164(int(phone_num[ctrl_first[r] + i])) for i in range(n_ctrl_r[r]))
        drops = all_drops[r_drop_first[r]:r_drop_first[r] + r_drop_n[r]]
        plans[ring_ids[r]] = RingPlan(
            ring_id=ring_ids[r], members=members,
            burst_start=_DEFAULT_START + timedelta(seconds=int(r_t0[r])),
            burst_hours=float(r_hours[r]),
            lenders=tuple(lender_ids[int(x)] for x in r_lenders[r]),
            devices=tuple(devs), cards=tuple(cards), controller_phones=ctrl,
            drop_addresses=tuple(drops),
            proxy_ip=all_proxies[r],
        )

    hub_list = _describe_hubs(app_p, dev, ip, addr, ph_idx, n_kiosk, n_nat, n_wifi, n_dorm,
                              cc0, n_cc, phone_num, fm)
    used_bg = np.unique(contacts[(contacts >= bg0) & (contacts < ctrl0)]).size

    return SynthDataset(
        ring_of=ring_of, rings=rings, fraud=fraud, stackers=stackers, hubs=hub_list,
        ring_plans=plans, thin_file=thin_map, n_background=int(used_bg), seed=int(seed),
        _columns=cols,
    )


def _describe_hubs(app_p: I64, dev: I64, ip: I64, addr: I64, ph_idx: I64, n_kiosk: int,
                   n_nat: int, n_wifi: int, n_dorm: int, cc0: int, n_cc: int,
                   phone_num: I64, fm: _Formatters) -> tuple[Hub, ...]:
    out: list[Hub] = []

    def count(col: I64, rows: I64, base: int, n: int) -> tuple[I64, I64, I64]:
        """Per hub k in [0, n): (k, distinct applicants, applications) where col == base + k."""
        mask = (col >= base) & (col < base + n)
        k = col[mask] - base
        person = rows[mask]
        hubs_k, n_apps = np.unique(k, return_counts=True)
        pairs = np.unique(k * (int(rows.max(initial=0)) + 1) + person)
        _, n_people = np.unique(pairs // (int(rows.max(initial=0)) + 1), return_counts=True)
        return hubs_k, n_people, n_apps

    def add(kind: str, label: str, col: I64, base: int, n: int, fmt: Any) -> None:
        if n == 0:
            return
        ks, people, apps = count(col, app_p, base, n)
        values = fmt(base + ks)
        for v, pe, ap in zip(values, people.tolist(), apps.tolist(), strict=True):
            out.append(Hub(kind=kind, label=label, value=v, n_applicants=pe, n_applications=ap))

    add("ip", "carrier_nat_ip", ip, _IP_NAT, n_nat, fm.ips)
    add("ip", "public_wifi_ip", ip, _IP_WIFI, n_wifi, fm.ips)
    add("device", "branch_kiosk_device", dev, 2 * _SPACE, n_kiosk, fm.devices)
    add("address", "dormitory_address", addr, _ADDR_DORM, n_dorm, fm.addresses)
    if n_cc:
        cont = ph_idx[:, 2:]
        # one row per (application, call-centre number listed); an application lists a number once
        r_, c_ = np.nonzero((cont >= cc0) & (cont < cc0 + n_cc))
        ks, people, apps = count(cont[r_, c_], app_p[r_], cc0, n_cc)
        for k, pe, ap in zip(ks.tolist(), people.tolist(), apps.tolist(), strict=True):
            out.append(Hub(kind="phone", label="call_centre_contact",
                           value=_e164(int(phone_num[cc0 + k])), n_applicants=pe,
                           n_applications=ap))
    out.sort(key=lambda h: -h.n_applicants)
    return tuple(out)
