"""Application records: schema, validation, loading, and the hashed form the graph stores.

An :class:`Application` is one credit application as the lender sees it (raw identifiers).
:func:`hash_application` turns it into a :class:`HashedApplication`, which holds only keyed
tokens and is the only form that reaches a store, an export or a log.

Loading (:func:`read_applications`, :func:`iter_applications`) accepts a CSV path (streamed with
the :mod:`csv` module, optionally ``.gz``), a Parquet path (streamed by record batch; needs
``pyarrow``), a pandas DataFrame, a pyarrow Table or RecordBatch, or any iterable of mappings.
A bad row is reported with its 0-based row number, field and reason, and the rest goes on.

Validation rules (:meth:`Application.from_mapping`):

- ``application_id``, ``applicant_id``, ``lender_id``: required, non-empty; strings or
  integers (an integral float such as pandas makes of an int column with gaps is read as
  its integer).
- ``lender_type``: optional (``"unknown"`` when missing); lower-cased, spaces and dashes to
  ``_``; must match ``[a-z0-9_]+`` because it becomes part of velocity feature names; ``all``
  is reserved.
- ``timestamp``: required. An aware ``datetime`` (converted to UTC); a naive ``datetime`` or
  an ISO 8601 string without a zone is taken as **UTC**; an ISO 8601 string with a zone
  (``Z`` or ``+hh:mm``); epoch seconds as int, float or numeric string; a ``date`` is
  midnight UTC. It must fall in [1970-01-01, 2100-01-01) UTC (an epoch in milliseconds lands
  beyond 2100 and is refused with a hint).
- ``phones``, ``contact_phones``: a list/tuple (or array) of strings, or one string with
  ``|`` between numbers; empty items dropped; at most 100 each.
- ``device_id``, ``ip``, ``address``, ``card``, ``email``: optional strings.
- ``thin_file``: bool, 0/1, or one of true/false/yes/no/t/f/y/n/1/0 (any case); empty means
  unknown (``None``).
- Every text value is at most 1024 bytes in UTF-8. Missing values are ``None``, ``""``, NaN,
  pandas ``NA``/``NaT``. Unknown keys are ignored.

Identifier *formats* (is this a real phone number?) are checked when hashing, because phone
parsing depends on the deployment's default region: :func:`hash_application` raises
:class:`~kyc.errors.InvalidRecord` naming the field.

>>> from kyc.graph.identifiers import IdentifierHasher
>>> app = Application.from_mapping({
...     "application_id": "a1", "applicant_id": "ID-001", "lender_id": "L9",
...     "lender_type": "nbank", "timestamp": "2024-03-01T10:00:00Z",
...     "phones": "4155552671|+1 212 555 0100", "device_id": "dev-7"})
>>> app.timestamp.isoformat(), app.phones
('2024-03-01T10:00:00+00:00', ('4155552671', '+1 212 555 0100'))
>>> h = hash_application(app, IdentifierHasher(b"0123456789abcdef-example"))
>>> h.ts, [role for role, _ in h.links]
(1709287200, ['device', 'phone', 'phone'])
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.identifiers import IdentifierHasher, IdKind, Role

__all__ = [
    "CSV_COLUMNS",
    "MAX_FIELD_BYTES",
    "MAX_PHONES",
    "Application",
    "HashedApplication",
    "LoadResult",
    "hash_application",
    "iter_applications",
    "parse_timestamp",
    "read_applications",
]

#: Longest accepted text value, in UTF-8 bytes.
MAX_FIELD_BYTES: Final = 1024
#: Most phone numbers accepted in ``phones`` or ``contact_phones``.
MAX_PHONES: Final = 100
#: CSV column order written and read by the project.
CSV_COLUMNS: Final = (
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

_TS_MIN: Final = 0  # 1970-01-01T00:00:00Z
_TS_MAX: Final = 4102444800  # 2100-01-01T00:00:00Z (exclusive)
_LENDER_TYPE_RE = re.compile(r"[a-z0-9_]+")
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_REQUIRED = ("application_id", "applicant_id", "lender_id")
_OPTIONAL_TEXT = ("device_id", "ip", "address", "card", "email")
_IDENTIFIER_FIELDS = (
    "applicant_id", "device_id", "phones", "contact_phones", "ip", "address", "card", "email"
)


# --- value parsing ------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return type(value).__name__ in ("NAType", "NaTType")


def _check_len(text: str, name: str, row: int | None) -> str:
    try:
        n = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # a lone surrogate (e.g. JSON "\\ud800"); the value is never echoed
        raise InvalidRecord(
            f"{name} is not valid Unicode text (it holds a lone surrogate)", row=row, field=name
        ) from None
    if n > MAX_FIELD_BYTES:
        raise InvalidRecord(
            f"{name} is {n} bytes long; the limit is {MAX_FIELD_BYTES}", row=row, field=name
        )
    return text


def _text(value: object, name: str, row: int | None) -> str | None:
    """A text field: str, int (not bool) or integral float -> stripped str; missing -> None."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        raise InvalidRecord(f"{name} must be text, not a boolean", row=row, field=name)
    elif isinstance(value, int):
        if abs(value) >= 10**MAX_FIELD_BYTES:  # more digits than the byte limit (str() of an
            # int over 4300 digits would raise ValueError)
            raise InvalidRecord(
                f"{name} is a number too long for a text field; the limit is "
                f"{MAX_FIELD_BYTES} bytes",
                row=row,
                field=name,
            )
        text = str(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise InvalidRecord(
                f"{name} must be text, not a fractional number", row=row, field=name
            )
        text = str(int(value))
    elif type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _text(value.item(), name, row)
    else:
        raise InvalidRecord(
            f"{name} must be text, not {type(value).__name__}", row=row, field=name
        )
    return _check_len(text.strip(), name, row) or None


def _phones(value: object, name: str, row: int | None) -> tuple[str, ...]:
    if _is_missing(value):
        return ()
    items: list[object]
    if isinstance(value, str):
        items = list(value.split("|"))
    elif isinstance(value, list | tuple):
        items = list(value)
    elif hasattr(value, "tolist") and not isinstance(value, int | float):
        listed = value.tolist()
        items = listed if isinstance(listed, list) else [listed]
    elif isinstance(value, int | float):
        items = [value]
    else:
        raise InvalidRecord(
            f"{name} must be a list of strings or a '|'-separated string, "
            f"not {type(value).__name__}",
            row=row,
            field=name,
        )
    out: list[str] = []
    for item in items:
        text = _text(item, name, row)
        if text is not None:
            out.append(text)
    if len(out) > MAX_PHONES:
        raise InvalidRecord(
            f"{name} holds {len(out)} numbers; the limit is {MAX_PHONES}", row=row, field=name
        )
    return tuple(out)


def _bool(value: object, name: str, row: int | None) -> bool | None:
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _bool(value.item(), name, row)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidRecord(
        f"{name} must be true/false, yes/no or 1/0", row=row, field=name
    )


def _lender_type(value: object, row: int | None) -> str:
    text = _text(value, "lender_type", row)
    if text is None:
        return "unknown"
    norm = re.sub(r"[\s\-]+", "_", text.lower())
    if not _LENDER_TYPE_RE.fullmatch(norm):
        raise InvalidRecord(
            "lender_type may hold only letters, digits and '_' (it names velocity features)",
            row=row,
            field="lender_type",
        )
    if norm == "all":
        raise InvalidRecord(
            "lender_type 'all' is reserved for the all-lenders velocity features",
            row=row,
            field="lender_type",
        )
    return norm


def _from_epoch(seconds: float, row: int | None) -> datetime:
    if not math.isfinite(seconds):
        raise InvalidRecord("timestamp is not a finite number", row=row, field="timestamp")
    if seconds < _TS_MIN or seconds >= _TS_MAX:
        hint = " (it looks like milliseconds; give seconds)" if seconds >= _TS_MAX * 100 else ""
        raise InvalidRecord(
            f"timestamp {seconds:g} is outside 1970-01-01..2100-01-01 UTC{hint}",
            row=row,
            field="timestamp",
        )
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


# numpy datetime64 units with a fixed length: seconds per unit as (numerator, denominator)
_DT64_UNITS: Final = {
    "W": (604800, 1), "D": (86400, 1), "h": (3600, 1), "m": (60, 1), "s": (1, 1),
    "ms": (1, 10**3), "us": (1, 10**6), "ns": (1, 10**9), "ps": (1, 10**12),
    "fs": (1, 10**15), "as": (1, 10**18),
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _from_datetime64(value: Any, row: int | None) -> datetime:
    """A ``numpy.datetime64`` (any unit) -> aware UTC datetime, range-checked exactly.

    Works on the raw integer count with Python integers, so no unit conversion can wrap
    around (casting to ``datetime64[ns]`` silently wraps years beyond 2262).
    """
    import numpy as np

    if np.isnat(value):
        raise InvalidRecord("timestamp is missing", row=row, field="timestamp")
    unit, count = np.datetime_data(value.dtype)
    n = int(value.astype("int64")) * int(count)
    if unit in ("Y", "M"):
        months = n * 12 if unit == "Y" else n
        year, month = 1970 + months // 12, months % 12 + 1
        if not 1970 <= year < 2100:
            raise InvalidRecord(
                f"timestamp year {year} is outside 1970-01-01..2100-01-01 UTC",
                row=row,
                field="timestamp",
            )
        return datetime(year, month, 1, tzinfo=timezone.utc)
    if unit not in _DT64_UNITS:
        raise InvalidRecord(
            f"timestamp has an unsupported datetime64 unit {unit!r}", row=row, field="timestamp"
        )
    num, den = _DT64_UNITS[unit]
    micros = n * num * 10**6 // den  # floor to whole microseconds
    if not _TS_MIN * 10**6 <= micros < _TS_MAX * 10**6:
        raise InvalidRecord(
            "timestamp is out of range: outside 1970-01-01..2100-01-01 UTC",
            row=row,
            field="timestamp",
        )
    return _EPOCH + timedelta(microseconds=micros)


def parse_timestamp(value: object, *, row: int | None = None) -> datetime:
    """Parse a timestamp into an aware UTC ``datetime`` (rules in the module docstring).

    >>> parse_timestamp("2024-01-02 03:04:05").isoformat()
    '2024-01-02T03:04:05+00:00'
    >>> parse_timestamp("2024-01-02T03:04:05+02:00").isoformat()
    '2024-01-02T01:04:05+00:00'
    >>> parse_timestamp(1700000000).isoformat()
    '2023-11-14T22:13:20+00:00'
    """
    if _is_missing(value):
        raise InvalidRecord("timestamp is missing", row=row, field="timestamp")
    if isinstance(value, datetime):
        if type(value).__name__ == "Timestamp" and hasattr(value, "asm8"):
            # a pandas Timestamp (its unit may reach far beyond Python's years 1..9999):
            # go through its UTC numpy value, range-checked before any conversion
            return _from_datetime64(value.asm8, row)
        dt = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
        try:
            dt = dt.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise InvalidRecord(
                "timestamp is out of range: outside 1970-01-01..2100-01-01 UTC",
                row=row,
                field="timestamp",
            ) from None
        return _from_epoch(dt.timestamp(), row) if dt.year < 1970 or dt.year >= 2100 else dt
    if isinstance(value, date):
        return parse_timestamp(datetime(value.year, value.month, value.day), row=row)
    if isinstance(value, bool):
        raise InvalidRecord("timestamp must not be a boolean", row=row, field="timestamp")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise InvalidRecord(
                "timestamp is out of range: outside 1970-01-01..2100-01-01 UTC",
                row=row,
                field="timestamp",
            ) from None
        return _from_epoch(seconds, row)
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, np.datetime64):
            return _from_datetime64(value, row)
        if hasattr(value, "item"):
            return parse_timestamp(value.item(), row=row)
    if not isinstance(value, str):
        raise InvalidRecord(
            f"timestamp must be ISO 8601 text, epoch seconds or a datetime, "
            f"not {type(value).__name__}",
            row=row,
            field="timestamp",
        )
    text = value.strip()
    if len(text) > 64:
        raise InvalidRecord("timestamp text is too long", row=row, field="timestamp")
    try:
        return _from_epoch(float(text), row)
    except ValueError:
        pass
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidRecord(
            "timestamp is neither ISO 8601 nor epoch seconds", row=row, field="timestamp"
        ) from None
    return parse_timestamp(dt, row=row)


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Application:
    """One credit application with raw identifiers (never stored as such).

    ``timestamp`` is an aware UTC ``datetime`` (an aware one in another zone is converted; a
    naive one is refused here, use :meth:`from_mapping` to read naive times as UTC).
    Build one directly or with :meth:`from_mapping`, which validates and converts.
    ``repr`` hides the identifiers (an application printed into a log leaks nothing).
    """

    application_id: str
    applicant_id: str
    lender_id: str
    lender_type: str
    timestamp: datetime
    device_id: str | None = None
    phones: tuple[str, ...] = ()
    contact_phones: tuple[str, ...] = ()
    ip: str | None = None
    address: str | None = None
    card: str | None = None
    email: str | None = None
    thin_file: bool | None = None

    def __post_init__(self) -> None:
        for name in _REQUIRED:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRecord(f"{name} must be a non-empty string", field=name)
        if not isinstance(self.lender_type, str) or not _LENDER_TYPE_RE.fullmatch(
            self.lender_type
        ) or self.lender_type == "all":
            raise InvalidRecord(
                "lender_type must match [a-z0-9_]+ and not be 'all'", field="lender_type"
            )
        ts = self.timestamp
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            raise InvalidRecord(
                "timestamp must be a timezone-aware datetime", field="timestamp"
            )
        try:
            utc = ts.astimezone(timezone.utc)
            epoch = utc.timestamp()
        except (OverflowError, ValueError):
            epoch = float("nan")
        if not _TS_MIN <= epoch < _TS_MAX:
            raise InvalidRecord(
                "timestamp must fall in 1970-01-01..2100-01-01 UTC", field="timestamp"
            )
        if ts.tzinfo is not timezone.utc:
            object.__setattr__(self, "timestamp", utc)
        for name in ("phones", "contact_phones"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or not all(isinstance(p, str) for p in value):
                raise InvalidRecord(f"{name} must be a tuple of strings", field=name)
        for name in _OPTIONAL_TEXT:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidRecord(f"{name} must be a string or None", field=name)
        if self.thin_file is not None and not isinstance(self.thin_file, bool):
            raise InvalidRecord("thin_file must be a bool or None", field="thin_file")

    def __repr__(self) -> str:
        def shown(value: object) -> str:
            if value is None or value == ():
                return repr(value)
            if isinstance(value, tuple):
                return f"<{len(value)} hidden>"
            return "<hidden>"

        hidden = ", ".join(f"{n}={shown(getattr(self, n))}" for n in _IDENTIFIER_FIELDS)
        return (
            f"Application(application_id={self.application_id!r}, lender_id={self.lender_id!r}, "
            f"lender_type={self.lender_type!r}, timestamp={self.timestamp.isoformat()!r}, "
            f"thin_file={self.thin_file!r}, {hidden})"
        )

    @property
    def ts(self) -> int:
        """The timestamp as integer epoch seconds (floor)."""
        return math.floor(self.timestamp.timestamp())

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], *, row: int | None = None) -> Application:
        """Validate a mapping (a CSV row, a dict, a DataFrame row) into an ``Application``.

        ``row`` is copied into any :class:`~kyc.errors.InvalidRecord` raised, together with
        the offending ``field``. Rules are in the module docstring.
        """
        if not isinstance(m, Mapping):
            raise InvalidRecord(
                f"record must be a mapping of column names to values, not {type(m).__name__}",
                row=row,
            )
        values: dict[str, Any] = {}
        for name in _REQUIRED:
            text = _text(m.get(name), name, row)
            if text is None:
                raise InvalidRecord(f"{name} is missing", row=row, field=name)
            values[name] = text
        values["lender_type"] = _lender_type(m.get("lender_type"), row)
        values["timestamp"] = parse_timestamp(m.get("timestamp"), row=row)
        for name in _OPTIONAL_TEXT:
            values[name] = _text(m.get(name), name, row)
        values["phones"] = _phones(m.get("phones"), "phones", row)
        values["contact_phones"] = _phones(m.get("contact_phones"), "contact_phones", row)
        values["thin_file"] = _bool(m.get("thin_file"), "thin_file", row)
        try:
            return cls(**values)
        except InvalidRecord as exc:
            raise InvalidRecord(exc.message, row=row, field=exc.field) from None


