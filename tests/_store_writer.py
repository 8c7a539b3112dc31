"""Helper process for tests/test_graph_store.py (not a test module).

``python tests/_store_writer.py write DB RUN BATCH [SYNC]``: add batches of applications
forever; after each ``add()`` returns, print the batch's application ids (one per line) and
flush, so whatever the parent reads was committed.

``python tests/_store_writer.py hold DB``: take SQLite's write lock on DB, print ``locked``,
and sleep until killed.
"""

from __future__ import annotations

import sqlite3
import sys
import time

from kyc.graph.records import HashedApplication
from kyc.graph.store import SQLiteStore


def links_for(run: str, b: int, k: int) -> tuple[tuple[str, str], ...]:
    """Three links per application, derived from its position (checked by the parent)."""
    return tuple(sorted({
        ("device", f"device:{run}-{b}-{k}"),
        ("phone", f"phone:{(b * 7 + k) % 50:032x}"),
        ("ip", f"ip:{(b + k) % 13:032x}"),
    }))


def write(path: str, run: str, batch: int, sync: str) -> None:
    """Append batches of ``batch`` applications to the store at ``path`` until killed."""
    store = SQLiteStore(path, synchronous=sync)  # type: ignore[arg-type]
    b = 0
    while True:
        apps = [
            HashedApplication(
                application_id=f"{run}-{b}-{k}",
                applicant=f"applicant:{(b * batch + k) % 997:032x}",
                lender_id=f"L{k % 5}",
                lender_type="bank",
                ts=1_700_000_000 + b * batch + k,
                links=links_for(run, b, k),
                thin_file=bool(k % 2),
            )
            for k in range(batch)
        ]
        store.add(apps)
        sys.stdout.write("".join(f"{a.application_id}\n" for a in apps))
        sys.stdout.flush()
        b += 1


def hold(path: str) -> None:
    """Hold the database's write lock until killed."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('holder', '1')")
    print("locked", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]),
              sys.argv[5] if len(sys.argv) > 5 else "NORMAL")
    elif sys.argv[1] == "hold":
        hold(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
