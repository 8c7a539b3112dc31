"""Persistent and in-memory stores of hashed applications.

A store holds :class:`~kyc.graph.records.HashedApplication` objects only (tokens, never raw
identifiers), in insertion order, plus a small key/value ``meta`` table for state such as
fraud labels or configuration (JSON values).

:class:`SQLiteStore` is the embedded default:

- WAL journal; each :meth:`~SQLiteStore.add` is one transaction (``BEGIN IMMEDIATE`` ...
  ``COMMIT``): once it returns, the batch is durable against the *process* being killed
  (SIGKILL, OOM, crash), whatever ``synchronous`` is. With ``synchronous="NORMAL"`` (the
  default) a power loss or OS crash may roll back the last transactions (never corrupt the
  file); ``synchronous="FULL"`` makes every commit survive power loss too, at the cost of an
  fsync per commit.
- Adding an ``application_id`` that is already stored is a no-op (``INSERT OR IGNORE``), so
  replaying a batch after a crash is safe; :meth:`~SQLiteStore.add` returns how many rows were
  new.
- A second process may read at any time. A second *writer* waits up to ``timeout`` seconds for
  the write lock, then :class:`~kyc.errors.StoreLocked` is raised.
- The schema version is kept in ``meta``; a file written by a newer version is refused with
  :class:`~kyc.errors.StoreError`, as is a file that is not a SQLite database.

Schema (version 1)::

    applications(seq INTEGER PRIMARY KEY AUTOINCREMENT, application_id TEXT UNIQUE,
                 applicant TEXT, lender_id TEXT, lender_type TEXT, ts INTEGER,
                 thin_file INTEGER NULL)                         index on applicant
    links(app_seq INTEGER, role TEXT, token TEXT, PRIMARY KEY(app_seq, role, token))
                                                                 index on token
    meta(key TEXT PRIMARY KEY, value TEXT)                       JSON values
    column_parts(gen TEXT, name TEXT, part INTEGER, data BLOB)   created on first use

``column_parts`` (described by the ``kyc:columns`` meta key) holds a derived, columnar copy of
the applications up to some sequence number (:meth:`SQLiteStore.columns`,
:mod:`kyc.graph.columns`): integer-coded numpy arrays that batch scans read instead of every
row. The rows stay the source of truth: a damaged copy is ignored and rebuilt, and older kyc
versions that do not know the table ignore it.

>>> from kyc.graph.records import HashedApplication
>>> s = MemoryStore()
>>> app = HashedApplication("a1", "applicant:" + "0" * 32, "L1", "bank", 1700000000,
...                         (("device", "device:" + "1" * 32),))
>>> s.add([app, app])
1
>>> [a.application_id for a in s.by_token("device:" + "1" * 32)]
['a1']
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from kyc.errors import ConfigError, StoreError, StoreLocked
from kyc.graph.records import HashedApplication

if TYPE_CHECKING:
    from kyc.graph.columns import LinkColumns

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "open_store",
]

#: Version of the SQLite schema this code writes; newer files are refused.
SCHEMA_VERSION: Final = 1

_log = logging.getLogger(__name__)

# persisted columns (see SQLiteStore.columns): layout version, rows read per step when folding
# in new applications, smallest fold-in worth rewriting the copy for, bytes per blob part
# (SQLite refuses values over 1e9 bytes)
_COLUMN_FORMAT: Final = 2
_COLUMN_CHUNK: Final = 100_000
_COLUMN_REFRESH_MIN: Final = 1000
_COLUMN_PART_BYTES: Final = 1 << 27

@runtime_checkable
class Store(Protocol):
    """What the fraud graph needs from a store of hashed applications."""

    def add(self, apps: Sequence[HashedApplication]) -> int:
        """Store ``apps`` atomically; return how many were new (known ids are ignored)."""
        ...

    def applications(self) -> Iterator[HashedApplication]:
        """Every stored application, in insertion order."""
        ...

    def get(self, application_id: str) -> HashedApplication | None:
        """The application with this id, or None."""
        ...

    def by_applicant(self, token: str) -> list[HashedApplication]:
        """Applications of the applicant with this ``applicant:`` token, in insertion order."""
        ...

    def by_token(self, token: str) -> list[HashedApplication]:
        """Applications carrying this link token (any role), in insertion order."""
        ...

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        ...

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` (replacing any old one)."""
        ...

    def __len__(self) -> int:
        """Number of stored applications."""
        ...

    def __contains__(self, application_id: object) -> bool:
        """Whether an application with this id is stored."""
        ...

    def close(self) -> None:
        """Release resources; further calls raise :class:`~kyc.errors.StoreError`."""
        ...