@dataclass(frozen=True)
class HashedApplication:
    """An application with every identifier replaced by its keyed token.

    ``applicant`` is the applicant's token (``"applicant:..."``); ``ts`` epoch seconds (UTC);
    ``links`` the sorted, de-duplicated ``(role, token)`` pairs of all other identifiers
    (role values from :class:`~kyc.graph.identifiers.Role`; own phones are ``"phone"``,
    emergency contacts ``"contact"``, both with ``phone:`` tokens). This is the only form of
    an application that is stored or exported.
    """

    application_id: str
    applicant: str
    lender_id: str
    lender_type: str
    ts: int
    links: tuple[tuple[str, str], ...] = ()
    thin_file: bool | None = None

    def tokens(self, role: Role | str | None = None) -> tuple[str, ...]:
        """Tokens of the links with ``role`` (all link tokens when ``role`` is None)."""
        if role is None:
            return tuple(t for _, t in self.links)
        r = role.value if isinstance(role, Role) else role
        return tuple(t for lr, t in self.links if lr == r)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (links as ``[[role, token], ...]``)."""
        return {
            "application_id": self.application_id,
            "applicant": self.applicant,
            "lender_id": self.lender_id,
            "lender_type": self.lender_type,
            "ts": self.ts,
            "links": [[r, t] for r, t in self.links],
            "thin_file": self.thin_file,
        }


def hash_application(app: Application, hasher: IdentifierHasher) -> HashedApplication:
    """Normalise and hash every identifier of ``app`` into a :class:`HashedApplication`.

    Deterministic: the same application and secret give the same result (links sorted and
    de-duplicated). Raises :class:`~kyc.errors.InvalidRecord` with ``field`` set to the
    application's field name (``"phones"``, ``"contact_phones"``, ``"ip"``, ...) when an
    identifier is not valid for its kind; the message never holds the raw value.
    """
    links: set[tuple[str, str]] = set()

    def add(role: Role, fname: str, raw: str | None) -> None:
        if raw is None:
            return
        try:
            links.add((role.value, hasher.token(role.kind, raw)))
        except InvalidRecord as exc:
            raise InvalidRecord(exc.message, field=fname) from None

    try:
        applicant = hasher.token(IdKind.APPLICANT, app.applicant_id)
    except InvalidRecord as exc:
        raise InvalidRecord(exc.message, field="applicant_id") from None
    add(Role.DEVICE, "device_id", app.device_id)
    for p in app.phones:
        add(Role.PHONE, "phones", p)
    for p in app.contact_phones:
        add(Role.CONTACT, "contact_phones", p)
    add(Role.IP, "ip", app.ip)
    add(Role.ADDRESS, "address", app.address)
    add(Role.CARD, "card", app.card)
    add(Role.EMAIL, "email", app.email)
    return HashedApplication(
        application_id=app.application_id,
        applicant=applicant,
        lender_id=app.lender_id,
        lender_type=app.lender_type,
        ts=app.ts,
        links=tuple(sorted(links)),
        thin_file=app.thin_file,
    )


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What :func:`read_applications` read.

    ``applications``: the valid records, first occurrence of each ``application_id``, in
    input order. ``errors``: one :class:`~kyc.errors.InvalidRecord` per refused row (with
    ``row`` and ``field``), including a repeated ``application_id`` whose content differs
    from the first. ``rows``: rows seen. ``duplicates``: exact repeats dropped silently.
    """

    applications: list[Application] = field(default_factory=list)
    errors: list[InvalidRecord] = field(default_factory=list)
    rows: int = 0
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Summary in plain JSON types (counts and the error list, not the records)."""
        return {
            "rows": self.rows,
            "applications": len(self.applications),
            "duplicates": self.duplicates,
            "errors": [e.to_dict() for e in self.errors],
        }


def _row_error(exc: Exception, row: int, where: str) -> InvalidRecord:
    if isinstance(exc, InvalidRecord):
        msg = f"{where}: {exc.message}" if where else exc.message
        return InvalidRecord(msg, row=row, field=exc.field)
    return InvalidRecord(f"{where}: {exc}" if where else str(exc), row=row)


def _iter_csv(path: Path) -> Iterator[Application | InvalidRecord]:
    raw: io.TextIOBase
    try:
        if path.name.lower().endswith(".gz"):
            raw = gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[assignment]  # noqa: SIM115
        else:
            raw = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror or exc}") from None
    with raw:
        reader = csv.reader(raw)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read the CSV header of {path}: {exc}") from None
        header = [h.strip() for h in header]
        missing = [c for c in (*_REQUIRED, "timestamp") if c not in header]
        if missing:
            raise ConfigError(f"{path} has no column {', '.join(missing)} (header: {header})")
        width = len(header)
        row = -1
        while True:
            row += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield InvalidRecord(
                    f"{path.name} line {reader.line_num}: malformed CSV ({exc})", row=row
                )
                if isinstance(exc, UnicodeDecodeError):
                    return  # the decoder cannot resynchronise
                continue
            if not cells:
                row -= 1  # blank line: not a row
                continue
            if len(cells) > width:
                yield InvalidRecord(
                    f"{path.name} line {reader.line_num}: {len(cells)} fields, "
                    f"the header has {width}",
                    row=row,
                )
                continue
            try:
                yield Application.from_mapping(dict(zip(header, cells, strict=False)), row=row)
            except InvalidRecord as exc:
                yield _row_error(exc, row, f"{path.name} line {reader.line_num}")


def _arrow_rows(batch: Any) -> Iterator[dict[str, Any] | InvalidRecord]:
    """The rows of one Arrow batch as dicts; a cell Python cannot hold -> InvalidRecord.

    ``to_pylist`` converts the whole batch at once and fails outright on one value outside
    Python's ``datetime`` range (years 1..9999); only then is the batch converted cell by
    cell, so the bad row is reported and the rest goes on. Such a value in a column the
    schema does not use is dropped (read as missing).
    """
    try:
        yield from batch.to_pylist()
        return
    except (OverflowError, ValueError):
        pass
    names = [str(n) for n in batch.schema.names]
    columns = [batch.column(j) for j in range(batch.num_columns)]
    for i in range(batch.num_rows):
        record: dict[str, Any] = {}
        bad: str | None = None
        for name, col in zip(names, columns, strict=True):
            try:
                record[name] = col[i].as_py()
            except (OverflowError, ValueError):
                if name in _FIELD_NAMES:
                    bad = name
                    break
                record[name] = None
        if bad is not None:
            yield InvalidRecord(
                f"{bad} is out of range: outside the dates Python can hold (years 1..9999)",
                field=bad,
            )
        else:
            yield record


def _iter_arrow_batches(batches: Iterable[Any]) -> Iterator[Application | InvalidRecord]:
    row = 0
    for batch in batches:
        for record in _arrow_rows(batch):
            if isinstance(record, InvalidRecord):
                yield _row_error(record, row, "")
            else:
                try:
                    yield Application.from_mapping(record, row=row)
                except InvalidRecord as exc:
                    yield _row_error(exc, row, "")
            row += 1


def _iter_parquet(path: Path) -> Iterator[Application | InvalidRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"reading {path.name} needs pyarrow: pip install 'kyc[io]'"
        ) from None
    try:
        pf = pq.ParquetFile(path)
    except OSError as exc:
        raise ConfigError(f"cannot open {path} as Parquet: {exc}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid for non-Parquet files
        raise ConfigError(f"{path} is not a readable Parquet file: {exc}") from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in (*_REQUIRED, "timestamp") if c not in names]
    if missing:
        raise ConfigError(f"{path} has no column {', '.join(missing)}")
    yield from _iter_arrow_batches(pf.iter_batches(batch_size=8192))


def _iter_dataframe(df: Any) -> Iterator[Application | InvalidRecord]:
    columns = [str(c) for c in df.columns]
    for row, values in enumerate(df.itertuples(index=False, name=None)):
        try:
            yield Application.from_mapping(dict(zip(columns, values, strict=True)), row=row)
        except InvalidRecord as exc:
            yield _row_error(exc, row, "")


def _iter_mappings(items: Iterable[Any]) -> Iterator[Application | InvalidRecord]:
    for row, item in enumerate(items):
        if isinstance(item, Application):
            yield item
            continue
        try:
            yield Application.from_mapping(item, row=row)
        except InvalidRecord as exc:
            yield _row_error(exc, row, "")


def iter_applications(source: Any) -> Iterator[Application | InvalidRecord]:
    """Stream ``source`` row by row, yielding an ``Application`` or an ``InvalidRecord``.

    ``source``: a path (``str``/``PathLike``) to ``.csv``, ``.csv.gz``, ``.parquet``/``.pq``;
    a pandas DataFrame; a pyarrow Table or RecordBatch; or an iterable of mappings (or of
    ``Application`` objects, passed through). Nothing is de-duplicated here (see
    :func:`read_applications`). Raises :class:`~kyc.errors.ConfigError` for a source that
    cannot be read at all (missing file, unknown extension, missing required column,
    pyarrow absent for Parquet).
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
        name = path.name.lower()
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return _iter_csv(path)
        if name.endswith((".parquet", ".pq")):
            return _iter_parquet(path)
        raise ConfigError(f"unsupported file type {path.suffix!r}: use .csv or .parquet")
    module = type(source).__module__ or ""
    if module.startswith("pandas") and hasattr(source, "itertuples"):
        return _iter_dataframe(source)
    if module.startswith("pyarrow") and hasattr(source, "to_batches"):
        return _iter_arrow_batches(source.to_batches())
    if module.startswith("pyarrow") and hasattr(source, "to_pylist"):
        return _iter_arrow_batches([source])
    if isinstance(source, Mapping):
        return _iter_mappings([source])
    if isinstance(source, bytes | bytearray):
        raise ConfigError("bytes are not a record source; give a path or decoded records")
    if isinstance(source, Iterable):
        return _iter_mappings(source)
    raise ConfigError(f"cannot read applications from {type(source).__name__}")


_FIELD_NAMES = tuple(f.name for f in fields(Application))


def read_applications(source: Any) -> LoadResult:
    """Read and validate every row of ``source`` (see :func:`iter_applications`).

    A repeated ``application_id`` keeps the first record; a later identical copy is counted
    in ``duplicates``, a later *different* one is reported in ``errors``
    (``field="application_id"``).
    """
    apps: list[Application] = []
    errors: list[InvalidRecord] = []
    first: dict[str, tuple[int, Application]] = {}
    rows = 0
    duplicates = 0
    for row, item in enumerate(iter_applications(source)):
        rows += 1
        if isinstance(item, InvalidRecord):
            errors.append(item)
            continue
        seen = first.get(item.application_id)
        if seen is None:
            first[item.application_id] = (row, item)
            apps.append(item)
        elif seen[1] == item:
            duplicates += 1
        else:
            diff = [n for n in _FIELD_NAMES if getattr(seen[1], n) != getattr(item, n)]
            errors.append(
                InvalidRecord(
                    f"application_id repeats row {seen[0]} with different "
                    f"{', '.join(diff)}; the first is kept",
                    row=row,
                    field="application_id",
                )
            )
    return LoadResult(applications=apps, errors=errors, rows=rows, duplicates=duplicates)
