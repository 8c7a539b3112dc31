"""YelpChi: the project's prior propagation against the UGFraud peers, in one run.

    python benchmarks/graph_yelpchi.py --data ../shared/data/graph/yelpchi \
        --peers-python /work/venvs/ugfraud/bin/python

Loads metadata.gz (``user_id prod_id rating label date``; label -1 = spam) and priors.pkl
(SpEagle's user, review and product priors), runs :func:`kyc.graph.propagate.propagate_priors`
on the user-product graph with those priors, starts ``graph_yelpchi_peers.py`` in the peers'
venv (FRAUDAR, SpEagle, fBox, SVD, GANG, ZooBP), and scores every method with the same code:
user-level ROC AUC and average precision against "the user wrote at least one spam review",
and review-level figures where a method scores reviews. Writes ``<out>/results.json`` and
prints one Markdown table. ``--reuse`` reads peer JSON from an earlier run instead of
running them again (the table says so).
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_common import ROOT, average_precision, roc_auc
from kyc.graph.propagate import propagate_priors


def load(data: Path) -> dict[str, Any]:
    """Arrays of the YelpChi copy: edge user/product indices, labels and the three priors."""
    folder = data / "UGFraud" / "Yelp_Data" / "YelpChi"
    if not folder.is_dir():
        folder = data
    us, ps, labels = [], [], []
    with gzip.open(folder / "metadata.gz", "rt") as fh:
        for line in fh:
            u, p, _r, lab, _d = line.split()
            us.append(u)
            ps.append(p)
            labels.append(int(lab))
    with (folder / "priors.pkl").open("rb") as fh:
        priors = pickle.load(fh)
    users = sorted(set(us), key=int)
    prods = sorted(set(ps), key=int)
    uix = {u: k for k, u in enumerate(users)}
    pix = {p: k for k, p in enumerate(prods)}
    ui = np.array([uix[u] for u in us], dtype=np.int64)
    pi = np.array([pix[p] for p in ps], dtype=np.int64)
    spam = np.array(labels) == -1
    y = np.zeros(len(users), dtype=bool)
    np.logical_or.at(y, ui, spam)
    return {
        "users": users, "prods": prods, "ui": ui, "pi": pi, "review_spam": spam, "user_spam": y,
        "user_prior": np.array([priors[0][u] for u in users]),
        "edge_prior": np.array([priors[1][(u, p)] for u, p in zip(us, ps, strict=True)]),
        "prod_prior": np.array([priors[2][p] for p in prods]),
        "review_keys": [f"{u} {p}" for u, p in zip(us, ps, strict=True)],
        "folder": str(folder),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def score(d: dict[str, Any], name: str, user: np.ndarray | None, review: np.ndarray | None,
          *, mask: np.ndarray | None = None, note: str = "", seconds: float | None = None
          ) -> dict[str, Any]:
    """Metrics of one method (users restricted to ``mask`` when given)."""
    row: dict[str, Any] = {"method": name, "note": note, "seconds": seconds}
    if user is not None:
        m = np.ones(user.size, dtype=bool) if mask is None else mask
        y = d["user_spam"][m]
        row.update(n_users=int(m.sum()), user_auc=roc_auc(y, user[m]),
                   user_ap=average_precision(y, user[m]))
    if review is not None:
        row.update(review_auc=roc_auc(d["review_spam"], review),
                   review_ap=average_precision(d["review_spam"], review))
    return row


def from_peer(d: dict[str, Any], res: dict[str, Any], key: str = "user"
              ) -> tuple[np.ndarray, np.ndarray]:
    """Peer user scores as an array in the driver's user order, and the mask of scored users."""
    scores = res[key]
    arr = np.zeros(len(d["users"]))
    mask = np.zeros(len(d["users"]), dtype=bool)
    for k, u in enumerate(d["users"]):
        v = scores.get(u)
        if v is not None:
            arr[k] = v
            mask[k] = True
    return arr, mask


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the table, write results.json."""
    ap = argparse.ArgumentParser(description="YelpChi: prior propagation vs UGFraud peers")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/graph/yelpchi")
    ap.add_argument("--peers-python", default="/work/venvs/ugfraud/bin/python")
    ap.add_argument("--peers", default="speagle,gang,fraudar,fbox,svd,zoobp")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/yelpchi")
    ap.add_argument("--reuse", action="store_true", help="read peer JSON from --out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    d = load(args.data)
    ui, pi = d["ui"], d["pi"]
    n_users = len(d["users"])
    print(f"YelpChi copy: {n_users} users, {len(d['prods'])} products, {ui.size} reviews, "
          f"{d['user_spam'].mean():.1%} spam users, {d['review_spam'].mean():.1%} spam reviews",
          flush=True)

    peer_proc = None
    if not args.reuse and args.peers:
        cmd = [args.peers_python, str(ROOT / "benchmarks/graph_yelpchi_peers.py"),
               "--data", str(args.data), "--out", str(args.out), "--peers", args.peers,
               "--seed", str(args.seed)]
        peer_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    res = propagate_priors(ui, pi, user_prior=d["user_prior"], edge_prior=d["edge_prior"],
                           n_users=n_users, n_items=len(d["prods"]))
    t_ours = time.perf_counter() - t0
    ours = res.user_scores
    rows.append(score(d, "kyc propagate_priors (alpha=5, damping=1)", ours, ours[ui],
                      seconds=round(t_ours, 3),
                      note=f"EM, {res.iterations} iterations, converged={res.converged}"))
    nb = _logit(d["user_prior"]) + np.bincount(ui, weights=_logit(d["edge_prior"]),
                                               minlength=n_users)
    rows.append(score(d, "ablation: same priors, no propagation", nb, nb[ui],
                      note="logit(user prior) + sum of logit(review priors)"))
    rows.append(score(d, "raw user priors", d["user_prior"], d["edge_prior"],
                      note="review row: raw review priors"))
    deg = np.bincount(ui, minlength=n_users).astype(float)
    rows.append(score(d, "user degree (structure only)", deg, None))

    if peer_proc is not None:
        _, err = peer_proc.communicate()
        if peer_proc.returncode != 0:
            print(err[-3000:], file=sys.stderr)
    peers_meta: dict[str, Any] = {}
    for name in [p.strip() for p in args.peers.split(",") if p.strip()]:
        path = args.out / f"{name}.json"
        if not path.is_file():
            rows.append({"method": f"UGFraud {name}", "note": "no output"})
            continue
        pres = json.loads(path.read_text(encoding="utf-8"))
        peers_meta[name] = {k: v for k, v in pres.items() if k not in ("user", "review",
                                                                       "user_flag_only")}
        if pres.get("status") != "ok":
            rows.append({"method": f"UGFraud {name}", "note": f"failed: {pres.get('error')}",
                         "seconds": pres.get("seconds")})
            continue
        arr, mask = from_peer(d, pres)
        review = None
        if "review" in pres:
            review = np.array([pres["review"].get(k, 0.0) for k in d["review_keys"]])
        if mask.all():
            rows.append(score(d, f"UGFraud {name}", arr, review, seconds=pres.get("seconds"),
                              note=pres.get("params", "")))
        else:  # SVD scores a held-out half only: compare on that half
            rows.append(score(d, f"UGFraud {name}", arr, review, mask=mask,
                              seconds=pres.get("seconds"), note=pres.get("params", "")))
            rows.append(score(d, f"kyc propagate_priors on {name}'s held-out users", ours, None,
                              mask=mask, note="same users as the row above"))
        if "user_flag_only" in pres:
            arr2, _ = from_peer(d, pres, "user_flag_only")
            rows.append(score(d, f"UGFraud {name}, flags only", arr2, None,
                              note="structure alone, no priors"))

    # robustness: other settings of the two knobs, and two random halves of the users
    sweep = []
    for alpha in (1.0, 5.0, 20.0, 100.0):
        for damping in (0.5, 1.0):
            r = propagate_priors(ui, pi, user_prior=d["user_prior"], edge_prior=d["edge_prior"],
                                 alpha=alpha, damping=damping)
            sweep.append({"alpha": alpha, "damping": damping,
                          "user_auc": roc_auc(d["user_spam"], r.user_scores),
                          "user_ap": average_precision(d["user_spam"], r.user_scores)})
    rng = np.random.default_rng(args.seed)
    half = rng.random(n_users) < 0.5
    halves = {}
    for label, m in (("half A", half), ("half B", ~half)):
        halves[label] = {
            "kyc": (roc_auc(d["user_spam"][m], ours[m]),
                    average_precision(d["user_spam"][m], ours[m])),
        }
        for row_name, arr in (("ablation", nb),):
            halves[label][row_name] = (roc_auc(d["user_spam"][m], arr[m]),
                                       average_precision(d["user_spam"][m], arr[m]))
        sp = args.out / "speagle.json"
        if sp.is_file():
            pres = json.loads(sp.read_text(encoding="utf-8"))
            if pres.get("status") == "ok":
                arr, _ = from_peer(d, pres)
                halves[label]["speagle"] = (roc_auc(d["user_spam"][m], arr[m]),
                                            average_precision(d["user_spam"][m], arr[m]))

    # paired bootstrap over users: is the lead over SpEagle more than resampling noise?
    boot: dict[str, Any] = {}
    sp = args.out / "speagle.json"
    if sp.is_file() and json.loads(sp.read_text(encoding="utf-8")).get("status") == "ok":
        sp_arr, _ = from_peer(d, json.loads(sp.read_text(encoding="utf-8")))
        rng_b = np.random.default_rng(args.seed + 1)
        diffs = []
        for _ in range(args.bootstrap):
            idx = rng_b.integers(0, n_users, n_users)
            yb = d["user_spam"][idx]
            diffs.append((roc_auc(yb, ours[idx]) - roc_auc(yb, sp_arr[idx]),
                          average_precision(yb, ours[idx]) - average_precision(yb, sp_arr[idx])))
        da = np.array(diffs)
        boot = {"n": args.bootstrap,
                "auc_diff_ci95": np.percentile(da[:, 0], [2.5, 97.5]).tolist(),
                "ap_diff_ci95": np.percentile(da[:, 1], [2.5, 97.5]).tolist(),
                "auc_diff_share_positive": float((da[:, 0] > 0).mean()),
                "ap_diff_share_positive": float((da[:, 1] > 0).mean())}

    print()
    print("| method | users | user AUC | user AP | review AUC | review AP | s | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r_ in rows:
        def f(k: str, row: dict[str, Any] = r_) -> str:
            v = row.get(k)
            return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
        print(f"| {r_['method']} | {r_.get('n_users', '')} | {f('user_auc')} | {f('user_ap')} | "
              f"{f('review_auc')} | {f('review_ap')} | {f('seconds')} | {r_.get('note', '')} |")
    print("\nsettings sweep (kyc propagate_priors, user AUC / AP):")
    for s_ in sweep:
        print(f"  alpha={s_['alpha']:g} damping={s_['damping']:g}: "
              f"{s_['user_auc']:.4f} / {s_['user_ap']:.4f}")
    print("\nrandom halves of the users (AUC / AP):")
    for label, vals in halves.items():
        print("  " + label + ": " + ", ".join(f"{k} {a:.4f} / {b:.4f}" for k, (a, b) in
                                              vals.items()))
    if boot:
        print(f"\npaired bootstrap over users ({boot['n']} resamples), kyc minus SpEagle: "
              f"user AUC 95 % CI [{boot['auc_diff_ci95'][0]:+.4f}, {boot['auc_diff_ci95'][1]:+.4f}]"
              f" (positive in {boot['auc_diff_share_positive']:.0%}), user AP 95 % CI "
              f"[{boot['ap_diff_ci95'][0]:+.4f}, {boot['ap_diff_ci95'][1]:+.4f}] "
              f"(positive in {boot['ap_diff_share_positive']:.0%})")
    out = {"bootstrap_vs_speagle": boot, "rows": rows, "sweep": sweep, "halves": halves,
           "peers": peers_meta, "reused_peer_outputs": bool(args.reuse), "data": d["folder"]}
    (args.out / "results.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
