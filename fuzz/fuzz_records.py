"""Coverage-guided fuzz target (atheris) for application records.

Property: malformed records only ever produce the errors kyc documents for them:

* :meth:`kyc.graph.records.Application.from_mapping` and :func:`hash_application` return a
  record or raise :class:`~kyc.errors.InvalidRecord`;
* :func:`read_applications` on a CSV or Parquet file returns a ``LoadResult`` whose errors
  are ``InvalidRecord`` objects carrying their row, or raises
  :class:`~kyc.errors.ConfigError` for a file it cannot read at all (no header, a missing
  required column, not Parquet);
* :meth:`kyc.graph.fraudgraph.FraudGraph.add_many` reports each bad row in
  ``BatchResult.errors`` and adds the rest (``added + duplicates + len(errors) == rows``);
  :meth:`FraudGraph.add` raises only ``InvalidRecord`` for a bad record.

Anything else is a failure. The first input byte picks the mode: a mapping built from typed
values (text with any code point including lone surrogates, very long text, huge and
negative integers, NaN/inf floats, booleans, bytes, lists, dicts, datetimes with zones at
the ends of the calendar, dates, numpy scalars, decimals); raw CSV bytes under a (possibly
shuffled or partial) header; a Parquet file with columns of fuzz-chosen Arrow types
(timestamps and dates far outside 1970-2100 included); the same mappings through
``FraudGraph.add_many`` and ``FraudGraph.add``.

Run it like ``fuzz/fuzz_image.py`` (``--make-corpus DIR``, ``KYC_FUZZ_SUMMARY=out.json``
for counting mode).
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]
import numpy as np
from _harness import Tally

with atheris.instrument_imports(include=["kyc"]):
    from kyc.errors import ConfigError, InvalidRecord
    from kyc.graph.fraudgraph import BatchResult, FraudGraph
    from kyc.graph.identifiers import IdentifierHasher
    from kyc.graph.records import (
        CSV_COLUMNS,
        Application,
        LoadResult,
        hash_application,
        read_applications,
    )

__all__ = ["check_one", "make_corpus"]

_SECRET = b"fuzz-records-secret-0123456789"
_HASHER = IdentifierHasher(_SECRET)
_TMP = Path(tempfile.mkdtemp(prefix="kyc_fuzz_records_"))
_FIELDS = (*CSV_COLUMNS, "extra_column", "")
_GRAPH: list[FraudGraph] = []
_GRAPH_INPUTS = [0]
_ZONES = (None, timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
          timezone(timedelta(hours=5, minutes=30)))


def _text(fdp: Any) -> str:
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind == 0:
        return str(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64)))  # lone surrogates too
    if kind == 1:
        return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)))
    if kind == 2:  # very long
        repeat: int = fdp.ConsumeIntInRange(100, 3000)
        return str(fdp.ConsumeUnicodeNoSurrogates(8)) * repeat
    if kind == 3:  # plausible identifiers
        return str(fdp.PickValueInList([
            "+1 415 555 2671", "(212) 555-0187", "4155552671", "+44 20 7946 0321",
            "a.b+x@GMail.com", "x@y", "203.0.113.7", "::ffff:192.0.2.1", "2001:db8::1%eth0",
            "4929 8872 6613 0042", "5500-0000-0000-0004", "12 Baker Street, Apt. #4",
            "Müller Straße 5", "dev-001", "2024-03-01T10:00:00Z", "1700000000", "nbank",
            "true", "0", "", " ", "|", "||+1 415 555 2671|", "NaN", "inf", "-1",
        ]))
    if kind == 4:  # ISO timestamps at and past the ends of the calendar
        year = fdp.ConsumeIntInRange(1, 9999)
        off = fdp.ConsumeIntInRange(-14, 14)
        sign = "+" if off >= 0 else "-"
        return f"{year:04d}-{fdp.ConsumeIntInRange(1, 12):02d}-01T00:00:00{sign}{abs(off):02d}:00"
    return str(fdp.ConsumeString(fdp.ConsumeIntInRange(0, 30)))


def _value(fdp: Any, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 16)
    if kind <= 4:
        return _text(fdp)
    if kind == 5:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 2000))  # up to ~4800 digits
    if kind == 6:
        return fdp.ConsumeFloat()
    if kind == 7:
        return fdp.ConsumeBool()
    if kind == 8:
        return None
    if kind == 9:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    if kind == 10 and depth < 2:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 11 and depth < 2:
        return {_text(fdp): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 2))}
    if kind == 12:
        zone = fdp.PickValueInList(list(_ZONES))
        try:
            return datetime(fdp.ConsumeIntInRange(1, 9999), fdp.ConsumeIntInRange(1, 12),
                            fdp.ConsumeIntInRange(1, 28), fdp.ConsumeIntInRange(0, 23),
                            tzinfo=zone)
        except ValueError:
            return None
    if kind == 13:
        return date(fdp.ConsumeIntInRange(1, 9999), 1, fdp.ConsumeIntInRange(1, 28))
    if kind == 14:
        return fdp.PickValueInList([np.int64(fdp.ConsumeInt(8)), np.float32(fdp.ConsumeFloat()),
                                    np.bool_(fdp.ConsumeBool()), np.str_(_text(fdp)),
                                    np.datetime64(fdp.ConsumeIntInRange(-2**62, 2**62), "s")])
    if kind == 15:
        return Decimal(fdp.ConsumeIntInRange(-10**6, 10**6)) / 7
    return (_text(fdp), _text(fdp))


def _mapping(fdp: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"application_id": "a1", "applicant_id": "ID-1", "lender_id": "L1",
                            "timestamp": "2024-03-01T10:00:00Z"}
    if fdp.ConsumeBool():
        base = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        base[fdp.PickValueInList(list(_FIELDS))] = _value(fdp)
    return base


def _csv_file(fdp: Any) -> Path:
    cols = list(CSV_COLUMNS)
    order = fdp.ConsumeIntInRange(0, 3)
    if order == 1:
        cols.reverse()
    elif order == 2:
        cols = cols[: fdp.ConsumeIntInRange(0, len(cols))]
    header = ",".join(cols).encode()
    if fdp.ConsumeBool():
        header = b"\xef\xbb\xbf" + header  # BOM
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    path = _TMP / "in.csv"
    path.write_bytes(header + b"\n" + body)
    return path


def _parquet_file(fdp: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = fdp.ConsumeIntInRange(1, 4)
    columns: dict[str, Any] = {}
    for name in ("application_id", "applicant_id", "lender_id", "timestamp", "phones",
                 "thin_file", "email"):
        kind = fdp.ConsumeIntInRange(0, 7)
        if kind == 0:
            arr = pa.array([_text(fdp) for _ in range(n)], type=pa.string())
        elif kind == 1:
            arr = pa.array([fdp.ConsumeIntInRange(-2**63, 2**63 - 1) for _ in range(n)],
                           type=pa.int64())
        elif kind == 2:
            arr = pa.array([fdp.ConsumeFloat() for _ in range(n)], type=pa.float64())
        elif kind == 3:  # any int64 seconds: far outside what datetime can hold
            unit = fdp.PickValueInList(["s", "ms", "us", "ns"])
            tz = fdp.PickValueInList([None, "UTC", "+05:30"])
            arr = pa.array([fdp.ConsumeIntInRange(-2**62, 2**62) for _ in range(n)],
                           type=pa.timestamp(unit, tz=tz))
        elif kind == 4:
            arr = pa.array([fdp.ConsumeIntInRange(-2**31, 2**31 - 1) for _ in range(n)],
                           type=pa.date32())
        elif kind == 5:
            arr = pa.array([fdp.ConsumeBool() for _ in range(n)], type=pa.bool_())
        elif kind == 6:
            arr = pa.array([[_text(fdp)] for _ in range(n)], type=pa.list_(pa.string()))
        else:
            arr = pa.array([fdp.ConsumeBytes(4) for _ in range(n)], type=pa.binary())
        if fdp.ConsumeIntInRange(0, 9) or name in ("application_id", "timestamp"):
            columns[name] = arr
    path = _TMP / "in.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _check_load(result: Any) -> None:
    if not isinstance(result, LoadResult):
        raise AssertionError(f"read_applications returned {type(result).__name__}")
    for err in result.errors:
        if not isinstance(err, InvalidRecord) or err.row is None:
            raise AssertionError(f"bad error item {err!r}")
    if len(result.applications) + len(result.errors) + result.duplicates != result.rows:
        raise AssertionError("LoadResult counts do not add up")


def _graph() -> FraudGraph:
    if not _GRAPH or _GRAPH_INPUTS[0] >= 3000:  # a fresh graph now and then: bounded memory
        _GRAPH.clear()
        _GRAPH.append(FraudGraph(_HASHER))
        _GRAPH_INPUTS[0] = 0
    _GRAPH_INPUTS[0] += 1
    return _GRAPH[0]


def check_one(data: bytes) -> None:
    """Run one input; return normally when kyc behaved as documented.

    Raises ``AssertionError`` for a broken result and lets undocumented exceptions through
    (the fuzzer's failure signal).
    """
    if not data:
        return
    mode = data[0] % 5
    fdp = atheris.FuzzedDataProvider(data[1:])
    if mode == 0:
        try:
            app = Application.from_mapping(_mapping(fdp), row=3)
            hash_application(app, _HASHER)
        except InvalidRecord:
            return
    elif mode == 1:
        path = _csv_file(fdp)
        try:
            _check_load(read_applications(path))
        except ConfigError:
            return
    elif mode == 2:
        try:
            path = _parquet_file(fdp)
        except (ValueError, OverflowError, TypeError):
            return  # pyarrow refused to build the table: not kyc's input
        try:
            _check_load(read_applications(path))
        except ConfigError:
            return
    elif mode == 3:
        rows = [_mapping(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))]
        result = _graph().add_many(rows)
        if not isinstance(result, BatchResult) or result.rows != len(rows):
            raise AssertionError("add_many lost rows")
        if result.added + result.duplicates + len(result.errors) != result.rows:
            raise AssertionError("BatchResult counts do not add up")
    else:
        try:
            _graph().add(_mapping(fdp))
        except InvalidRecord:
            return


def _mode(data: bytes) -> str:
    """The input's mode: the first byte picks one of five ways in."""
    return ("mapping", "csv", "parquet", "add_many", "add")[data[0] % 5] if data else "-"


def make_corpus(folder: Path, data_dir: Path | None = None) -> list[Path]:
    """Write seed inputs for every mode to ``folder``: synthetic applications as CSV rows and
    mapping seeds (``data_dir`` is unused: records come from :mod:`kyc.graph.synth`)."""
    from kyc.graph.synth import generate, write_csv

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = _TMP / "seed.csv"
    write_csv(generate(40, seed=3), csv_path)
    lines = csv_path.read_bytes().split(b"\n")
    written = []
    for i in range(0, 40, 8):
        path = folder / f"seed_csv_{i}"
        # mode 1, header choice 0, no BOM, then the rows as the body
        path.write_bytes(b"\x01\x00\x00" + b"\n".join(lines[1 + i : 9 + i]))
        written.append(path)
    rng = np.random.default_rng(0)
    for mode in (0, 2, 3, 4):
        for k in range(6):
            path = folder / f"seed_mode{mode}_{k}"
            path.write_bytes(bytes([mode]) + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
            written.append(path)
    return written


def main(argv: list[str]) -> None:
    """Entry point: ``--make-corpus DIR`` writes seeds; anything else goes to libFuzzer."""
    if len(argv) >= 3 and argv[1] == "--make-corpus":
        files = make_corpus(Path(argv[2]))
        print(f"wrote {len(files)} seed inputs to {argv[2]}")
        return
    summary = os.environ.get("KYC_FUZZ_SUMMARY")
    if summary:
        tally = Tally(Path(summary), "records", check_one, _mode)
        atexit.register(tally.write)
        atheris.Setup(argv, tally.one)
    else:
        atheris.Setup(argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
