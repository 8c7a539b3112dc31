"""The long fuzz run: 10^5 coverage-guided inputs per target, counted by outcome.

Runs each atheris target in ``fuzz/`` (``fuzz_image.py``: :func:`kyc.image.load_image`;
``fuzz_records.py``: record validation, CSV/Parquet loading, ``FraudGraph.add``/``add_many``)
as its own process in counting mode (``KYC_FUZZ_SUMMARY``), so one failure does not end the
run: every input is classified as "ok or a documented refusal" or as a failure keyed by
exception type and the innermost kyc frame. A target process that dies (a crash in native
code, libFuzzer's per-input timeout or RSS limit) shows up as fewer inputs than asked and a
non-zero exit code.

Seed corpora are written fresh for each run from real data (``$KYC_DATA_DIR``: real face
photos re-encoded in every supported format, with huge/zero declared sizes; records from
:mod:`kyc.graph.synth`).

Usage (from the repository root; results go to ``benchmarks/out/reliability_fuzz/``)::

    nice -n 10 python benchmarks/reliability_fuzz.py --runs 100000
    python benchmarks/reliability_fuzz.py --runs 2000 --targets image      # a quick check

Prints a Markdown table (inputs, time, rate, failures by type, peak RSS of each target
process from its own ``resource.getrusage``) and writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run_target"]

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "image": ("fuzz/fuzz_image.py", 65536),
    "records": ("fuzz/fuzz_records.py", 8192),
}


def _data_dir() -> Path:
    env = os.environ.get("KYC_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def run_target(name: str, runs: int, out: Path, *, seed: int, max_seconds: int,
               rss_limit_mb: int) -> dict[str, Any]:
    """Fuzz one target for ``runs`` inputs; returns its summary plus exit code and wall time."""
    script, max_len = TARGETS[name]
    corpus = out / f"corpus_{name}"
    shutil.rmtree(corpus, ignore_errors=True)
    env = dict(os.environ)
    env.setdefault("KYC_DATA_DIR", str(_data_dir()))
    subprocess.run([sys.executable, str(ROOT / script), "--make-corpus", str(corpus)],
                   check=True, env=env, cwd=ROOT)
    summary_path = out / f"summary_{name}.json"
    summary_path.unlink(missing_ok=True)
    env["KYC_FUZZ_SUMMARY"] = str(summary_path)
    cmd = [
        sys.executable, str(ROOT / script),
        f"-runs={runs}", f"-seed={seed}", "-len_control=0", f"-max_len={max_len}",
        f"-rss_limit_mb={rss_limit_mb}", "-timeout=60", f"-max_total_time={max_seconds}",
        "-print_final_stats=1", str(corpus),
    ]
    log = out / f"fuzz_{name}.log"
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.monotonic() - t0
    summary: dict[str, Any] = (json.loads(summary_path.read_text())
                               if summary_path.is_file() else {"inputs": 0})
    summary.update({
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "rate_per_s": round(summary.get("inputs", 0) / max(summary.get("seconds", wall), 1e-9),
                            1),
        "asked": runs,
        "command": " ".join(["python", script, *cmd[2:-1], f"<corpus_{name}>"]),
        "log": str(log.relative_to(ROOT)) if log.is_relative_to(ROOT) else str(log),
    })
    summary["died_early"] = summary.get("inputs", 0) < runs and proc.returncode != 0
    return summary


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| target | inputs | time (s) | inputs/s | failures | failure types | peak RSS (MB) "
        "| exit |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, r in results.items():
        failures = r.get("failures", {})
        kinds = "; ".join(f"{k} x{v}" for k, v in failures.items()) or "none"
        lines.append(
            f"| {name} | {r.get('inputs', 0)} | {r.get('seconds', r['wall_s'])} | "
            f"{r['rate_per_s']} | {sum(failures.values())} | {kinds} | "
            f"{r.get('peak_rss_mb', '?')} | {r['exit_code']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the targets; print the table; return 0 when every target ran every input cleanly."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=int, default=1500,
                   help="stop a target after this long (libFuzzer -max_total_time)")
    p.add_argument("--rss-limit-mb", type=int, default=4096)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "reliability_fuzz")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in args.targets:
        print(f"fuzzing {name}: {args.runs} inputs ...", file=sys.stderr, flush=True)
        results[name] = run_target(name, args.runs, args.out, seed=args.seed,
                                   max_seconds=args.max_seconds,
                                   rss_limit_mb=args.rss_limit_mb)
    (args.out / "summary.json").write_text(json.dumps(results, indent=1))
    print(_table(results))
    for name, r in results.items():
        for key, example in r.get("examples", {}).items():
            print(f"\n{name}: {key}\n  first input: {example[:400]}")
    clean = all(not r.get("failures") and r["exit_code"] == 0 and not r["died_early"]
                for r in results.values())
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
