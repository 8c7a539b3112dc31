"""``kyc scan``: fraud rings in a file of applications.

Reads applications (CSV or Parquet, the columns of :mod:`kyc.graph.records`), hashes every
identifier under the secret in ``--secret-env`` (default ``KYC_HMAC_SECRET``), adds them to a
store (in memory, or the SQLite file ``--store`` so later scans accumulate), finds and scores
ring candidates, and writes them as JSON or CSV (``--out``). ``--picture`` draws the
top-scoring flagged ring (``.html`` self-contained, ``.svg``, or ``.png`` with matplotlib).
Outputs hold hashed tokens only. Bad rows are reported on stderr with their row number and
the rest goes on.

Exit codes: 0 done, 1 flagged rings found with ``--fail-on-rings``, 2 bad input (missing
file or secret, unknown output type, or no valid row), 3 store problem.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from kyc.errors import ConfigError

__all__ = ["register", "run_scan"]

_EXIT_OK = 0
_EXIT_RINGS = 1
_EXIT_USAGE = 2
_MAX_ERRORS_SHOWN = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``scan`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "scan",
        help="find and score fraud rings in a CSV/Parquet file of applications",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("applications", help="CSV (.csv, .csv.gz) or Parquet file of applications")
    p.add_argument("--secret-env", default=None, metavar="VAR",
                   help="environment variable holding the HMAC secret (default KYC_HMAC_SECRET)")
    p.add_argument("--out", metavar="FILE", help="write rings to FILE (.json or .csv)")
    p.add_argument("--picture", metavar="FILE",
                   help="draw the top flagged ring to FILE (.html, .svg or .png)")
    p.add_argument("--store", metavar="PATH",
                   help="SQLite store to add to (default: in memory, forgotten on exit)")
    p.add_argument("--all", action="store_true",
                   help="output every ring candidate, not only the flagged ones")
    p.add_argument("--region", default="US",
                   help="default phone region for numbers without +country (US)")
    p.add_argument("--fail-on-rings", action="store_true",
                   help="exit 1 when a flagged ring is found")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_scan)


def _count_rows(path: Path) -> int | None:
    name = path.name.lower()
    if not name.endswith((".csv", ".txt")):
        return None
    try:
        with open(path, "rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return None
    return max(lines - 1, 0)


def _write_json(path: Path, rings: list[Any], summary: dict[str, Any]) -> None:
    payload = {"summary": summary, "rings": [r.to_dict() for r in rings]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


_CSV_FIELDS = ("ring_id", "score", "flagged", "size", "component_size", "density",
               "density_top_pct", "device_sharers", "card_sharers", "burst", "burst_long",
               "span_s", "thin_file_share", "known_fraud", "near_fraud", "reasons",
               "kinds", "shared", "members")


def _write_csv(path: Path, rings: list[Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_CSV_FIELDS)
        for r in rings:
            w.writerow([
                r.ring_id, f"{r.score:.6f}", int(r.flagged), r.size, r.component_size,
                f"{r.density:.6f}", r.density_top_pct, r.device_sharers, r.card_sharers,
                r.burst, r.burst_long, r.span_s, r.thin_file_share, r.known_fraud,
                r.near_fraud, ";".join(x.code for x in r.reasons), "|".join(r.kinds),
                "|".join(f"{s.token}*{s.members}" for s in r.shared), "|".join(r.members),
            ])
    os.replace(tmp, path)


def _print_table(rings: list[Any], out: TextIO, limit: int = 20) -> None:
    for r in rings[:limit]:
        codes = " ".join(x.code for x in r.reasons)
        print(f"{r.ring_id}  score {r.score:.3f}  {'FLAGGED' if r.flagged else 'candidate'}  "
              f"{r.size} members  {codes}", file=out)
    if len(rings) > limit:
        print(f"... {len(rings) - limit} more (use --out)", file=out)


def run_scan(args: argparse.Namespace) -> int:
    """Run ``kyc scan``; returns the exit code (see the module docstring)."""
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.identifiers import ENV_SECRET, hasher_from_env

    src = Path(args.applications)
    if not src.is_file():
        raise ConfigError(f"no such file: {src}")
    out_path = Path(args.out) if args.out else None
    if out_path is not None and out_path.suffix.lower() not in (".json", ".csv"):
        raise ConfigError(f"--out must end in .json or .csv, not {out_path.suffix!r}")
    pic_path = Path(args.picture) if args.picture else None
    if pic_path is not None and pic_path.suffix.lower() not in (".html", ".htm", ".svg", ".png"):
        raise ConfigError(f"--picture must end in .html, .svg or .png, not {pic_path.suffix!r}")
    if pic_path is not None and pic_path.suffix.lower() == ".png":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("--picture .png needs matplotlib: pip install 'kyc[plot]' "
                              "(or use .html)") from None
    hasher = hasher_from_env(var=args.secret_env or ENV_SECRET, default_region=args.region)

    from tqdm import tqdm

    with FraudGraph(hasher, store=args.store) as graph:
        with tqdm(total=_count_rows(src), unit="app", desc="reading", disable=args.quiet,
                  file=sys.stderr) as bar:
            result = graph.add_many(src, progress=bar.update)
        for err in result.errors[:_MAX_ERRORS_SHOWN]:
            where = f"row {err.row}" if err.row is not None else "row ?"
            field = f" [{err.field}]" if err.field else ""
            print(f"kyc scan: {where}{field}: {err.message}", file=sys.stderr)
        if len(result.errors) > _MAX_ERRORS_SHOWN:
            print(f"kyc scan: ... {len(result.errors) - _MAX_ERRORS_SHOWN} more bad rows",
                  file=sys.stderr)
        if result.rows and not result.added and not result.duplicates:
            print(f"kyc scan: no valid application in {src}", file=sys.stderr)
            return _EXIT_USAGE
        with tqdm(unit="component", desc="scanning", disable=args.quiet,
                  file=sys.stderr) as bar:
            rings = graph.scan(progress=bar.update)
        flagged = [r for r in rings if r.flagged]
        summary = {
            "rows": result.rows,
            "added": result.added,
            "duplicates": result.duplicates,
            "bad_rows": len(result.errors),
            "applications_stored": len(graph.store),
            "ring_candidates": len(rings),
            "flagged_rings": len(flagged),
            "config": graph.config.to_dict(),
        }
        chosen = rings if args.all else flagged
        if out_path is not None:
            if out_path.suffix.lower() == ".json":
                _write_json(out_path, chosen, summary)
            else:
                _write_csv(out_path, chosen)
        if pic_path is not None:
            if flagged:
                from kyc.graph.render import render_ring

                render_ring(flagged[0], pic_path)
            else:
                print("kyc scan: no flagged ring to draw", file=sys.stderr)
    print(f"{result.rows} rows, {result.added} added, {result.duplicates} duplicates, "
          f"{len(result.errors)} bad; {len(rings)} ring candidates, {len(flagged)} flagged")
    if out_path is None:
        _print_table(chosen, sys.stdout)
    if flagged and args.fail_on_rings:
        return _EXIT_RINGS
    return _EXIT_OK
