"""Stores of hashed applications (kyc.graph.store): semantics, durability, locking, privacy."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kyc.errors import StoreError, StoreLocked
from kyc.graph.identifiers import IdentifierHasher
from kyc.graph.records import Application, HashedApplication, hash_application
from kyc.graph.store import SCHEMA_VERSION, MemoryStore, SQLiteStore, Store, open_store

HERE = Path(__file__).resolve().parent
WRITER = HERE / "_store_writer.py"
SECRET = b"store-test-secret-0123456789"


def _tok(kind: str, i: int) -> str:
    return f"{kind}:{i:032x}"


def _app(i: int, applicant: int = 0, links: tuple[tuple[str, str], ...] = (),
         thin: bool | None = None) -> HashedApplication:
    return HashedApplication(
        application_id=f"a{i}", applicant=_tok("applicant", applicant), lender_id=f"L{i % 3}",
        lender_type="bank", ts=1_700_000_000 + i, links=tuple(sorted(set(links))),
        thin_file=thin,
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield s
    s.close()


# --- semantics shared by every store ------------------------------------------------------


def test_add_counts_new_rows_and_is_idempotent(store: Store) -> None:
    apps = [_app(i, i % 2, (("device", _tok("device", i % 3)),)) for i in range(10)]
    assert store.add(apps) == 10
    assert store.add(apps) == 0
    assert store.add([_app(10), _app(10), apps[0]]) == 1
    assert store.add([]) == 0
    assert len(store) == 11
    assert "a3" in store and "nope" not in store and 3 not in store


def test_insertion_order_and_round_trip(store: Store) -> None:
    rng = random.Random(1)
    apps = []
    for i in rng.sample(range(1000), 300):
        links = {(r, _tok("phone" if r in ("phone", "contact") else r, rng.randrange(40)))
                 for r in rng.sample(["device", "phone", "contact", "ip", "email"], 3)}
        apps.append(_app(i, rng.randrange(50), tuple(links), rng.choice([None, True, False])))
    for start in range(0, 300, 70):
        store.add(apps[start:start + 70])
    assert list(store.applications()) == apps
    assert store.get(apps[5].application_id) == apps[5]
    assert store.get("missing") is None


def test_duplicate_keeps_the_first_version(store: Store) -> None:
    first = _app(1, 1)
    store.add([first])
    store.add([HashedApplication("a1", _tok("applicant", 9), "X", "nbank", 5)])
    assert store.get("a1") == first


def test_by_applicant_and_by_token(store: Store) -> None:
    dev = _tok("device", 7)
    phone = _tok("phone", 3)
    store.add([
        _app(0, 1, (("device", dev),)),
        _app(1, 2, (("device", dev), ("phone", phone))),
        _app(2, 1, (("contact", phone),)),
        _app(3, 3),
    ])
    assert [a.application_id for a in store.by_applicant(_tok("applicant", 1))] == ["a0", "a2"]
    assert [a.application_id for a in store.by_token(dev)] == ["a0", "a1"]
    assert [a.application_id for a in store.by_token(phone)] == ["a1", "a2"]  # any role
    assert [a.application_id for a in store.by_token(_tok("applicant", 3))] == ["a3"]
    assert store.by_token(_tok("ip", 1)) == [] and store.by_applicant("applicant:x") == []


def test_token_in_two_roles_of_one_application_is_listed_once(store: Store) -> None:
    phone = _tok("phone", 5)
    store.add([_app(0, 1, (("phone", phone), ("contact", phone)))])
    assert [a.application_id for a in store.by_token(phone)] == ["a0"]
    assert store.get("a0") is not None and len(store.get("a0").links) == 2  # type: ignore[union-attr]


def test_meta_values_are_json(store: Store) -> None:
    assert store.get_meta("labels") is None and store.get_meta("labels", []) == []
    store.set_meta("labels", {"fraud": ["applicant:ab"], "n": 2, "ok": True, "x": None})
    store.set_meta("cfg", [1.5, "two"])
    store.set_meta("cfg", [3])
    assert store.get_meta("labels") == {"fraud": ["applicant:ab"], "n": 2, "ok": True, "x": None}
    assert store.get_meta("cfg") == [3]
    with pytest.raises(StoreError, match="JSON"):
        store.set_meta("bad", {1, 2})
    with pytest.raises(StoreError, match="JSON"):
        store.set_meta("nan", float("nan"))
    with pytest.raises(StoreError):
        store.set_meta("", 1)


def test_only_hashed_applications_are_accepted(store: Store) -> None:
    raw = Application("a", "ID1", "L", "bank", datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(StoreError, match="HashedApplication"):
        store.add([raw])  # type: ignore[list-item]
    with pytest.raises(StoreError, match="sequence"):
        store.add(_app(1))  # type: ignore[arg-type]


def test_closed_store_refuses_work(store: Store) -> None:
    store.add([_app(1)])
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.add([_app(2)])
    with pytest.raises(StoreError, match="closed"):
        list(store.applications())


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryStore(), Store)
    with SQLiteStore(tmp_path / "p.db") as s:
        assert isinstance(s, Store)


def test_open_store(tmp_path: Path) -> None:
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store(":memory:"), MemoryStore)
    s = open_store(tmp_path / "o.db", synchronous="FULL")
    assert isinstance(s, SQLiteStore)
    assert open_store(s) is s
    s.close()
    with pytest.raises(StoreError):
        open_store(42)  # type: ignore[arg-type]


# --- SQLite specifics ---------------------------------------------------------------------


def test_restart_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    apps = [_app(i, i % 4, (("device", _tok("device", i)),)) for i in range(50)]
    with SQLiteStore(path) as s:
        s.add(apps[:30])
        s.set_meta("k", {"v": 1})
    with SQLiteStore(path) as s:
        assert list(s.applications()) == apps[:30]
        assert s.add(apps) == 20
        assert s.get_meta("k") == {"v": 1}
    with SQLiteStore(path, synchronous="FULL") as s:
        assert list(s.applications()) == apps
        s.integrity_check()


def test_wal_mode_and_synchronous(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "w.db") as s:
        s.add([_app(1)])
        conn = sqlite3.connect(tmp_path / "w.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    with pytest.raises(StoreError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="SOMETIMES")  # type: ignore[arg-type]


def test_in_memory_sqlite(tmp_path: Path) -> None:
    with SQLiteStore(":memory:") as s:
        assert s.add([_app(1), _app(2)]) == 2
        assert [a.application_id for a in s.applications()] == ["a1", "a2"]


def test_not_a_database_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a text file, not a database\n" * 50)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SQLiteStore(junk)
    # a SQLite header followed by garbage
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises(StoreError, match=r"broken\.db"):
        SQLiteStore(broken)
    with pytest.raises(StoreError, match="directory"):
        SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(tmp_path / "no" / "such" / "dir.db")


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people(name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a kyc store"):
        SQLiteStore(path)


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="version 99"):
        SQLiteStore(path)


def test_schema_version_key_is_reserved(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "m.db") as s, pytest.raises(StoreError, match="reserved"):
        s.set_meta("schema_version", 5)


def _wait_for_line(proc: subprocess.Popen[str], want: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == want:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"helper process did not print {want!r} (exit {proc.poll()})")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_second_writer_process_gets_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    with SQLiteStore(path) as s:
        s.add([_app(1)])
    holder = subprocess.Popen(
        [sys.executable, str(WRITER), "hold", str(path)],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        _wait_for_line(holder, "locked")
        s = SQLiteStore(path, timeout=0.3)  # opening and reading work while locked
        assert len(s) == 1
        t0 = time.monotonic()
        with pytest.raises(StoreLocked, match="locked by another writer") as info:
            s.add([_app(2)])
        assert time.monotonic() - t0 >= 0.25  # it waited for busy_timeout first
        assert str(path) in info.value.message
        with pytest.raises(StoreLocked):
            s.set_meta("x", 1)
        assert len(s) == 1  # the refused batch left nothing behind
    finally:
        holder.kill()
        holder.wait()
    assert s.add([_app(2)]) == 1  # the lock is gone with the process
    s.integrity_check()
    s.close()


def _kill_cycles(path: Path, cycles: int, rng: random.Random, batch: int,
                 sync: str = "NORMAL") -> None:
    printed: list[str] = []
    for run in range(cycles):
        out_path = path.parent / f"out{run}.txt"
        with open(out_path, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, str(WRITER), "write", str(path), f"r{run}", str(batch), sync],
                stdout=out, env=_env(),
            )
            deadline = time.monotonic() + 60
            while out_path.stat().st_size == 0:  # wait for the first committed batch
                assert proc.poll() is None, f"writer exited early with {proc.returncode}"
                assert time.monotonic() < deadline, "writer printed nothing"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        text = out_path.read_text()
        lines = text.split("\n")[:-1]  # the last piece may be a partial line
        assert lines
        printed.extend(lines)
        with SQLiteStore(path) as s:
            s.integrity_check()
            stored = {a.application_id: a for a in s.applications()}
            missing = [i for i in printed if i not in stored]
            assert not missing, f"{len(missing)} committed ids lost after SIGKILL: {missing[:5]}"
            # batches are atomic: every stored batch is complete, with all its links
            per_batch: dict[str, int] = {}
            for app_id, app in stored.items():
                r, b, k = app_id.split("-")
                per_batch[f"{r}-{b}"] = per_batch.get(f"{r}-{b}", 0) + 1
                assert len(app.links) == 3
                assert app.thin_file is bool(int(k) % 2)
            assert set(per_batch.values()) == {batch}


def test_sigkill_loses_no_committed_application(tmp_path: Path) -> None:
    _kill_cycles(tmp_path / "kill.db", cycles=5, rng=random.Random(7), batch=50)


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["NORMAL", "FULL"])
def test_sigkill_many_times(tmp_path: Path, sync: str) -> None:
    _kill_cycles(tmp_path / "kill.db", cycles=10, rng=random.Random(11), batch=200, sync=sync)


# --- privacy: no raw identifier reaches the disk ------------------------------------------


def _forms(raw: str, norm: str) -> set[str]:
    out = {raw, raw.lower(), raw.upper(), raw.strip(), norm, norm.lower(), norm.upper()}
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 7:
        out |= {digits, digits[-10:], digits[-7:]}
    return {f for f in out if len(f) >= 6}


def test_no_raw_identifier_in_any_database_file(tmp_path: Path) -> None:
    hasher = IdentifierHasher(SECRET)
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    people = [
        {"applicant_id": "ZX-99812-Q", "device_id": "DEVICE-ALPHA-7781",
         "phones": ["(415) 555-2671"], "contact_phones": ["+1 212 555 0187"], "ip": "203.0.113.77",
         "address": "742 Evergreen Terrace, Springfield", "card": "4929 8872 6613 0042",
         "email": "homer.simpson+loans@example.net"},
        {"applicant_id": "AB123456789", "device_id": "ios-C0FFEE-BEEF-42",
         "phones": ["+44 20 7946 0321"], "contact_phones": ["(415) 555-2671"],
         "ip": "2001:db8:85a3::8a2e:370:7334", "address": "221B Baker Street, London",
         "card": "5500-0000-0000-0004", "email": "Sherlock.Holmes@GMail.com"},
    ]
    apps = []
    for i in range(40):
        p = people[i % 2]
        apps.append(Application(
            application_id=f"app{i}", applicant_id=str(p["applicant_id"]), lender_id=f"L{i % 4}",
            lender_type="nbank", timestamp=t0 + timedelta(hours=i),
            device_id=str(p["device_id"]), phones=tuple(p["phones"]),
            contact_phones=tuple(p["contact_phones"]), ip=str(p["ip"]),
            address=str(p["address"]), card=str(p["card"]), email=str(p["email"]),
        ))
    path = tmp_path / "private.db"
    s = SQLiteStore(path)
    for start in range(0, 40, 10):
        s.add([hash_application(a, hasher) for a in apps[start:start + 10]])
    s.set_meta("note", {"labels": [hash_application(apps[0], hasher).applicant]})

    needles: set[str] = set()
    kinds = {"applicant_id": "applicant", "device_id": "device", "ip": "ip", "address": "address",
             "card": "card", "email": "email"}
    for p in people:
        for fname, kind in kinds.items():
            raw = str(p[fname])
            needles |= _forms(raw, hasher.normalise(kind, raw))
        for raw in [*p["phones"], *p["contact_phones"]]:
            needles |= _forms(raw, hasher.normalise("phone", raw))
    needles |= {"Evergreen", "evergreen", "Baker", "baker", "homer", "sherlock", "holmes"}

    def scan() -> int:
        files = [f for f in tmp_path.iterdir() if f.name.startswith("private.db")]
        blob = b"".join(f.read_bytes() for f in files)
        for needle in needles:
            for enc in ("utf-8", "utf-16-le"):
                assert needle.encode(enc) not in blob, f"raw identifier form {needle!r} on disk"
        return len(files)

    assert scan() >= 2  # the -wal (and -shm) files are there while the store is open
    assert (tmp_path / "private.db-wal").stat().st_size > 0
    s.close()
    scan()
    # and the tokens themselves are there (the check above is not vacuous)
    token = hash_application(apps[0], hasher).links[0][1]
    assert token.encode() in b"".join(
        f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("private.db")
    )