def _check_apps(apps: Sequence[HashedApplication]) -> None:
    if isinstance(apps, HashedApplication):
        raise StoreError("add() takes a sequence of HashedApplication, not a single one")
    for a in apps:
        if not isinstance(a, HashedApplication):
            raise StoreError(
                f"stores hold HashedApplication objects only (hash first), "
                f"not {type(a).__name__}"
            )


def _json(key: str, value: Any) -> str:
    if not isinstance(key, str) or not key:
        raise StoreError("meta key must be a non-empty string")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"meta value for {key!r} is not JSON-serialisable: {exc}") from None


class MemoryStore:
    """A :class:`Store` in process memory (lost when the process ends).

    Same semantics as :class:`SQLiteStore`; meta values are kept as JSON text so that what
    goes in comes back equal, as from the database.
    """

    def __init__(self) -> None:
        self._apps: list[HashedApplication] = []
        self._pos: dict[str, int] = {}
        self._by_applicant: dict[str, list[int]] = {}
        self._by_token: dict[str, list[int]] = {}
        self._meta: dict[str, str] = {}
        self._lock = threading.RLock()
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def add(self, apps: Sequence[HashedApplication]) -> int:
        """Store ``apps``; return how many were new (known ``application_id`` ignored)."""
        _check_apps(apps)
        with self._lock:
            self._open()
            new = 0
            for a in apps:
                if a.application_id in self._pos:
                    continue
                i = len(self._apps)
                self._apps.append(a)
                self._pos[a.application_id] = i
                self._by_applicant.setdefault(a.applicant, []).append(i)
                for token in dict.fromkeys(t for _, t in a.links):
                    self._by_token.setdefault(token, []).append(i)
                new += 1
            return new

    def applications(self) -> Iterator[HashedApplication]:
        """Every stored application in insertion order (a snapshot of the current list)."""
        with self._lock:
            self._open()
            snapshot = list(self._apps)
        return iter(snapshot)

    def columns(self, *, refresh: bool | None = None) -> LinkColumns:
        """Every stored application in columnar form (:mod:`kyc.graph.columns`).

        Built from the objects on each call (nothing is persisted); ``refresh`` is accepted
        for symmetry with :meth:`SQLiteStore.columns` and ignored.
        """
        from kyc.graph.columns import columns_from_apps

        del refresh
        with self._lock:
            self._open()
            return columns_from_apps(list(self._apps), last_seq=len(self._apps))

    def get(self, application_id: str) -> HashedApplication | None:
        """The application with this id, or None."""
        with self._lock:
            self._open()
            i = self._pos.get(application_id)
            return None if i is None else self._apps[i]

    def by_applicant(self, token: str) -> list[HashedApplication]:
        """Applications of this applicant token, in insertion order."""
        with self._lock:
            self._open()
            return [self._apps[i] for i in self._by_applicant.get(token, ())]

    def by_token(self, token: str) -> list[HashedApplication]:
        """Applications with this link token (an ``applicant:`` token: its applications)."""
        if token.startswith("applicant:"):
            return self.by_applicant(token)
        with self._lock:
            self._open()
            return [self._apps[i] for i in self._by_token.get(token, ())]

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._lock:
            self._open()
            text = self._meta.get(key)
        return default if text is None else json.loads(text)

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""
        text = _json(key, value)
        with self._lock:
            self._open()
            self._meta[key] = text

    def __len__(self) -> int:
        with self._lock:
            return len(self._apps)

    def __contains__(self, application_id: object) -> bool:
        with self._lock:
            return application_id in self._pos

    def close(self) -> None:
        """Mark the store closed (its contents are dropped)."""
        with self._lock:
            self._closed = True
            self._apps.clear()
            self._pos.clear()
            self._by_applicant.clear()
            self._by_token.clear()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._apps)} applications)"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applications (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL UNIQUE,
    applicant      TEXT NOT NULL,
    lender_id      TEXT NOT NULL,
    lender_type    TEXT NOT NULL,
    ts             INTEGER NOT NULL,
    thin_file      INTEGER
);
CREATE INDEX IF NOT EXISTS applications_applicant ON applications(applicant);
CREATE TABLE IF NOT EXISTS links (
    app_seq INTEGER NOT NULL,
    role    TEXT NOT NULL,
    token   TEXT NOT NULL,
    PRIMARY KEY (app_seq, role, token)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_token ON links(token);
"""

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteStore:
    """A :class:`Store` in a SQLite file (WAL mode), safe against the process being killed.

    ``path``: the database file (created with its folder's permissions if absent) or
    ``":memory:"``. ``synchronous``: ``"NORMAL"`` (default; survives a process kill, may lose
    the last commits on power loss) or ``"FULL"`` (survives power loss; slower commits).
    ``timeout``: seconds a write waits for another writer before
    :class:`~kyc.errors.StoreLocked`. The object may be shared between threads (calls are
    serialised); each process opens its own.

    Raises :class:`~kyc.errors.StoreError` when the file is not a SQLite database, was written
    by a newer schema version, or cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL", "OFF", "EXTRA"] = "NORMAL",
        timeout: float = 5.0,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("NORMAL", "FULL", "OFF", "EXTRA"):
            raise StoreError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if not timeout >= 0:
            raise StoreError(f"timeout must be >= 0 seconds, not {timeout!r}")
        self._memory = str(path) == ":memory:"
        self.path = str(path) if self._memory else str(Path(path))
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if not self._memory:
            self._check_file(Path(self.path))
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if not self._memory and str(mode).lower() != "wal":
                raise StoreError(f"store {self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous = {sync}")
            # a 64 MiB page cache keeps the token index's inner pages resident; checkpoints
            # every 32 MiB of WAL coalesce the many random index pages each batch dirties
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA wal_autocheckpoint = 8192")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._abandon()
            if _is_locked(exc):
                raise StoreLocked(
                    f"store {self.path} is locked by another writer (waited {self.timeout:g} s "
                    "while opening it)"
                ) from None
            raise StoreError(f"{self.path} is not a usable SQLite store: {exc}") from None
        except StoreError:
            self._abandon()
            raise

    @staticmethod
    def _check_file(path: Path) -> None:
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory, not a database file")
        if not path.parent.is_dir():
            raise StoreError(f"cannot create store {path}: folder {path.parent} does not exist")
        if path.exists():
            try:
                with open(path, "rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise StoreError(f"cannot read store {path}: {exc.strerror or exc}") from None
            if head and head != _SQLITE_MAGIC:
                raise StoreError(f"{path} is not a SQLite database (wrong file header)")

    def _abandon(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _init_schema(self) -> None:
        conn = self._db()
        version = self._read_version()
        if version is not None:
            self._check_version(version)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
            else:
                self._check_version(json.loads(row[0]))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read_version(self) -> int | None:
        conn = self._db()
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if tables:
                raise StoreError(
                    f"{self.path} is a SQLite database but not a kyc store (no meta table)"
                )
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise StoreError(f"{self.path} has a meta table but no schema_version")
        try:
            value = json.loads(row[0])
        except ValueError:
            value = None
        if not isinstance(value, int):
            raise StoreError(f"{self.path} has an unreadable schema_version {row[0]!r}")
        return value

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written with store schema version {version}; this kyc reads "
                f"up to {SCHEMA_VERSION}: upgrade kyc"
            )
        if version < 1:
            raise StoreError(f"{self.path} has an invalid schema_version {version}")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    # -- writing ---------------------------------------------------------------------------

    def add(self, apps: Sequence[HashedApplication]) -> int:
        """Store ``apps`` in one transaction; return how many were new.

        Application ids already stored (or repeated in the batch) are ignored. On return the
        batch is committed. Raises :class:`~kyc.errors.StoreLocked` when another writer holds
        the lock for longer than ``timeout``, :class:`~kyc.errors.StoreError` on other
        database failures (the batch is then rolled back entirely).
        """
        _check_apps(apps)
        if not apps:
            return 0
        with self._lock:
            conn = self._db()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise StoreLocked(
                        f"store {self.path} is locked by another writer (waited "
                        f"{self.timeout:g} s); only one process may write at a time"
                    ) from None
                raise StoreError(f"store {self.path}: cannot start a write: {exc}") from None
            try:
                # first copy of each id in the batch, minus the ids already stored
                fresh: dict[str, HashedApplication] = {}
                for a in apps:
                    fresh.setdefault(a.application_id, a)
                ids = list(fresh)
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    for (known,) in conn.execute(
                        f"SELECT application_id FROM applications WHERE application_id IN "
                        f"({marks})",
                        chunk,
                    ):
                        del fresh[known]
                if fresh:
                    # the write lock is held: sequence numbers can be assigned here, which
                    # lets both tables be filled with executemany
                    base = conn.execute(
                        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence "
                        "WHERE name = 'applications'), 0), "
                        "coalesce((SELECT max(seq) FROM applications), 0))"
                    ).fetchone()[0]
                    app_rows: list[tuple[object, ...]] = []
                    link_rows: list[tuple[int, str, str]] = []
                    for seq, a in enumerate(fresh.values(), start=int(base) + 1):
                        app_rows.append((
                            seq, a.application_id, a.applicant, a.lender_id, a.lender_type,
                            int(a.ts), None if a.thin_file is None else int(a.thin_file),
                        ))
                        link_rows.extend((seq, r, t) for r, t in a.links)
                    conn.executemany(
                        "INSERT INTO applications(seq, application_id, applicant, lender_id, "
                        "lender_type, ts, thin_file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        app_rows,
                    )
                    conn.executemany(
                        "INSERT OR IGNORE INTO links(app_seq, role, token) VALUES (?, ?, ?)",
                        link_rows,
                    )
                conn.execute("COMMIT")
                return len(fresh)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    if _is_locked(exc):
                        raise StoreLocked(
                            f"store {self.path} is locked by another writer: {exc}"
                        ) from None
                    raise StoreError(f"store {self.path}: write failed: {exc}") from None
                raise

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` (one transaction)."""
        text = _json(key, value)
        if key == "schema_version":
            raise StoreError("meta key 'schema_version' is reserved")
        with self._lock:
            conn = self._db()
            try:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, text),
                )
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise StoreLocked(
                        f"store {self.path} is locked by another writer (waited "
                        f"{self.timeout:g} s)"
                    ) from None
                raise StoreError(f"store {self.path}: write failed: {exc}") from None

    # -- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            conn = self._db()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: read failed: {exc}") from None

    def _fetch(self, where: str, params: Sequence[Any] = ()) -> list[HashedApplication]:
        """Applications matching ``where`` (on alias ``a``) with their links, in seq order."""
        return [app for _, app in self._fetch_seq(where, params)]

    def _fetch_seq(
        self, where: str, params: Sequence[Any] = ()
    ) -> list[tuple[int, HashedApplication]]:
        rows = self._query(
            "SELECT a.seq, a.application_id, a.applicant, a.lender_id, a.lender_type, a.ts, "
            "a.thin_file, l.role, l.token FROM applications a "
            "LEFT JOIN links l ON l.app_seq = a.seq "
            f"WHERE {where} ORDER BY a.seq, l.role, l.token",
            params,
        )
        out: list[tuple[int, HashedApplication]] = []
        i = 0
        n = len(rows)
        while i < n:
            r = rows[i]
            seq = r[0]
            links: list[tuple[str, str]] = []
            while i < n and rows[i][0] == seq:
                if rows[i][7] is not None:
                    links.append((rows[i][7], rows[i][8]))
                i += 1
            out.append((
                seq,
                HashedApplication(
                    application_id=r[1], applicant=r[2], lender_id=r[3], lender_type=r[4],
                    ts=int(r[5]), links=tuple(links),
                    thin_file=None if r[6] is None else bool(r[6]),
                ),
            ))
        return out

    def applications(self, *, chunk: int = 2000) -> Iterator[HashedApplication]:
        """Every stored application in insertion order, read ``chunk`` at a time.

        Applications added while iterating may or may not be seen.
        """
        last = 0
        while True:
            batch = self._fetch_seq(
                "a.seq IN (SELECT seq FROM applications WHERE seq > ? ORDER BY seq LIMIT ?)",
                (last, chunk),
            )
            if not batch:
                return
            last = batch[-1][0]
            for _, app in batch:
                yield app

    def get(self, application_id: str) -> HashedApplication | None:
        """The application with this id, or None."""
        out = self._fetch("a.application_id = ?", (application_id,))
        return out[0] if out else None

    def by_applicant(self, token: str) -> list[HashedApplication]:
        """Applications of this applicant token, in insertion order."""
        return self._fetch("a.applicant = ?", (token,))

    def by_token(self, token: str) -> list[HashedApplication]:
        """Applications with this link token (an ``applicant:`` token: its applications)."""
        if token.startswith("applicant:"):
            return self.by_applicant(token)
        return self._fetch("a.seq IN (SELECT app_seq FROM links WHERE token = ?)", (token,))

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return default if not rows else json.loads(rows[0][0])

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM applications")[0][0])

    def __contains__(self, application_id: object) -> bool:
        if not isinstance(application_id, str):
            return False
        return bool(
            self._query(
                "SELECT 1 FROM applications WHERE application_id = ?", (application_id,)
            )
        )

    # -- columnar form ---------------------------------------------------------------------

    def columns(self, *, refresh: bool | None = None) -> LinkColumns:
        """Every stored application in integer-coded columnar form (:mod:`kyc.graph.columns`).

        The store keeps a persisted copy of the columns (table ``column_parts``, described by
        the ``kyc:columns`` meta key) covering the applications up to some sequence number; this
        reads that copy and folds in the applications added since, so a scan of a million
        stored applications reads arrays instead of a million rows. The first call on a store
        without a copy reads every row once.

        ``refresh``: write the result back as the new persisted copy: ``True`` whenever
        applications were folded in, ``False`` never (read only), ``None`` (default) when the
        folded-in part is at least 1,000 applications or 5 % of the copy. Writing is skipped,
        not waited for, when another writer holds the store. A copy that fails its
        consistency checks is ignored and rebuilt from the rows (which are the source of
        truth). Raises :class:`~kyc.errors.StoreError` when the database cannot be read.
        """
        from kyc.graph.columns import ColumnsBuilder, merge_columns

        with self._lock:
            conn = self._db()
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: read failed: {exc}") from None
            try:
                head = self._columns_head()
                damaged: str | None = None
                base: LinkColumns | None = None
                if head is not None:
                    try:
                        base = self._load_columns(head, lazy_tokens=True)
                    except (StoreError, ValueError, KeyError, TypeError) as exc:
                        _log.warning("store %s: ignoring its persisted columns (%s); "
                                     "rebuilding them from the rows", self.path, exc)
                        base = None
                        damaged = str(head.get("gen"))
                        head = None
                start = base.last_seq if base is not None else 0
                # new rows are read a chunk at a time into one builder (one token dictionary),
                # then merged into the persisted copy once
                builder = ColumnsBuilder()
                n_delta = 0
                last = start
                while True:
                    app_rows = self._query(
                        "SELECT seq, application_id, applicant, ts, thin_file FROM applications "
                        "WHERE seq > ? ORDER BY seq LIMIT ?", (last, _COLUMN_CHUNK))
                    if not app_rows:
                        break
                    link_rows = self._query(
                        "SELECT app_seq, role, token FROM links WHERE app_seq > ? AND "
                        "app_seq <= ?", (last, app_rows[-1][0]))
                    last = app_rows[-1][0]
                    n_delta += len(app_rows)
                    builder.add_rows(app_rows, link_rows)
                    del app_rows, link_rows
                cols = base
                if n_delta:
                    delta = builder.build(last_seq=last)
                    cols = delta if cols is None else merge_columns(cols, delta)
                del builder
                if cols is None:
                    cols = ColumnsBuilder().build(last_seq=0)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"store {self.path}: read failed: {exc}") from None
                raise
            base_n = base.n_applications if base is not None else 0
            want = (n_delta > 0 and (refresh is True or (
                refresh is None and n_delta >= max(_COLUMN_REFRESH_MIN, base_n // 20))))
            if want:
                self._write_columns(cols, damaged)
            return cols

    def _columns_head(self) -> dict[str, Any] | None:
        row = self._query("SELECT value FROM meta WHERE key = 'kyc:columns'")
        if not row:
            return None
        head = json.loads(row[0][0])
        if not isinstance(head, dict) or head.get("format") != _COLUMN_FORMAT:
            return None
        return head

    def _read_array(self, gen: str, name: str, spec: list[Any]) -> Any:
        import numpy as np

        dtype, size = np.dtype(str(spec[0])), int(spec[1])
        parts = self._query(
            "SELECT data FROM column_parts WHERE gen = ? AND name = ? ORDER BY part",
            (gen, name))
        buf = parts[0][0] if len(parts) == 1 else b"".join(p[0] for p in parts)
        if len(buf) != size * dtype.itemsize:
            raise StoreError(f"persisted column {name!r} has {len(buf)} bytes, expected "
                             f"{size * dtype.itemsize}")
        return np.frombuffer(buf, dtype=dtype) if size else np.zeros(0, dtype=dtype)

    @staticmethod
    def _read_tokens(store: SQLiteStore, gen: str, spec: list[Any]) -> Any:
        now = store._columns_head()
        if now is None or str(now.get("gen")) != gen:
            raise StoreError(
                f"store {store.path}: its persisted columns were rewritten by another process "
                "while these were in use; read them again")
        return store._read_array(gen, "tokens", spec)

    def _load_columns(self, head: dict[str, Any], *, lazy_tokens: bool) -> LinkColumns:
        from kyc.graph.columns import LinkColumns

        gen = str(head["gen"])
        specs = head["arrays"]
        arrays = {name: self._read_array(gen, name, spec) for name, spec in specs.items()
                  if name != "tokens"}

        def load_tokens() -> Any:
            # columns may outlive an open store: read through a short read-only connection
            with self._lock:
                if self._conn is not None:
                    return self._read_tokens(self, gen, specs["tokens"])
            if self._memory:
                raise StoreError("the in-memory store holding these columns' tokens is closed")
            other = SQLiteStore(self.path, timeout=self.timeout)
            try:
                return self._read_tokens(other, gen, specs["tokens"])
            finally:
                other.close()

        if not lazy_tokens:
            arrays["tokens"] = load_tokens()
        try:
            return LinkColumns.from_arrays(arrays, last_seq=int(head["last_seq"]),
                                           token_loader=load_tokens)
        except ConfigError as exc:
            raise StoreError(str(exc)) from None

    def _write_columns(self, cols: LinkColumns, damaged: str | None = None) -> None:
        """Persist ``cols`` as the store's columns unless a copy at least as new is there
        already (one found damaged, generation ``damaged``, is replaced whatever it claims)."""
        import uuid

        conn = self._db()
        try:
            arrays = cols.arrays()
        except StoreError as exc:
            _log.warning("store %s: columns not persisted: %s", self.path, exc)
            return
        # the copy is an optimisation: when it cannot be written (another writer is busy, the
        # file is read-only, the disk is full) the caller still gets its columns
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _is_locked(exc):
                _log.warning("store %s: columns not persisted: %s", self.path, exc)
            return
        try:
            head = self._columns_head()
            if (head is not None and str(head.get("gen")) != damaged
                    and int(head.get("last_seq", 0)) >= cols.last_seq):
                conn.execute("COMMIT")
                return
            conn.execute(
                "CREATE TABLE IF NOT EXISTS column_parts (gen TEXT NOT NULL, name TEXT NOT "
                "NULL, part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (gen, name, "
                "part))")
            conn.execute("DELETE FROM column_parts")
            gen = uuid.uuid4().hex
            specs: dict[str, list[Any]] = {}
            for name, arr in arrays.items():
                data = arr.tobytes()
                specs[name] = [arr.dtype.str, int(arr.size)]
                step = max(_COLUMN_PART_BYTES - _COLUMN_PART_BYTES % max(arr.itemsize, 1), 1)
                for k, off in enumerate(range(0, max(len(data), 1), step)):
                    conn.execute(
                        "INSERT INTO column_parts(gen, name, part, data) VALUES (?, ?, ?, ?)",
                        (gen, name, k, data[off:off + step]))
            head = {"format": _COLUMN_FORMAT, "gen": gen, "last_seq": int(cols.last_seq),
                    "arrays": specs}
            conn.execute("INSERT INTO meta(key, value) VALUES ('kyc:columns', ?) ON CONFLICT(key) "
                         "DO UPDATE SET value = excluded.value", (json.dumps(head),))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error | StoreError):
                if not (isinstance(exc, sqlite3.Error) and _is_locked(exc)):
                    _log.warning("store %s: columns not persisted: %s", self.path, exc)
                return
            raise

    # -- maintenance -----------------------------------------------------------------------

    def integrity_check(self) -> None:
        """Run SQLite's ``PRAGMA integrity_check``; :class:`~kyc.errors.StoreError` if not ok."""
        rows = self._query("PRAGMA integrity_check")
        problems = [str(r[0]) for r in rows if str(r[0]).lower() != "ok"]
        if problems:
            raise StoreError(f"store {self.path} failed its integrity check: {problems[:5]}")

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (optional; SQLite does it too)."""
        self._query("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the connection (idempotent); committed data stays in the file."""
        with self._lock:
            self._abandon()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SQLiteStore({self.path!r}, {state})"


def open_store(store: Store | str | os.PathLike[str] | None = None, **kwargs: Any) -> Store:
    """Return a :class:`Store`: ``None`` or ``":memory:"`` -> :class:`MemoryStore`; a path ->
    :class:`SQLiteStore` (``kwargs`` passed on); a ``Store`` is returned as is."""
    if store is None or (isinstance(store, str) and store == ":memory:"):
        return MemoryStore()
    if isinstance(store, str | os.PathLike):
        return SQLiteStore(store, **kwargs)
    if isinstance(store, Store):
        return store
    raise StoreError(f"not a store or a path: {type(store).__name__}")

