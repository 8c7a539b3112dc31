"""LFW (grey copy) verification with the official 6,000-pair View-2 protocol.

For each embedder and multi-face policy: mean 10-fold accuracy (threshold chosen on the
other 9 folds, as the literature reports it), ROC AUC and TAR at FMR 1e-3 over all 6,000
pairs (the 3,000 impostor pairs resolve 1e-3 with exactly 3 false matches: read its
interval), and a DET curve saved as ``benchmarks/out/face_lfw_det.png``.

    nice -n 10 python benchmarks/face_lfw.py --embedder dlib --embedder mobilefacenet_eval_only \\
        --policy centre --policy largest

The LFW images are 250x250 with the named person centred; in some the highest-scoring (or
largest) detection is a bystander, hence ``--policy centre`` (the face nearest the centre).
A pair with no face found counts as a "no match" decision in the 10-fold accuracy and is
left out of AUC/TAR (the counts are printed).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from face_common import (
    LFW,
    OUT,
    det_plot,
    embed_images,
    lfw_pairs,
    pair_scores,
    pct,
    pipeline_hash,
    ten_fold_accuracy,
)
from kyc.calibrate import calibrate, equal_error_rate, roc_auc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", action="append", help="dlib (default), mobilefacenet_eval_only")
    ap.add_argument("--policy", action="append", help="multi-face policy: centre, largest")
    ap.add_argument("--refresh", action="store_true", help="ignore cached embeddings")
    args = ap.parse_args()
    embedders = args.embedder or ["dlib"]
    policies = args.policy or ["centre", "largest"]

    pairs = lfw_pairs()
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    results = []
    curves = []
    for embedder in embedders:
        for policy in policies:
            emb = embed_images(images, LFW, embedder=embedder, multi_face=policy, tag="lfw")
            higher = emb.metric == "cosine"
            scores = pair_scores(emb, pairs)
            mean, std, per_fold = ten_fold_accuracy(scores, same, folds, higher)
            have = ~np.isnan(scores)
            gen, imp = scores[have & same], scores[have & ~same]
            cal = calibrate(gen, imp, higher_is_match=higher, fmr_targets=(1e-3,), seed=0)
            at = cal.at(1e-3)
            norms = np.linalg.norm(emb.vectors[emb.ok].astype(np.float64), axis=1)
            row = {
                "embedder": emb.embedder,
                "sha256": emb.sha256,
                "policy": policy,
                "images": len(images),
                "images_without_face": int((~emb.ok).sum()),
                "pairs_without_face": int((~have).sum()),
                "accuracy_10fold": mean,
                "accuracy_std": std,
                "per_fold": per_fold,
                "roc_auc": roc_auc(gen, imp, higher_is_match=higher),
                "eer": equal_error_rate(gen, imp, higher_is_match=higher),
                "tar_at_fmr_1e-3": at.tar,
                "tar_ci": list(at.tar_ci),
                "threshold_fmr_1e-3": at.threshold,
                "threshold_ci": list(at.ci),
                "false_matches": at.false_matches,
                "n_genuine": int(gen.size),
                "n_impostor": int(imp.size),
                "embedding_norm": [float(norms.min()), float(norms.mean()), float(norms.max())],
                "ms_per_image": 1e3 * emb.seconds_per_image,
                "pipeline_hash": pipeline_hash(),
            }
            results.append(row)
            curves.append((f"{emb.embedder} ({policy})", gen, imp, higher))
            print(
                f"{emb.embedder:>24} {policy:>8}: 10-fold {pct(mean)} ± {pct(std)}, "
                f"AUC {row['roc_auc']:.5f}, EER {pct(row['eer'])}, TAR@FMR1e-3 {pct(at.tar)} "
                f"[{pct(at.tar_ci[0])}, {pct(at.tar_ci[1])}] (threshold {at.threshold:.4f}), "
                f"no face in {row['images_without_face']} images / "
                f"{row['pairs_without_face']} pairs",
                file=sys.stderr,
            )
    OUT.mkdir(parents=True, exist_ok=True)
    det = OUT / "face_lfw_det.png"
    det_plot(curves, str(det), "DET, LFW grey, official 6,000 pairs")
    (OUT / "face_lfw.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"DET curve: {det}", file=sys.stderr)


if __name__ == "__main__":
    main()
