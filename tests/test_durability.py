"""FraudGraph's persistent store under SIGKILL, and two writer processes at once.

A helper process (``tests/_durability_writer.py``) ingests synthetic applications through
``FraudGraph.add`` (or ``add_many``) into a SQLite store and prints each application id
after the call returned; the test kills it with SIGKILL at a random moment (most of the
time while it is adding, sometimes while it starts up and opens the store), then checks:

* the store opens cleanly and passes ``PRAGMA integrity_check``;
* every application whose ``add`` returned is there, stored exactly as hashing the input
  gives (no torn record), and the stored ids are a gap-free prefix of the input order;
* a FraudGraph reopened on the store finds the same rings as one built in memory from the
  same applications.

The CI version kills 5 times; ``test_sigkill_100_times`` (slow) kills 100 times in a row.
``tests/test_graph_store.py`` covers the bare ``SQLiteStore`` the same way; this file goes
through the FraudGraph API. Two writer processes are either serialised (both finish, nothing
lost) or, when one holds the lock past the other's timeout, refused with ``StoreLocked``
and no change to the refused graph.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kyc.errors import StoreLocked
from kyc.graph.fraudgraph import FraudGraph
from kyc.graph.identifiers import IdentifierHasher
from kyc.graph.records import Application, hash_application, read_applications
from kyc.graph.store import SQLiteStore
from kyc.graph.synth import generate, write_csv

HERE = Path(__file__).resolve().parent
WRITER = HERE / "_durability_writer.py"
SECRET = b"durability-test-secret-0123456789"  # the same as in the helper


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _dataset(folder: Path, n: int) -> tuple[Path, list[Application]]:
    path = folder / "apps.csv"
    write_csv(generate(n, seed=11), path)
    loaded = read_applications(path)
    assert not loaded.errors
    return path, loaded.applications


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Application]]:
    """6,000 synthetic applications (rings, hubs, stackers) as a CSV and as records."""
    return _dataset(tmp_path_factory.mktemp("durability"), 6000)


def _stored(path: Path) -> list[str]:
    with SQLiteStore(path) as store:
        store.integrity_check()
        return [a.application_id for a in store.applications()]


def _kill_cycles(db: Path, csv_path: Path, apps: list[Application], cycles: int, seed: int,
                 mode: str = "add", batch: int = 50) -> dict[str, Any]:
    rng = random.Random(seed)
    hasher = IdentifierHasher(SECRET)
    expected = {a.application_id: a for a in apps}
    order = [a.application_id for a in apps]
    printed: list[str] = []
    early_kills = 0
    for run in range(cycles):
        start = len(_stored(db)) if db.exists() else 0
        args = [str(db), str(csv_path), str(start)] + ([str(batch)] if mode == "many" else [])
        out_path = db.parent / f"out{run}.txt"
        with out_path.open("w") as out:
            proc = subprocess.Popen([sys.executable, str(WRITER), mode, *args],
                                    stdout=out, stderr=subprocess.PIPE, env=_env())
            early = rng.random() < 0.2
            if early:  # during start-up: imports, opening the store, loading the graph
                time.sleep(rng.uniform(0.0, 1.5))
                early_kills += 1
            else:
                deadline = time.monotonic() + 120
                while out_path.stat().st_size == 0:  # the first add() has returned
                    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
                    assert time.monotonic() < deadline, "the writer printed nothing"
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        lines = out_path.read_text().split("\n")[:-1]  # the last piece may be partial
        assert "done" not in lines, "the writer ran out of applications: grow the dataset"
        printed.extend(lines)
        # the store opens cleanly, and nothing that was reported as added is missing
        ids = _stored(db)
        missing = sorted(set(printed) - set(ids))
        assert not missing, f"run {run}: {len(missing)} acknowledged adds lost: {missing[:5]}"
        assert ids == order[: len(ids)], f"run {run}: stored ids are not a prefix of the input"
        if mode == "many":
            assert len(ids) % batch == 0, f"run {run}: a partial add_many chunk was stored"
    # no torn record: every stored application is exactly what hashing the input gives
    with SQLiteStore(db) as store:
        stored = list(store.applications())
    for h in stored:
        assert h == hash_application(expected[h.application_id], hasher)
    # the reopened graph finds the same rings as one built in memory from the same input
    with FraudGraph(SECRET, store=db) as reopened, FraudGraph(SECRET) as fresh:
        fresh.add_many(apps[: len(stored)])
        assert [r.to_dict() for r in reopened.scan()] == [r.to_dict() for r in fresh.scan()]
        assert [r.to_dict() for r in reopened.rings()] == [r.to_dict() for r in fresh.rings()]
        last = apps[len(stored) - 1].applicant_id
        assert reopened.report(last).to_dict() == fresh.report(last).to_dict()
    return {"stored": len(stored), "acknowledged": len(set(printed)), "early_kills": early_kills}


def test_sigkill_during_fraudgraph_add(tmp_path: Path,
                                       dataset: tuple[Path, list[Application]]) -> None:
    csv_path, apps = dataset
    stats = _kill_cycles(tmp_path / "graph.db", csv_path, apps, cycles=5, seed=3)
    assert stats["acknowledged"] > 0 and stats["stored"] >= stats["acknowledged"]


def test_sigkill_during_fraudgraph_add_many(tmp_path: Path,
                                            dataset: tuple[Path, list[Application]]) -> None:
    csv_path, apps = dataset
    stats = _kill_cycles(tmp_path / "many.db", csv_path, apps, cycles=3, seed=4, mode="many",
                         batch=40)
    assert stats["acknowledged"] > 0


@pytest.mark.slow
def test_sigkill_100_times(tmp_path: Path) -> None:
    csv_path, apps = _dataset(tmp_path, 40_000)
    t0 = time.monotonic()
    stats = _kill_cycles(tmp_path / "hundred.db", csv_path, apps, cycles=100, seed=100)
    print(f"\n100 SIGKILLs: {stats} in {time.monotonic() - t0:.0f} s")
    assert stats["acknowledged"] > 100


# --- two writer processes --------------------------------------------------------------------


def _wait_for(proc: subprocess.Popen[str], want: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == want:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"helper did not print {want!r} (exit {proc.poll()})")


def test_two_writer_processes_are_serialised(tmp_path: Path,
                                             dataset: tuple[Path, list[Application]]) -> None:
    csv_path, apps = dataset
    db = tmp_path / "two.db"
    n = 120
    procs = [
        subprocess.Popen([sys.executable, str(WRITER), "writer", str(db), str(csv_path),
                          str(start), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env())
        for start in (0, n)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"writer failed ({p.returncode}): {out[-500:]} {err[-2000:]}"
    printed = [line for out, _ in outs for line in out.split()]
    assert len(printed) == 2 * n
    ids = _stored(db)
    assert sorted(ids) == sorted(a.application_id for a in apps[: 2 * n])
    # both graphs' writes interleaved in one store: a graph opened on it sees all of them
    with FraudGraph(SECRET, store=db) as reopened, FraudGraph(SECRET) as fresh:
        fresh.add_many(apps[: 2 * n])
        assert [r.to_dict() for r in reopened.scan()] == [r.to_dict() for r in fresh.scan()]


def test_writer_blocked_by_another_process_gets_store_locked(
    tmp_path: Path, dataset: tuple[Path, list[Application]]
) -> None:
    _, apps = dataset
    db = tmp_path / "locked.db"
    graph = FraudGraph(SECRET, store=SQLiteStore(db, timeout=0.3))
    graph.add(apps[0])
    before = len(graph.store)
    holder = subprocess.Popen([sys.executable, str(WRITER), "hold", str(db)],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for(holder, "locked")
        blocked = apps[1]
        with pytest.raises(StoreLocked, match="locked by another writer") as info:
            graph.add(blocked)
        assert str(db) in info.value.message
        # the refused add changed nothing: not stored, not in the in-memory graph
        assert len(graph.store) == before and blocked.application_id not in graph.store
        assert graph.report(blocked.applicant_id).component_size == 0
        with pytest.raises(StoreLocked):
            graph.add_many(apps[1:30])
        assert len(graph.store) == before
    finally:
        holder.kill()
        holder.wait()
    # the lock went with the process: the same calls now succeed, nothing doubled
    report = graph.add(apps[1])
    assert report.component_size >= 1
    result = graph.add_many(apps[1:30])
    assert result.added == 28 and result.duplicates == 1
    graph.store.integrity_check()  # type: ignore[attr-defined]
    assert len(graph.store) == 30
    graph.close()
    graph.store.close()


def test_bug_mark_fraud_refused_by_lock_is_lost(
    tmp_path: Path, dataset: tuple[Path, list[Application]]
) -> None:
    _, apps = dataset
    db = tmp_path / "labels.db"
    store = SQLiteStore(db, timeout=0.2)
    graph = FraudGraph(SECRET, store=store)
    graph.add(apps[0])
    holder = subprocess.Popen([sys.executable, str(WRITER), "hold", str(db)],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for(holder, "locked")
        with pytest.raises(StoreLocked):
            graph.mark_fraud([apps[0].applicant_id])
    finally:
        holder.kill()
        holder.wait()
    graph.mark_fraud([apps[0].applicant_id])  # the retry after the lock is gone
    store.close()
    with FraudGraph(SECRET, store=db) as reopened:
        assert reopened.fraud_labels() == {graph.applicant_token(apps[0].applicant_id)}
