"""The ring pipeline on Spark (local mode) against the single-machine backend, same data.

    nice -n 10 python benchmarks/graph_spark.py --sizes 100000,1000000 \\
        --master 'local[2]' --driver-memory 6g --out benchmarks/out/graph_spark.json

For each size, ``kyc.graph.synth`` generates the applications (seed 0) and writes them to
one Parquet file; then, each in a fresh child process, the same file goes through

* **local**: ``scan_applications(path, secret=..., backend="local")`` (FraudGraph in memory:
  hashing in one Python process, numpy/scipy linking, per-component Leiden);
* **spark**: ``scan_applications(path, secret=..., backend="spark", spark=session)`` on a
  ``--master`` session with the Spark event log on. From the event log: shuffle bytes
  written and read, stages, tasks and summed task run time; from the result's stats: the
  components algorithm and its rounds, and the wall time of each step.

The two results must be equal (same rings, members, scores; checked by digest) or the run
fails. Wall time includes reading the file and the JVM start for Spark (reported apart).
Peak RSS is the child's own (for Spark: the Python driver only; the JVM and the Python
workers are other processes, reported from /proc at the end as a sum of resident sizes).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_common import BENCH_SECRET, ROOT, peak_rss_mb, python


def _digest(rings: Any) -> str:
    h = hashlib.sha256()
    for r in rings:
        h.update(json.dumps(r.to_dict(), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _write_parquet(n: int, seed: int, path: Path) -> dict[str, Any]:
    import pandas as pd

    from kyc.graph.synth import generate

    t = time.perf_counter()
    ds = generate(n, seed=seed)
    cols = ds.applications_columns()
    frame = pd.DataFrame({k: ([list(v) for v in vals] if k.endswith("phones") else vals)
                          for k, vals in cols.items()})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame.to_parquet(path, index=False, row_group_size=100_000)
    return {"applications": n, "applicants": len(ds.thin_file), "planted_rings": len(ds.rings),
            "parquet_mb": round(path.stat().st_size / 2**20, 1),
            "generate_s": round(time.perf_counter() - t, 1)}


def _tree_rss_mb(pid: int) -> float:
    """Resident size of ``pid``'s child processes (the JVM, Python workers), in MiB."""
    total = 0.0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() != str(pid):
            continue
        rss = fields.get("VmRSS", "0 kB").split()[0]
        total += int(rss) / 1024.0
        child = int(Path(status).parent.name)
        total += _tree_rss_mb(child)
    return total


def _event_log_metrics(folder: Path) -> dict[str, Any]:
    """Shuffle bytes, stages, tasks and run time summed over the event log's stages."""
    write = read = run_ms = tasks = stages = spill = 0
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and "appstatus" not in p.name):
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                if '"SparkListenerStageCompleted"' not in line:
                    continue
                info = json.loads(line)["Stage Info"]
                stages += 1
                tasks += int(info.get("Number of Tasks", 0))
                acc = {a.get("Name"): a.get("Value") for a in info.get("Accumulables", [])}
                write += int(acc.get("internal.metrics.shuffle.write.bytesWritten", 0) or 0)
                read += int(acc.get("internal.metrics.shuffle.read.localBytesRead", 0) or 0)
                read += int(acc.get("internal.metrics.shuffle.read.remoteBytesRead", 0) or 0)
                run_ms += int(acc.get("internal.metrics.executorRunTime", 0) or 0)
                spill += int(acc.get("internal.metrics.diskBytesSpilled", 0) or 0)
    return {"shuffle_write_mb": round(write / 2**20, 1), "shuffle_read_mb": round(read / 2**20, 1),
            "disk_spill_mb": round(spill / 2**20, 1), "stages": stages, "tasks": tasks,
            "task_run_s": round(run_ms / 1000, 1)}


def child(args: argparse.Namespace) -> None:
    """Run one backend on one file and print one JSON line."""
    from kyc.graph.spark import scan_applications, spark_session

    out: dict[str, Any] = {"backend": args.backend}
    if args.backend == "local":
        t = time.perf_counter()
        res = scan_applications(args.path, secret=BENCH_SECRET, backend="local")
        out["wall_s"] = round(time.perf_counter() - t, 1)
    else:
        events = Path(args.events)
        t = time.perf_counter()
        spark = spark_session(
            args.master, shuffle_partitions=args.partitions, driver_memory=args.driver_memory,
            conf={"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                  "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false",
                  "spark.sql.adaptive.enabled": "true"})
        out["session_start_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        res = scan_applications(args.path, secret=BENCH_SECRET, backend="spark", spark=spark,
                                components=args.components)
        out["wall_s"] = round(time.perf_counter() - t, 1)
        out["workers_rss_mb"] = round(_tree_rss_mb(os.getpid()), 0)
        spark.stop()
        out.update(_event_log_metrics(events))
    out.update({"rings": len(res.rings), "flagged": len(res.flagged), "rows": res.rows,
                "errors": len(res.errors), "digest": _digest(res.rings),
                "driver_peak_rss_mb": round(peak_rss_mb(), 0),
                "stats": dict(res.stats)})
    print("RESULT " + json.dumps(out), flush=True)


def _run(cmd: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def main() -> None:
    """Parse arguments; run every size on both backends; print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    ap.add_argument("--driver-memory", default="6g")
    ap.add_argument("--components", default="auto", choices=("auto", "builtin", "graphframes"))
    ap.add_argument("--backends", default="local,spark")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "graph_spark.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--events", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="kyc-bench-spark-"))
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            path = work / f"apps_{n}.parquet"
            data = _write_parquet(n, args.seed, path)
            row: dict[str, Any] = {"size": n, "data": data}
            for backend in args.backends.split(","):
                events = work / f"events_{n}"
                events.mkdir(exist_ok=True)
                cmd = [python(), __file__, "--child", "--backend", backend, "--path", str(path),
                       "--events", str(events), "--master", args.master,
                       "--partitions", str(args.partitions),
                       "--driver-memory", args.driver_memory, "--components", args.components]
                row[backend] = _run(cmd)
                print(json.dumps({"size": n, backend: row[backend]}), flush=True)
            if "local" in row and "spark" in row:
                if row["local"]["digest"] != row["spark"]["digest"]:
                    raise SystemExit(f"size {n}: the backends disagree (ring digests differ)")
                row["equal"] = True
                row["spark_over_local_wall"] = round(row["spark"]["wall_s"]
                                                     / row["local"]["wall_s"], 2)
            results.append(row)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)]}
    try:
        import pyspark

        meta["pyspark"] = pyspark.__version__
    except ImportError:
        pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n",
                              encoding="utf-8")
    print(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
