"""``kyc bench --out DIR``: a benchmark report with pictures (see :mod:`kyc.report`).

Measures face match (DET, ROC, distance histograms), passive liveness against presentation
attacks (DET, ROC, live-score histograms) and ring detection on a synthetic population (ring
score histogram, a picture of a flagged ring) on the evaluation data in ``--data`` (default
``$KYC_DATA_DIR``), and writes the PNGs, ONE self-contained ``report.html`` (the PNGs inlined)
and ``summary.json`` into ``--out``. ``--quick`` uses subsets: seconds instead of minutes.

Exit codes: 0 report written; 2 bad input (no data folder, matplotlib missing); 3 a model
problem that stops the face part (the PAD part reports a missing model and goes on).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "bench",
        help="benchmark report with pictures (DET/ROC, histograms, a ring) as PNG + HTML",
        description=("Write a benchmark report with pictures (DET/ROC curves, score "
                     "histograms, a fraud ring) as PNGs and one self-contained HTML page."),
        epilog="exit codes: 0 report written, 2 bad input, 3 model problem",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the report to")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="evaluation data folder (default $KYC_DATA_DIR)")
    p.add_argument("--quick", action="store_true",
                   help="subsets only (celebrities13, every 5th replay crop, 5k applications)")
    p.add_argument("--pad-models", default=None, metavar="DIR",
                   help="folder of the built MiniFASNet ONNX files (default: model registry)")
    p.add_argument("--graph-applications", type=int, default=None, metavar="N",
                   help="synthetic applications for the ring part (default 5k quick, 50k full)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic population")
    p.add_argument("--only", default=None, metavar="PARTS",
                   help="comma-separated parts to run: face, pad, graph (default all)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``kyc bench``; returns the exit code."""
    from kyc.report import PARTS, run_bench

    parts = PARTS
    if args.only:
        parts = tuple(p.strip() for p in args.only.split(",") if p.strip())

    argv = ["kyc", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else None
    report = run_bench(
        args.out,
        data_dir=args.data,
        quick=args.quick,
        pad_model_dir=args.pad_models,
        graph_applications=args.graph_applications,
        seed=args.seed,
        parts=parts,
        progress=not args.no_progress and sys.stderr.isatty(),
        command=shlex.join(argv) if argv else None,
        log=lambda m: print(f"kyc bench: {m}", file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    s = report.summary
    print(f"report: {report.html}")
    print(f"pictures: {', '.join(p.name for p in report.figures)}")
    for name, fs in s.get("face", {}).get("sets", {}).items():
        print(f"face {name}: AUC {fs['auc']}, EER {fs['eer']}, FMR/FNMR at threshold "
              f"{fs['fmr_at_threshold']}/{fs['fnmr_at_threshold']}")
    pad = s.get("pad", {})
    if "auc" in pad:
        print(f"pad: AUC {pad['auc']}, APCER/BPCER at threshold "
              f"{pad['apcer_at_threshold']}/{pad['bpcer_at_threshold']}")
    elif "error" in pad:
        print(f"pad: not measured ({pad['error']['message']})")
    g = s.get("graph", {})
    if "candidates" in g:
        print(f"rings: {g['flagged']} flagged of {g['candidates']} candidates; planted "
              f"recovered {g['planted_recovered']}/{g['planted_rings']}")
    return 0
