"""Application records: validation, hashing and loading (kyc.graph.records)."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.identifiers import IdentifierHasher, IdKind
from kyc.graph.records import (
    CSV_COLUMNS,
    Application,
    HashedApplication,
    hash_application,
    iter_applications,
    parse_timestamp,
    read_applications,
)

SECRET = b"records-test-secret-0123456789"
T0 = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)


def rec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "application_id": "app-1",
        "applicant_id": "ID-0001",
        "lender_id": "L1",
        "lender_type": "nbank",
        "timestamp": "2024-03-01T10:00:00Z",
        "device_id": "DEV-1",
        "phones": "4155552671|+1 212 555 0100",
        "contact_phones": "(646) 555-0199",
        "ip": "192.0.2.7",
        "address": "12 Baker Street Apt 4",
        "card": "4111 1111 1111 1111",
        "email": "Jane.Doe+x@Example.org",
        "thin_file": "1",
    }
    base.update(over)
    return base


@pytest.fixture()
def hasher() -> IdentifierHasher:
    return IdentifierHasher(SECRET)


# --- from_mapping -------------------------------------------------------------------------


def test_from_mapping_reads_every_field() -> None:
    app = Application.from_mapping(rec())
    assert app.application_id == "app-1" and app.applicant_id == "ID-0001"
    assert app.timestamp == T0 and app.timestamp.tzinfo is timezone.utc
    assert app.phones == ("4155552671", "+1 212 555 0100")
    assert app.contact_phones == ("(646) 555-0199",)
    assert app.thin_file is True
    assert app.ts == int(T0.timestamp())


@pytest.mark.parametrize("name", ["application_id", "applicant_id", "lender_id", "timestamp"])
@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")])
def test_missing_required_field(name: str, missing: object) -> None:
    with pytest.raises(InvalidRecord) as info:
        Application.from_mapping(rec(**{name: missing}), row=7)
    assert info.value.field == name and info.value.row == 7
    assert "missing" in info.value.message


def test_absent_required_key() -> None:
    m = rec()
    del m["lender_id"]
    with pytest.raises(InvalidRecord) as info:
        Application.from_mapping(m)
    assert info.value.field == "lender_id"


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRecord, match="mapping"):
        Application.from_mapping(["app-1", "ID"], row=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T10:00:00Z", T0),
        ("2024-03-01T10:00:00+00:00", T0),
        ("2024-03-01T12:00:00+02:00", T0),
        ("2024-03-01 10:00:00", T0),  # naive -> UTC
        ("2024-03-01T10:00:00.250Z", T0 + timedelta(milliseconds=250)),
        (int(T0.timestamp()), T0),
        (float(T0.timestamp()), T0),
        (str(int(T0.timestamp())), T0),
        (datetime(2024, 3, 1, 10, 0), T0),
        (datetime(2024, 3, 1, 5, 0, tzinfo=timezone(timedelta(hours=-5))), T0),
    ],
)
def test_timestamp_forms(value: object, expected: datetime) -> None:
    got = parse_timestamp(value)
    assert got == expected and got.tzinfo is timezone.utc


def test_timestamp_from_numpy_and_pandas() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    assert parse_timestamp(np.datetime64("2024-03-01T10:00:00")) == T0
    assert parse_timestamp(pd.Timestamp("2024-03-01T10:00:00Z")) == T0
    assert parse_timestamp(np.int64(int(T0.timestamp()))) == T0
    with pytest.raises(InvalidRecord, match="missing"):
        parse_timestamp(pd.NaT)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("yesterday", "ISO 8601"),
        ("2024-13-01", "ISO 8601"),
        ("1969-12-31T23:59:59Z", "outside"),
        ("2100-01-01T00:00:00Z", "outside"),
        (-1, "outside"),
        (1_700_000_000_000, "milliseconds"),
        (float("inf"), "finite"),
        (True, "boolean"),
        ([2024, 3, 1], "list"),
    ],
)
def test_bad_timestamps(value: object, match: str) -> None:
    with pytest.raises(InvalidRecord, match=match) as info:
        Application.from_mapping(rec(timestamp=value), row=2)
    assert info.value.field == "timestamp" and info.value.row == 2


def test_ids_accept_integers_but_not_other_types() -> None:
    app = Application.from_mapping(rec(application_id=42, applicant_id=7.0, lender_id="L"))
    assert app.application_id == "42" and app.applicant_id == "7"
    for bad in ([1, 2], {"a": 1}, True, 1.5, b"bytes"):
        with pytest.raises(InvalidRecord) as info:
            Application.from_mapping(rec(applicant_id=bad))
        assert info.value.field == "applicant_id"


def test_overlong_fields_are_refused() -> None:
    for name in ("application_id", "address", "email", "device_id"):
        with pytest.raises(InvalidRecord, match="limit") as info:
            Application.from_mapping(rec(**{name: "x" * 1025}))
        assert info.value.field == name
    # the limit is in UTF-8 bytes: 400 three-byte characters are over it
    with pytest.raises(InvalidRecord, match="bytes"):
        Application.from_mapping(rec(address="€" * 400))
    assert Application.from_mapping(rec(address="x" * 1024)).address == "x" * 1024


def test_phone_lists_in_every_shape() -> None:
    assert Application.from_mapping(rec(phones=["1", " 2 ", ""])).phones == ("1", "2")
    assert Application.from_mapping(rec(phones=("1",))).phones == ("1",)
    assert Application.from_mapping(rec(phones="1| |2|")).phones == ("1", "2")
    assert Application.from_mapping(rec(phones=None)).phones == ()
    assert Application.from_mapping(rec(phones=4155552671)).phones == ("4155552671",)
    with pytest.raises(InvalidRecord) as info:
        Application.from_mapping(rec(contact_phones={"a": 1}))
    assert info.value.field == "contact_phones"
    with pytest.raises(InvalidRecord, match="limit"):
        Application.from_mapping(rec(phones="|".join(["4155552671"] * 101)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("0", False), ("TRUE", True), ("no", False), (" y ", True), (1, True),
     (0, False), (False, False), ("", None), (None, None), (float("nan"), None)],
)
def test_thin_file_values(value: object, expected: bool | None) -> None:
    assert Application.from_mapping(rec(thin_file=value)).thin_file is expected


@pytest.mark.parametrize("value", ["maybe", 2, "1.5"])
def test_bad_thin_file(value: object) -> None:
    with pytest.raises(InvalidRecord) as info:
        Application.from_mapping(rec(thin_file=value))
    assert info.value.field == "thin_file"


def test_lender_type_normalised_and_checked() -> None:
    assert Application.from_mapping(rec(lender_type=" Consumer Finance ")).lender_type == (
        "consumer_finance"
    )
    assert Application.from_mapping(rec(lender_type=None)).lender_type == "unknown"
    for bad in ("all", "ALL", "bank/credit", "bänk"):
        with pytest.raises(InvalidRecord) as info:
            Application.from_mapping(rec(lender_type=bad))
        assert info.value.field == "lender_type"


def test_unknown_keys_are_ignored() -> None:
    assert Application.from_mapping(rec(extra="whatever")).application_id == "app-1"


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidRecord, match="timezone-aware"):
        Application("a", "b", "c", "bank", datetime(2024, 1, 1))
    with pytest.raises(InvalidRecord):
        Application("", "b", "c", "bank", T0)
    app = Application("a", "b", "c", "bank", T0.astimezone(timezone(timedelta(hours=3))),
                      phones=["1"])  # type: ignore[arg-type]
    assert app.timestamp.tzinfo is timezone.utc and app.timestamp == T0
    assert app.phones == ("1",)


def test_repr_hides_identifiers() -> None:
    app = Application.from_mapping(rec())
    text = repr(app) + str(app)
    for raw in ("ID-0001", "DEV-1", "4155552671", "555-0199", "192.0.2.7", "Baker", "4111",
                "Jane"):
        assert raw not in text
    assert "app-1" in text and "<2 hidden>" in text and "L1" in text


def test_application_is_frozen() -> None:
    app = Application.from_mapping(rec())
    with pytest.raises(AttributeError):
        app.applicant_id = "other"  # type: ignore[misc]


# --- hashing ------------------------------------------------------------------------------


def test_hash_application_is_deterministic_and_sorted(hasher: IdentifierHasher) -> None:
    app = Application.from_mapping(rec(phones="4155552671|(415) 555-2671|+1 212 555 0100"))
    h1 = hash_application(app, hasher)
    h2 = hash_application(app, IdentifierHasher(SECRET))
    assert h1 == h2
    assert list(h1.links) == sorted(set(h1.links))
    assert len(h1.tokens("phone")) == 2  # the two spellings of one number merged
    assert h1.applicant == hasher.token(IdKind.APPLICANT, "ID-0001")
    roles = {r for r, _ in h1.links}
    assert roles == {"device", "phone", "contact", "ip", "address", "card", "email"}
    assert h1.ts == int(T0.timestamp()) and h1.thin_file is True
    assert h1.tokens("contact") == (hasher.token("phone", "646-555-0199"),)


def test_hash_application_minimal(hasher: IdentifierHasher) -> None:
    app = Application("a", "id", "L", "bank", T0)
    h = hash_application(app, hasher)
    assert h.links == () and h.thin_file is None


def test_contact_that_is_anothers_phone_shares_a_token(hasher: IdentifierHasher) -> None:
    a = hash_application(Application.from_mapping(rec(phones="646 555 0199",
                                                       contact_phones=None)), hasher)
    b = hash_application(Application.from_mapping(rec(application_id="app-2", applicant_id="X9",
                                                      phones=None)), hasher)
    assert set(a.tokens("phone")) & set(b.tokens("contact"))


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"phones": "4155552671|12"}, "phones"),
        ({"contact_phones": "not a number"}, "contact_phones"),
        ({"ip": "999.1.1.1"}, "ip"),
        ({"email": "nobody"}, "email"),
        ({"card": "12"}, "card"),
        ({"applicant_id": "--"}, "applicant_id"),
    ],
)
def test_invalid_identifier_names_its_field(
    hasher: IdentifierHasher, over: dict[str, str], field: str
) -> None:
    app = Application.from_mapping(rec(**over))
    with pytest.raises(InvalidRecord) as info:
        hash_application(app, hasher)
    assert info.value.field == field
    for raw in over.values():
        for part in raw.split("|"):
            if len(part) > 2:
                assert part not in info.value.message


def test_hashed_application_holds_no_raw_identifier(hasher: IdentifierHasher) -> None:
    app = Application.from_mapping(rec())
    text = json.dumps(hash_application(app, hasher).to_dict())
    for raw in ("ID-0001", "ID0001", "DEV-1", "dev-1", "4155552671", "+14155552671", "2125550100",
                "6465550199", "192.0.2.7", "Baker", "baker", "4111111111111111", "jane.doe",
                "example.org"):
        assert raw.lower() not in text.lower()


def test_hashed_application_to_dict_round_trips(hasher: IdentifierHasher) -> None:
    h = hash_application(Application.from_mapping(rec()), hasher)
    d = json.loads(json.dumps(h.to_dict()))
    back = HashedApplication(**{**d, "links": tuple(tuple(x) for x in d["links"])})
    assert back == h


# --- loading ------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, Any]], header: tuple[str, ...] = CSV_COLUMNS,
               bom: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(header), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _rows(n: int) -> list[dict[str, Any]]:
    return [rec(application_id=f"a{i}", applicant_id=f"ID{i % 5}",
                timestamp=int(T0.timestamp()) + i) for i in range(n)]


def test_csv_with_bad_rows_reports_them_and_keeps_the_rest(tmp_path: Path) -> None:
    rows = _rows(6)
    rows[1]["timestamp"] = "not a time"
    rows[3]["applicant_id"] = ""
    path = tmp_path / "apps.csv"
    _write_csv(path, rows, bom=True)
    res = read_applications(path)
    assert [a.application_id for a in res.applications] == ["a0", "a2", "a4", "a5"]
    assert [(e.row, e.field) for e in res.errors] == [(1, "timestamp"), (3, "applicant_id")]
    assert "line 3" in res.errors[0].message  # header is line 1
    assert res.rows == 6
    assert res.to_dict()["errors"][0]["field"] == "timestamp"


def test_csv_extra_fields_blank_lines_and_huge_field(tmp_path: Path) -> None:
    path = tmp_path / "apps.csv"
    header = ",".join(CSV_COLUMNS)
    good = "a1,ID1,L1,bank,2024-01-01T00:00:00Z,,,,,,,,"
    extra = "a2,ID2,L1,bank,2024-01-01T00:00:00Z,,,,,,,,,surplus"
    huge = "a3,ID3,L1,bank,2024-01-01T00:00:00Z," + "d" * 200_000 + ",,,,,,,"
    short = "a4,ID4,L1,bank,1704067200"
    path.write_text("\n".join([header, good, "", extra, huge, short]) + "\n")
    res = read_applications(path)
    assert [a.application_id for a in res.applications] == ["a1", "a4"]
    assert [e.row for e in res.errors] == [1, 2]
    assert "fields" in res.errors[0].message and "malformed" in res.errors[1].message


def test_csv_gz(tmp_path: Path) -> None:
    plain = tmp_path / "a.csv"
    _write_csv(plain, _rows(3))
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_applications(gz).applications == read_applications(plain).applications


def test_csv_missing_required_column(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    _write_csv(path, _rows(2), header=("application_id", "applicant_id", "timestamp"))
    with pytest.raises(ConfigError, match="lender_id"):
        read_applications(path)


def test_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("")
    assert read_applications(path).rows == 0


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_applications(tmp_path / "missing.csv")
    other = tmp_path / "a.xlsx"
    other.write_text("x")
    with pytest.raises(ConfigError, match="unsupported"):
        read_applications(other)
    with pytest.raises(ConfigError):
        read_applications(12)
    with pytest.raises(ConfigError):
        read_applications(b"a,b")


def test_iterable_of_dicts_with_a_non_mapping() -> None:
    items: list[Any] = [*_rows(2), "oops", rec(application_id="z")]
    res = read_applications(iter(items))
    assert [a.application_id for a in res.applications] == ["a0", "a1", "z"]
    assert res.errors[0].row == 2


def test_duplicates_identical_are_silent_different_are_reported() -> None:
    rows = _rows(3)
    same = dict(rows[0])
    changed = dict(rows[1], lender_id="OTHER")
    res = read_applications([*rows, same, changed])
    assert [a.application_id for a in res.applications] == ["a0", "a1", "a2"]
    assert res.duplicates == 1
    assert len(res.errors) == 1
    err = res.errors[0]
    assert err.row == 4 and err.field == "application_id"
    assert "lender_id" in err.message and "row 1" in err.message
    assert res.applications[1].lender_id == "L1"  # first kept


def test_applications_pass_through() -> None:
    app = Application.from_mapping(rec())
    assert read_applications([app]).applications == [app]


def test_pandas_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    rows = _rows(4)
    rows[2]["timestamp"] = None
    df = pd.DataFrame(rows)
    df["thin_file"] = [1, 0, None, 1]  # float column with NaN
    res = read_applications(df)
    assert [a.application_id for a in res.applications] == ["a0", "a1", "a3"]
    assert [(e.row, e.field) for e in res.errors] == [(2, "timestamp")]
    assert res.applications[1].thin_file is False
    # datetime64 column and integer id column
    df2 = pd.DataFrame({"application_id": [1, 2], "applicant_id": ["x", "y"],
                        "lender_id": ["L", "L"],
                        "timestamp": pd.to_datetime(["2024-03-01T10:00:00",
                                                     "2024-03-02T00:00:00"])})
    apps = read_applications(df2).applications
    assert [a.application_id for a in apps] == ["1", "2"] and apps[0].timestamp == T0


def test_arrow_table_and_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = _rows(5)
    rows[4]["lender_id"] = None
    for r in rows:
        r["phones"] = r["phones"].split("|")  # list column
    table = pa.Table.from_pylist(rows)
    res = read_applications(table)
    assert len(res.applications) == 4 and res.errors[0].row == 4
    assert res.applications[0].phones == ("4155552671", "+1 212 555 0100")
    path = tmp_path / "apps.parquet"
    pq.write_table(table, path, row_group_size=2)
    res_pq = read_applications(path)
    assert res_pq.applications == res.applications
    assert [(e.row, e.field) for e in res_pq.errors] == [(4, "lender_id")]
    batch = table.to_batches()[0]
    assert read_applications(batch).applications == res.applications[: batch.num_rows]


def test_parquet_without_pyarrow_is_a_clear_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match="pyarrow"):
        read_applications(path)


def test_not_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "a.parquet"
    path.write_text("hello")
    with pytest.raises(ConfigError, match="Parquet"):
        read_applications(path)


def test_iter_applications_streams() -> None:
    def gen() -> Any:
        yield rec(application_id="first")
        raise RuntimeError("the source must not be read past what was asked")

    it = iter_applications(gen())
    first = next(it)
    assert isinstance(first, Application) and first.application_id == "first"
