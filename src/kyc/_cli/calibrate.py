"""``kyc calibrate``: thresholds at stated false-match rates from labelled pairs.

Input is a CSV with a header, one pair per row, in one of two forms:

* ``score,same``: a comparison score per pair (a distance unless ``--higher-is-match``)
  and ``same`` = 1/0 (also true/false, yes/no);
* ``image_a,image_b,same``: two image paths per pair (relative to ``--images-root``, by
  default the CSV's folder); every image is embedded once with the chosen embedder
  (``FaceVerifier.represent``) and pairs are scored with the embedder's metric. A pair
  with an unreadable image or no face is reported on stderr and left out; the rest is
  calibrated.

Prints one line per FMR target: threshold, bootstrap 95 % interval, FMR and TAR on the
data; ``--json`` prints :meth:`CalibrationResult.to_dict`, ``--toml NAME`` prints
``[[profile]]`` blocks for a profiles file. Exit 0 on success, 2 on bad input (including
too few impostor pairs to resolve a target).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kyc.calibrate import DEFAULT_FMR_TARGETS, CalibrationResult, calibrate
from kyc.errors import CalibrationError, InvalidImage, MultipleFaces, NoFace

__all__ = ["register", "run"]

_TRUE = {"1", "true", "yes", "y", "same", "t"}
_FALSE = {"0", "false", "no", "n", "different", "diff", "f"}
_EMBEDDER_NAMES = {"dlib": "dlib_resnet_v1", "mobilefacenet": "mobilefacenet_eval_only"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "calibrate",
        help="thresholds for FMR targets from labelled pairs (with confidence intervals)",
        description=(
            "Thresholds for false-match-rate targets, with bootstrap confidence intervals, "
            "from a CSV of labelled pairs (score,same or image_a,image_b,same)."
        ),
    )
    p.add_argument("pairs", help="CSV with columns score,same or image_a,image_b,same")
    p.add_argument(
        "--fmr",
        type=float,
        action="append",
        metavar="RATE",
        help="FMR target (repeat for several; default 1e-2, 1e-3, 1e-4)",
    )
    p.add_argument(
        "--higher-is-match",
        action="store_true",
        help="scores are similarities (match when score >= threshold); score CSVs only",
    )
    p.add_argument("--images-root", help="folder image paths are relative to (image CSVs)")
    p.add_argument("--embedder", default="dlib", help="embedder for image CSVs (default: dlib)")
    p.add_argument(
        "--multi-face",
        default="largest",
        choices=("largest", "centre", "reject"),
        help="which face to use when an image shows several (image CSVs)",
    )
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.add_argument(
        "--min-false-matches",
        type=int,
        default=3,
        help="refuse a target allowing fewer impostor pairs than this below it (3)",
    )
    p.add_argument("--source", help="describe the population (stored with the result)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument(
        "--toml",
        metavar="NAME",
        help="print [[profile]] blocks named NAME-fmr<target> for a profiles file",
    )
    p.set_defaults(func=run)


# --- reading the pairs file ----------------------------------------------------------------------


def _label(value: str, line: int) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise CalibrationError(f"line {line}: 'same' must be 1/0 (or true/false), got {value!r}")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, dict(r)) for r in reader]
    except FileNotFoundError:
        raise CalibrationError(f"pairs file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CalibrationError(f"cannot read pairs file {path}: {exc}") from None
    return header, rows


def _score_pairs(
    rows: list[tuple[int, dict[str, str]]],
) -> tuple[np.ndarray, np.ndarray]:
    gen: list[float] = []
    imp: list[float] = []
    for line, row in rows:
        raw = (row.get("score") or "").strip()
        try:
            score = float(raw)
        except ValueError:
            raise CalibrationError(f"line {line}: score {raw!r} is not a number") from None
        (gen if _label(row.get("same") or "", line) else imp).append(score)
    return np.asarray(gen, dtype=np.float64), np.asarray(imp, dtype=np.float64)


def _image_pairs(
    rows: list[tuple[int, dict[str, str]]], root: Path, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """Embed every image once, score every pair; returns (genuine, impostor, higher, model)."""
    from kyc.face.embed import compare
    from kyc.face.verify import FaceVerifier

    # the threshold profile is irrelevant here (only represent() is used): pass a custom one
    verifier = FaceVerifier(args.embedder, multi_face=args.multi_face, profile=0.0)
    metric = verifier.embedder.metric
    cache: dict[str, np.ndarray | str] = {}

    def embedding(name: str) -> np.ndarray | str:
        if name not in cache:
            path = Path(name) if Path(name).is_absolute() else root / name
            try:
                template = verifier.represent(path)
            except (InvalidImage, OSError) as exc:
                cache[name] = f"cannot read image {name}: {exc}"
            except (NoFace, MultipleFaces) as exc:
                cache[name] = f"{name}: {exc}"
            else:
                cache[name] = np.asarray(template.embedding, dtype=np.float64)
        return cache[name]

    gen: list[float] = []
    imp: list[float] = []
    skipped = 0
    for line, row in rows:
        same = _label(row.get("same") or "", line)
        a_name = (row.get("image_a") or "").strip()
        b_name = (row.get("image_b") or "").strip()
        if not a_name or not b_name:
            raise CalibrationError(f"line {line}: empty image_a or image_b")
        ea, eb = embedding(a_name), embedding(b_name)
        if isinstance(ea, str) or isinstance(eb, str):
            problem = ea if isinstance(ea, str) else eb
            print(f"kyc calibrate: line {line} skipped: {problem}", file=sys.stderr)
            skipped += 1
            continue
        score = float(compare(ea, eb, metric))
        (gen if same else imp).append(score)
    if skipped:
        print(f"kyc calibrate: {skipped} of {len(rows)} pairs skipped", file=sys.stderr)
    model = f"{verifier.embedder.name} (sha256 {verifier.embedder.sha256[:12]})"
    return (
        np.asarray(gen, dtype=np.float64),
        np.asarray(imp, dtype=np.float64),
        metric == "cosine",
        model,
    )


# --- output ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def _print_text(result: CalibrationResult) -> None:
    rule = "score >= threshold" if result.higher_is_match else "score <= threshold"
    print(
        f"calibrated on {result.n_genuine} genuine and {result.n_impostor} impostor pairs "
        f"({result.metric_kind}: match when {rule})"
    )
    if result.source:
        print(f"source: {result.source}")
    print(f"ROC AUC {result.roc_auc:.5f}, EER {_pct(result.eer)}")
    level = f"{100 * result.confidence:g} % CI"
    print(f"{'FMR target':>10}  {'threshold':>10}  {level:>22}  {'FMR on data':>20}  TAR ({level})")
    for e in result.thresholds:
        ci = f"[{e.ci[0]:.4f}, {e.ci[1]:.4f}]"
        fmr = f"{_pct(e.fmr)} ({e.false_matches})"
        tar = f"{_pct(e.tar)} [{_pct(e.tar_ci[0])}, {_pct(e.tar_ci[1])}]"
        print(f"{e.fmr_target:>10.0e}  {e.threshold:>10.4f}  {ci:>22}  {fmr:>20}  {tar}")


def _toml(result: CalibrationResult, name: str, metric: str, embedder: str) -> str:
    command = "kyc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    blocks = []
    for e in result.thresholds:
        fields: dict[str, Any] = {
            "name": f"{name}-fmr{e.fmr_target:.0e}".replace("e-0", "e-"),
            "embedder": embedder,
            "metric": metric,
            "threshold": round(e.threshold, 6),
            "fmr_target": e.fmr_target,
            "ci": [round(e.ci[0], 6), round(e.ci[1], 6)],
            "population": result.source,
            "n_genuine": result.n_genuine,
            "n_impostor": result.n_impostor,
            "command": command,
            "default": False,
        }
        lines = ["[[profile]]"]
        for key, value in fields.items():
            text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
            lines.append(f"{key} = {text}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    """Execute ``kyc calibrate``; returns the exit code (errors propagate as KycError)."""
    path = Path(args.pairs)
    header, rows = _read_rows(path)
    if not rows:
        raise CalibrationError(f"pairs file {path} has no rows")
    cols = set(header)
    if {"score", "same"} <= cols:
        genuine, impostor = _score_pairs(rows)
        higher = bool(args.higher_is_match)
        model = ""
        metric = "cosine" if higher else "euclidean"
        embedder = _EMBEDDER_NAMES.get(args.embedder, args.embedder)
    elif {"image_a", "image_b", "same"} <= cols:
        if args.higher_is_match:
            raise CalibrationError("--higher-is-match applies to score CSVs only")
        root = Path(args.images_root) if args.images_root else path.parent
        if not root.is_dir():
            raise CalibrationError(f"images root {root} is not a folder")
        genuine, impostor, higher, model = _image_pairs(rows, root, args)
        metric = "cosine" if higher else "euclidean"
        embedder = model.split(" ")[0]
    else:
        raise CalibrationError(
            f"{path} has columns {sorted(cols)}; expected score,same or image_a,image_b,same"
        )
    source = args.source or f"{len(rows)} labelled pairs from {path}"
    if model:
        source += f"; embedder {model}, multi-face policy {args.multi_face}"
    targets: Sequence[float] = tuple(args.fmr) if args.fmr else DEFAULT_FMR_TARGETS
    result = calibrate(
        genuine,
        impostor,
        higher_is_match=higher,
        fmr_targets=targets,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        source=source,
        confidence=args.confidence,
        min_false_matches=args.min_false_matches,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif args.toml:
        print(_toml(result, args.toml, metric, embedder))
    else:
        _print_text(result)
    return 0
