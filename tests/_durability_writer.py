"""Helper process for tests/test_durability.py (not a test module).

``python tests/_durability_writer.py add DB CSV START``: open ``FraudGraph(SECRET, store=DB)``
and add the applications of CSV from row START on, one ``add()`` at a time; after each
``add()`` returns, print the application id and flush (so whatever the parent reads was
committed). Prints ``done`` at the end.

``python tests/_durability_writer.py many DB CSV START BATCH``: the same through
``add_many`` with BATCH rows per call; prints the batch's ids after each call returns.

``python tests/_durability_writer.py writer DB CSV START COUNT``: add COUNT rows from START
with ``add()`` and exit 0 (two of these run at once in the concurrent-writer test); a
refused write prints ``locked`` and exits 3.

``python tests/_durability_writer.py hold DB``: take SQLite's write lock on DB, print
``locked``, sleep until killed.
"""

from __future__ import annotations

import csv
import sqlite3
import sys
import time
from collections.abc import Iterator
from typing import Any

SECRET = b"durability-test-secret-0123456789"


def rows(csv_path: str, start: int) -> Iterator[dict[str, Any]]:
    """CSV rows from ``start`` on, as dicts."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= start:
                yield row


def add(db: str, csv_path: str, start: int) -> None:
    """One ``FraudGraph.add`` per row; print each id once ``add`` has returned."""
    from kyc.graph.fraudgraph import FraudGraph

    graph = FraudGraph(SECRET, store=db)
    out = sys.stdout
    for row in rows(csv_path, start):
        graph.add(row)
        out.write(row["application_id"] + "\n")
        out.flush()
    out.write("done\n")
    out.flush()


def many(db: str, csv_path: str, start: int, batch: int) -> None:
    """``FraudGraph.add_many`` per ``batch`` rows; print the ids once it has returned."""
    from kyc.graph.fraudgraph import FraudGraph

    graph = FraudGraph(SECRET, store=db)
    out = sys.stdout
    chunk: list[dict[str, Any]] = []
    for row in rows(csv_path, start):
        chunk.append(row)
        if len(chunk) == batch:
            result = graph.add_many(chunk)
            assert not result.errors, result.errors
            out.write("".join(r["application_id"] + "\n" for r in chunk))
            out.flush()
            chunk = []
    out.write("done\n")
    out.flush()


def writer(db: str, csv_path: str, start: int, count: int) -> int:
    """Add ``count`` rows and return 0, or 3 when the store refused a write as locked."""
    from kyc.errors import StoreLocked
    from kyc.graph.fraudgraph import FraudGraph

    graph = FraudGraph(SECRET, store=db)
    try:
        for i, row in enumerate(rows(csv_path, start)):
            if i >= count:
                break
            graph.add(row)
            print(row["application_id"], flush=True)
    except StoreLocked as exc:
        print(f"locked: {exc.message}", flush=True)
        return 3
    finally:
        graph.close()
    return 0


def hold(db: str) -> None:
    """Hold the database's write lock until killed."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('holder', '1')")
    print("locked", flush=True)
    time.sleep(300)


def main(argv: list[str]) -> int:
    """Dispatch on the mode in ``argv[1]``; returns the exit code."""
    mode = argv[1]
    if mode == "add":
        add(argv[2], argv[3], int(argv[4]))
    elif mode == "many":
        many(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif mode == "writer":
        return writer(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif mode == "hold":
        hold(argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
