"""Shipped thresholds: calibrate on LFW, then check them where they were not calibrated.

1. Calibration population: every image of the LFW grey copy whose person is NOT in
   ``east_asian.csv`` (nor one of the alias names of those people), faces picked with
   ``multi_face="centre"``. Every unordered pair of these images is scored: pairs of one
   person are genuine, all others impostor (millions of pairs).
   :func:`kyc.calibrate.calibrate` gives a threshold per FMR target (1e-2, 1e-3, 1e-4) with
   a pair-level bootstrap interval; because pairs share images and people, an
   identity-level (cluster) bootstrap is run as well and its wider interval is the one
   written to the profile.
2. ``--write-profiles`` writes the dlib profiles to ``src/kyc/face/profiles.toml`` (the
   FMR-1e-3 one is the default), keeping the file's header comment.
3. The thresholds are then checked on data they were not calibrated on:
   * the East-Asian slice (``east_asian.csv``): FMR among impostor pairs of women, of men
     (and across sexes), TAR among genuine pairs; doubtful labels (``flag``) handled as
     described in ``face_common.EA_DOUBTFUL``; the three people LFW files under two name
     orders are one person; also the slice's own FMR-1e-3 threshold and its TAR;
   * ``pad/silent_face_samples``: image_T1 (a live woman) against the printed poster woman
     in image_F1: two different people;
   * celebrities13 (all 1,830 pairs) and face_recognition_examples (every pair of the
     single-identity, non-duplicate photos): ROC AUC, EER, accuracy / FMR / FNMR at each
     profile, faces picked with the default ``multi_face="largest"``.

    nice -n 10 python benchmarks/face_calibrate.py --embedder dlib --write-profiles
    nice -n 10 python benchmarks/face_calibrate.py --embedder mobilefacenet_eval_only
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from face_common import (
    DATA,
    EA_DOUBTFUL,
    FACES,
    LFW,
    LFW_ALIASES,
    OUT,
    ROOT,
    Pair,
    canonical,
    decide,
    det_plot,
    east_asian,
    embed_images,
    identity_of,
    image_number,
    lfw_all_images,
    pair_scores,
    pct,
    pipeline_hash,
)
from kyc.calibrate import all_pair_scores, calibrate, equal_error_rate, roc_auc

TARGETS = (1e-2, 1e-3, 1e-4)
PROFILES = ROOT / "src" / "kyc" / "face" / "profiles.toml"


# --- identity-level bootstrap ----------


def cluster_bootstrap(
    vectors: np.ndarray,
    ids: list[str],
    metric: str,
    targets: tuple[float, ...],
    n_boot: int,
    seed: int,
    cut: float,
) -> dict[float, tuple[float, float]]:
    """Threshold intervals when *people* (not pairs) are resampled with replacement.

    Each person c gets a bootstrap count w_c; an impostor pair of people (c, d) gets weight
    w_c * w_d, so the resampled impostor distribution is a weighted one. Its total weight is
    ((sum_c w_c n_c)^2 - sum_c (w_c n_c)^2) / 2 for n_c images of person c; only the lowest
    scores matter for the thresholds, so only impostor pairs with (oriented, lower = more
    alike) score <= ``cut`` are kept.
    """
    higher = metric == "cosine"
    names, codes = np.unique(np.array(ids), return_inverse=True)
    n_c = np.bincount(codes, minlength=names.size).astype(np.float64)
    # collect the tail of impostor pairs (with both people's codes), block by block
    x = vectors.astype(np.float64)
    if higher:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    tail_s, tail_a, tail_b = [], [], []
    sq = np.einsum("ij,ij->i", x, x)
    n = x.shape[0]
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        gram = x[start:stop] @ x[start:].T
        if higher:
            s = -gram
        else:
            s = np.sqrt(np.maximum(sq[start:stop, None] + sq[None, start:] - 2 * gram, 0.0))
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start, n)[None, :]
        keep = (cols > rows) & (codes[start:stop, None] != codes[None, start:]) & (s <= cut)
        r, c = np.nonzero(keep)
        tail_s.append(s[r, c])
        tail_a.append(codes[start + r])
        tail_b.append(codes[start + c])
    s = np.concatenate(tail_s)
    a = np.concatenate(tail_a)
    b = np.concatenate(tail_b)
    order = np.argsort(s, kind="stable")
    s, a, b = s[order], a[order], b[order]
    rng = np.random.default_rng(seed)
    out: dict[float, list[float]] = {t: [] for t in targets}
    for _ in range(n_boot):
        w = rng.multinomial(names.size, np.full(names.size, 1.0 / names.size)).astype(np.float64)
        total = ((w * n_c).sum() ** 2 - ((w * n_c) ** 2).sum()) / 2
        cum = np.cumsum(w[a] * w[b])
        for t in targets:
            allowed = t * total
            j = int(np.searchsorted(cum, allowed, side="right"))  # first pair over budget
            if j >= s.size:
                raise RuntimeError("tail too short for the bootstrap: widen the cut")
            lower = s[j - 1] if j > 0 else s[j] - 1e-6
            thr = (lower + s[j]) / 2
            out[t].append(-thr if higher else thr)
    return {t: tuple(sorted(np.percentile(v, [2.5, 97.5]).tolist())) for t, v in out.items()}  # type: ignore[misc]


# --- slices ----------


def ea_pairs(rows: list[dict[str, str]], clean: bool) -> list[tuple[str, str, bool, str]]:
    """Every pair of the East-Asian slice: (a, b, same, kind) with kind FF / MM / FM."""
    items = []
    for r in rows:
        ident = canonical(r["identity"])
        if clean and ident in EA_DOUBTFUL and not EA_DOUBTFUL[ident]:
            continue  # whole identity left out (toddler photos)
        items.append((r["path"], ident, r["sex"], image_number(r["path"])))
    out = []
    for (pa, ia, sa, na), (pb, ib, sb, nb) in itertools.combinations(items, 2):
        same = ia == ib
        if same and clean and ia in EA_DOUBTFUL:
            doubtful = EA_DOUBTFUL[ia]
            if ia == "Yukiko_Okudo" or (na in doubtful) != (nb in doubtful):
                continue  # a same-person label we do not trust
        kind = "".join(sorted(sa + sb))  # "FF", "MM" or "FM"
        out.append((pa, pb, same, kind))
    return out


def rates_at(
    scores: np.ndarray, same: np.ndarray, threshold: float, higher: bool
) -> dict[str, Any]:
    """FMR / TAR (and counts) of labelled scores at one threshold; NaN = no match."""
    m = decide(scores, threshold, higher)
    n_imp, n_gen = int((~same).sum()), int(same.sum())
    fm, tm = int((m & ~same).sum()), int((m & same).sum())
    return {
        "fmr": fm / n_imp if n_imp else None,
        "false_matches": fm,
        "n_impostor": n_imp,
        "tar": tm / n_gen if n_gen else None,
        "true_matches": tm,
        "n_genuine": n_gen,
        "accuracy": float(np.mean(m == same)),
    }


def fre_pairs() -> list[Pair]:
    """Every pair of face_recognition_examples photos of one known person, no duplicates."""
    import csv

    with (FACES / "face_recognition_examples" / "identities.csv").open(newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if not r["duplicate_of"] and not r["identity"].startswith(("MULTI(", "UNKNOWN("))
        ]
    return [
        Pair(a["path"], b["path"], a["identity"] == b["identity"])
        for a, b in itertools.combinations(rows, 2)
    ]


def celeb_pairs() -> list[Pair]:
    """All 1,830 pairs of celebrities13 (``all_pairs.csv``)."""
    import csv

    with (FACES / "celebrities13" / "all_pairs.csv").open(newline="") as fh:
        return [Pair(r["image_a"], r["image_b"], r["same"] == "1") for r in csv.DictReader(fh)]


def eval_set(
    name: str, root: Path, pairs: list[Pair], embedder: str, profiles: dict[float, float]
) -> dict[str, Any]:
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    emb = embed_images(images, root, embedder=embedder, multi_face="largest", tag=name)
    higher = emb.metric == "cosine"
    scores = pair_scores(emb, pairs)
    same = np.array([p.same for p in pairs])
    have = ~np.isnan(scores)
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "genuine": int(same.sum()),
        "impostor": int((~same).sum()),
        "images": len(images),
        "images_without_face": sorted(emb.errors),
        "roc_auc": roc_auc(scores[have & same], scores[have & ~same], higher_is_match=higher),
        "eer": equal_error_rate(scores[have & same], scores[have & ~same], higher_is_match=higher),
        "at_profile": {
            f"{t:g}": rates_at(scores, same, thr, higher) for t, thr in profiles.items()
        },
    }
    return out


# --- profiles.toml ----------


def write_profiles(entries: list[dict[str, Any]]) -> None:
    """Replace the [[profile]] entries of profiles.toml, keeping its header comment."""
    text = PROFILES.read_text() if PROFILES.exists() else ""
    head = text.split("[[profile]]", 1)[0].rstrip() + "\n"
    blocks = []
    for e in entries:
        lines = ["[[profile]]"]
        for key, value in e.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            elif isinstance(value, float):
                lines.append(f"{key} = {value!r}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        blocks.append("\n".join(lines))
    PROFILES.write_text(head + "\n" + "\n\n".join(blocks) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="dlib", help="dlib (default) or mobilefacenet_eval_only")
    ap.add_argument("--bootstrap", type=int, default=1000, help="pair-level replicates")
    ap.add_argument("--cluster-bootstrap", type=int, default=200, help="identity-level replicates")
    ap.add_argument(
        "--write-profiles", action="store_true", help="write src/kyc/face/profiles.toml"
    )
    ap.add_argument("--refresh", action="store_true", help="ignore cached embeddings")
    args = ap.parse_args()
    command = "python " + " ".join(["benchmarks/face_calibrate.py", *sys.argv[1:]])

    # 1. calibration population ----------
    ea_rows = east_asian()
    ea_people = {canonical(r["identity"]) for r in ea_rows}
    ea_people |= {alias for alias, name in LFW_ALIASES.items() if name in ea_people}
    all_images = lfw_all_images()
    cal_images = [p for p in all_images if canonical(identity_of(p)) not in ea_people]
    ea_images = [r["path"] for r in ea_rows]
    emb = embed_images(
        sorted(set(cal_images) | set(ea_images)),
        LFW,
        embedder=args.embedder,
        multi_face="centre",
        tag="lfw",
        refresh=args.refresh,
    )
    row = emb.index()
    higher = emb.metric == "cosine"
    metric_rule = "similarity >= threshold" if higher else "distance <= threshold"
    cal_ok = [p for p in cal_images if emb.ok[row[p]]]
    cal_vec = emb.vectors[[row[p] for p in cal_ok]].astype(np.float64)
    cal_ids = [canonical(identity_of(p)) for p in cal_ok]
    gen, imp = all_pair_scores(cal_vec, cal_ids, "cosine" if higher else "euclidean")
    n_people = len(set(cal_ids))
    population = (
        f"LFW grey 250x250 (faces centred, multi_face=centre), people not in east_asian.csv: "
        f"{len(cal_ok)} images of {n_people} people, all pairs"
    )
    cal = calibrate(
        gen,
        imp,
        higher_is_match=higher,
        fmr_targets=TARGETS,
        n_bootstrap=args.bootstrap,
        seed=0,
        source=f"{population}; embedder {emb.embedder} ({emb.sha256[:12]})",
    )
    print(
        f"calibration: {len(cal_ok)} images ({len(cal_images) - len(cal_ok)} without a face), "
        f"{n_people} people, {gen.size} genuine / {imp.size} impostor pairs; "
        f"AUC {cal.roc_auc:.6f}, EER {pct(cal.eer, 3)}",
        file=sys.stderr,
    )
    cut = float(np.quantile(-imp if higher else imp, 3 * max(TARGETS)))
    cluster = cluster_bootstrap(
        cal_vec, cal_ids, emb.metric, TARGETS, args.cluster_bootstrap, seed=1, cut=cut
    )
    # unit-vector distances (what FaceIndex reports) for the same pairs
    unit = cal_vec / np.linalg.norm(cal_vec, axis=1, keepdims=True)
    ugen, uimp = all_pair_scores(unit, cal_ids, "euclidean")
    ucal = calibrate(ugen, uimp, fmr_targets=TARGETS, n_bootstrap=200, seed=0)
    del uimp, ugen

    thresholds: dict[float, float] = {}
    calibration: list[dict[str, Any]] = []
    for est in cal.thresholds:
        t = est.fmr_target
        thresholds[t] = est.threshold
        entry = est.to_dict()
        entry["identity_bootstrap_ci"] = list(cluster[t])
        entry["unit_vector_distance_threshold"] = ucal.at(t).threshold
        calibration.append(entry)
        print(
            f"  FMR {t:g}: threshold {est.threshold:.4f} pair-CI [{est.ci[0]:.4f}, "
            f"{est.ci[1]:.4f}] identity-CI [{cluster[t][0]:.4f}, {cluster[t][1]:.4f}], "
            f"TAR {pct(est.tar)}; unit-vector distance {ucal.at(t).threshold:.4f}",
            file=sys.stderr,
        )

    norms = np.linalg.norm(cal_vec, axis=1)
    result: dict[str, Any] = {
        "embedder": emb.embedder,
        "sha256": emb.sha256,
        "metric": emb.metric,
        "rule": metric_rule,
        "command": command,
        "pipeline_hash": pipeline_hash(),
        "population": population,
        "calibration": {
            "images": len(cal_ok),
            "images_without_face": len(cal_images) - len(cal_ok),
            "people": n_people,
            "n_genuine": int(gen.size),
            "n_impostor": int(imp.size),
            "roc_auc": cal.roc_auc,
            "eer": cal.eer,
            "thresholds": calibration,
            "embedding_norm": [float(norms.min()), float(norms.mean()), float(norms.max())],
        },
    }
    label = f"{emb.embedder}: LFW non-East-Asian, all pairs"
    curves = [(label, gen, imp, higher)]
    points = [(f"FMR-{e.fmr_target:g} profile", e.fmr, 1 - e.tar) for e in cal.thresholds]

    # 2. profiles ----------
    if args.write_profiles:
        if emb.embedder != "dlib_resnet_v1":
            raise SystemExit("--write-profiles is for the dlib embedder only (the shipped one)")
        entries = []
        for entry in calibration:
            t = entry["fmr_target"]
            entries.append(
                {
                    "name": f"dlib-lfw-fmr{t:.0e}".replace("e-0", "e-"),
                    "embedder": "dlib_resnet_v1",
                    "metric": "euclidean",
                    "threshold": round(entry["threshold"], 4),
                    "fmr_target": t,
                    "ci": [
                        round(entry["identity_bootstrap_ci"][0], 4),
                        round(entry["identity_bootstrap_ci"][1], 4),
                    ],
                    "population": population
                    + " (ci: identity-level bootstrap; FMR on East-Asian faces is far higher, "
                    "see models/cards/dlib_resnet_v1.md)",
                    "n_genuine": result["calibration"]["n_genuine"],
                    "n_impostor": result["calibration"]["n_impostor"],
                    "command": command,
                    "default": t == 1e-3,
                }
            )
        write_profiles(entries)
        print(f"wrote {len(entries)} profiles to {PROFILES}", file=sys.stderr)

    # 3a. East-Asian slice ----------
    ea: dict[str, Any] = {}
    for clean in (True, False):
        pairs = ea_pairs(ea_rows, clean)
        pa = [p[0] for p in pairs]
        pb = [p[1] for p in pairs]
        ok_a = emb.ok[[row[p] for p in pa]]
        ok_b = emb.ok[[row[p] for p in pb]]
        va = emb.vectors[[row[p] for p in pa]].astype(np.float64)
        vb = emb.vectors[[row[p] for p in pb]].astype(np.float64)
        if higher:
            scores = (va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        else:
            scores = np.linalg.norm(va - vb, axis=1)
        scores[~(ok_a & ok_b)] = np.nan
        same = np.array([p[2] for p in pairs])
        kind = np.array([p[3] for p in pairs])
        part: dict[str, Any] = {
            "pairs": len(pairs),
            "images_without_face": int(sum(not emb.ok[row[p]] for p in ea_images)),
        }
        for t, thr in thresholds.items():
            by: dict[str, Any] = {}
            for label, sel in (
                ("all", np.ones(len(pairs), bool)),
                ("women", kind == "FF"),
                ("men", kind == "MM"),
                ("cross_sex", kind == "FM"),
            ):
                by[label] = rates_at(scores[sel], same[sel], thr, higher)
            part[f"fmr_target_{t:g}"] = by
        have = ~np.isnan(scores)
        own = calibrate(
            scores[have & same],
            scores[have & ~same],
            higher_is_match=higher,
            fmr_targets=(1e-2, 1e-3),
            seed=0,
        )
        part["own_threshold"] = {
            f"{e.fmr_target:g}": {"threshold": e.threshold, "ci": list(e.ci), "tar": e.tar}
            for e in own.thresholds
        }
        part["roc_auc"] = own.roc_auc
        if clean:
            ea_gen, ea_imp = scores[have & same], scores[have & ~same]
            curves.append((f"{emb.embedder}: East-Asian slice, all pairs", ea_gen, ea_imp, higher))
            for t, thr in thresholds.items():
                r = rates_at(scores, same, thr, higher)
                points.append((f"same threshold (FMR-{t:g}) on East-Asian", r["fmr"], 1 - r["tar"]))
        ea["clean" if clean else "raw"] = part
    result["east_asian"] = ea
    for t in TARGETS:
        c = ea["clean"][f"fmr_target_{t:g}"]
        print(
            f"  East-Asian at FMR-{t:g} profile: FMR women {pct(c['women']['fmr'])} "
            f"({c['women']['false_matches']}/{c['women']['n_impostor']}), men "
            f"{pct(c['men']['fmr'])} ({c['men']['false_matches']}/{c['men']['n_impostor']}); "
            f"TAR women {pct(c['women']['tar'])}, men {pct(c['men']['tar'])}",
            file=sys.stderr,
        )

    # 3b. the printed poster woman vs a live woman ----------
    pad = DATA / "pad" / "silent_face_samples" / "images" / "sample"
    pad_emb = embed_images(["image_T1.jpg", "image_F1.jpg"], pad, embedder=args.embedder, tag="pad")
    poster = float(pair_scores(pad_emb, [Pair("image_T1.jpg", "image_F1.jpg", False)])[0])
    result["poster_pair"] = {
        "score": poster,
        "matches_at": {
            f"{t:g}": bool(decide(np.array([poster]), thr, higher)[0])
            for t, thr in thresholds.items()
        },
    }
    print(f"  image_T1 vs poster in image_F1: {poster:.4f}", file=sys.stderr)

    # 3c. other data sets at the profiles ----------
    result["celebrities13"] = eval_set(
        "celebrities13", FACES / "celebrities13", celeb_pairs(), args.embedder, thresholds
    )
    result["face_recognition_examples"] = eval_set(
        "fre", FACES / "face_recognition_examples", fre_pairs(), args.embedder, thresholds
    )
    for name in ("celebrities13", "face_recognition_examples"):
        r = result[name]
        at = r["at_profile"]["0.001"]
        print(
            f"  {name}: {r['pairs']} pairs, AUC {r['roc_auc']:.5f}, EER {pct(r['eer'])}; at "
            f"FMR-1e-3 profile accuracy {pct(at['accuracy'])}, FMR {pct(at['fmr'])}, "
            f"TAR {pct(at['tar'])}",
            file=sys.stderr,
        )

    OUT.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^a-z0-9_]+", "_", emb.embedder)
    det = OUT / f"face_calibrate_det_{tag}.png"
    det_plot(
        curves, str(det), f"DET, {emb.embedder}: calibration population vs East-Asian slice", points
    )
    result["det_png"] = str(det.relative_to(ROOT))
    out = OUT / f"face_calibrate_{re.sub(r'[^a-z0-9_]+', '_', emb.embedder)}.json"
    out.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float))
    print(f"written: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
