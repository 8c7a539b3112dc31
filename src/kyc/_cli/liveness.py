"""``kyc liveness IMAGE``: passive liveness (presentation-attack detection) on one selfie.

Prints the verdict, the fused score against the threshold (and the APCER it was set for), the
per-model and per-cue scores and the reason codes; ``--json`` prints
:meth:`kyc.liveness.passive.LivenessResult.to_dict` instead.

Exit codes: 0 live; 1 spoof, and also ``not_checked`` for the face (no face, too small, too
dark, greyscale), so a script that proceeds only on exit 0 never proceeds on an unchecked
selfie; 2 bad input (an undecodable image, a malformed ``--face-box``); 3 a model problem
(the MiniFASNet or detector files are missing or corrupt: run
``kyc models build minifasnet_v2 minifasnet_v1se``).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]

_EXIT_LIVE = 0
_EXIT_NEGATIVE = 1
_EXIT_MODEL = 3


def _box(text: str) -> tuple[float, float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("expected x,y,w,h (four numbers)")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError("expected x,y,w,h (four numbers)") from None
    return (x, y, w, h)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``liveness`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "liveness",
        help="passive liveness (presentation-attack detection) on one selfie",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit codes: 0 live, 1 spoof or not_checked, 2 bad input, 3 model problem",
    )
    p.add_argument("image", metavar="IMAGE", help="the selfie (any format kyc can decode)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--face-box",
        type=_box,
        default=None,
        metavar="X,Y,W,H",
        help="assess this face box instead of detecting one (pixels of IMAGE)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="a threshold of your own on the fused score (no APCER claim)",
    )
    p.add_argument(
        "--no-cues", action="store_true", help="use the two models alone (no recapture cues)"
    )
    p.add_argument("--models", default=None, help="folder holding the built MiniFASNet ONNX files")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``kyc liveness``; returns the exit code (0 live, 1 spoof / not_checked, 3 model)."""
    from kyc.liveness.passive import PassiveLiveness

    engine = PassiveLiveness(
        model_dir=args.models,
        threshold=args.threshold,
        cues=() if args.no_cues else None,
        intra_op_num_threads=args.threads,
    )
    result = engine.check(args.image, face_box=args.face_box)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        if result.score is not None:
            claim = (
                f"set for APCER {result.apcer_target:g}"
                if result.apcer_target is not None
                else "no APCER claim"
            )
            print(
                f"{result.status}: score {result.score:.4f}, threshold {result.threshold:g} "
                f"({result.operating_point}; {claim})"
            )
            models = ", ".join(f"{k} {v:.4f}" for k, v in result.model_scores.items())
            print(f"  models: {models} (mean {result.model_score:.4f})")
            if result.cues:
                cues = ", ".join(f"{c.name} {c.strength:.2f} ({c.value:.3g})" for c in result.cues)
                print(f"  cues (strength, measured): {cues}")
        else:
            print(f"{result.status}: not assessed")
        for reason in result.reasons:
            print(f"  {reason.code}: {reason.message}")
    if "PAD_MODEL_UNAVAILABLE" in result.codes:
        return _EXIT_MODEL
    return _EXIT_LIVE if result.is_live else _EXIT_NEGATIVE
