"""``kyc verify ID_IMAGE SELFIE``: is the selfie the person on the ID?

Prints the decision, the score against the threshold, the threshold profile (with its
false-match-rate target and the population it was calibrated on), both quality reports and
the reason codes; ``--json`` prints :meth:`kyc.face.verify.MatchResult.to_dict` instead.

Exit codes: 0 match; 1 mismatch, and also ``not_checked`` (no face, several faces under
``--multi-face reject``, or failed quality under ``--quality require``): a script that
proceeds only on exit 0 never proceeds on an unchecked pair, and the status line / JSON says
which it was; 2 bad input (an undecodable or oversized image, an unknown profile or
embedder); 3 a model problem (missing or corrupt model file).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "run"]

_EXIT_MATCH = 0
_EXIT_NEGATIVE = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "verify",
        help="1:1 face match of an ID photo against a selfie",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit codes: 0 match, 1 mismatch or not_checked, 2 bad input, 3 model problem",
    )
    p.add_argument(
        "id_image", metavar="ID_IMAGE", help="photo of the ID document (or its portrait)"
    )
    p.add_argument("selfie", metavar="SELFIE", help="the applicant's selfie")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--embedder",
        default="dlib",
        help="dlib (default), mobilefacenet_eval_only (evaluation only), or an embedder TOML file",
    )
    thr = p.add_mutually_exclusive_group()
    thr.add_argument("--profile", help="threshold profile name (default: the embedder's default)")
    thr.add_argument(
        "--threshold",
        type=float,
        help="a threshold of your own (reported as profile 'custom', no FMR claim)",
    )
    p.add_argument(
        "--multi-face",
        default="largest",
        choices=("largest", "centre", "reject"),
        help="which face to use when a photo shows several (default: largest)",
    )
    p.add_argument(
        "--quality",
        default="report",
        choices=("report", "require"),
        help="report quality failures (default) or refuse to compare (not_checked)",
    )
    p.add_argument(
        "--max-side", type=int, default=1280, help="detector input long side (default 1280)"
    )
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.set_defaults(func=run)


def _quality_line(label: str, q: Any) -> str:
    if q is None:
        return f"  {label}: no face"
    verdict = "ok" if q.passed else "FAILS " + ",".join(q.codes)
    return (
        f"  {label}: {verdict} (eyes {q.inter_eye:.0f} px, sharpness {q.sharpness:.0f}, "
        f"brightness {q.brightness:.0f}, yaw {q.yaw:.0f}, roll {q.roll:.0f})"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``kyc verify``; returns the exit code (0 match, 1 mismatch / not_checked)."""
    from kyc.face.verify import FaceVerifier

    profile: str | float | None = args.threshold if args.threshold is not None else args.profile
    verifier = FaceVerifier(
        args.embedder,
        profile=profile,
        multi_face=args.multi_face,
        quality=args.quality,
        max_side=args.max_side,
        intra_op_num_threads=args.threads,
    )
    result = verifier.verify(args.id_image, args.selfie)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        if result.score is not None:
            what = "distance" if result.metric == "euclidean" else "similarity"
            line = f"{result.status}: {what} {result.score:.4f}, threshold {result.threshold:g}"
        else:
            line = f"{result.status}: no comparison"
        fmr = f"FMR {result.fmr_target:g}" if result.fmr_target is not None else "no FMR claim"
        prov = " PROVISIONAL" if result.profile_provisional else ""
        print(line)
        print(f"  profile: {result.profile}{prov} ({fmr}; population: {result.population})")
        print(_quality_line("ID quality", result.quality_id))
        print(_quality_line("selfie quality", result.quality_selfie))
        for reason in result.reasons:
            print(f"  {reason.code}: {reason.message}")
    return _EXIT_MATCH if result.status == "match" else _EXIT_NEGATIVE
