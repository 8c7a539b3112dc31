"""Run the UGFraud peers on the YelpChi copy and write their raw scores as JSON.

Runs in a separate virtual environment that holds UGFraud 0.1.1.3 (never the project's):

    python3 -m venv /work/venvs/ugfraud
    /work/venvs/ugfraud/bin/pip install UGFraud==0.1.1.3 numpy scipy networkx scikit-learn
    # numpy 2: GANG.classify needs float(r) -> float(r[0]) at GANG.py lines 153 and 155;
    # this script reads GANG's posterior vector directly, so it runs without that patch.

It is started by ``benchmarks/graph_yelpchi.py`` (which computes every metric itself from
metadata.gz); on its own:

    /work/venvs/ugfraud/bin/python benchmarks/graph_yelpchi_peers.py \
        --data ../shared/data/graph/yelpchi --out benchmarks/out/yelpchi

Deviations from UGFraud's demo scripts, all to make the comparison fair and repeatable:
* ratings are ``None`` in this copy; the demo draws a random rating per edge, this script
  gives every edge rating 1 (only SVD and ZooBP read ratings);
* the demo stores spam reviews as label 0 and scores subsets; here every user is scored and
  the driver computes metrics from metadata.gz;
* FRAUDAR's demo runner indexes a hard-coded user and drops products; this script builds the
  user x product matrix directly and calls UGFraud's ``detect_blocks`` on it;
* GANG's ``classify`` passes scores through ``scale_value``, whose for/else bug keeps only a
  handful of users: the raw posterior vector is used instead (same ranking, all users);
* SVD is supervised (an SVM trained on a random half of the users); its probability of the
  *spam* class is kept (the demo keeps the other class), scored on the held-out half only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np


def _load(data: Path) -> tuple[Any, dict[str, Any]]:
    import networkx as nx

    folder = data / "UGFraud" / "Yelp_Data" / "YelpChi"
    if not folder.is_dir():
        folder = data
    edges: list[tuple[str, str, int]] = []
    with gzip.open(folder / "metadata.gz", "rt") as fh:
        for line in fh:
            u, p, _rating, label, _date = line.split()
            edges.append((u, p, int(label)))
    with (folder / "priors.pkl").open("rb") as fh:
        priors = pickle.load(fh)
    user_spam: dict[str, int] = {}
    for u, _p, lab in edges:
        user_spam[u] = max(user_spam.get(u, 0), int(lab == -1))
    g = nx.Graph()
    for u in priors[0]:
        g.add_node(u, prior=priors[0][u], types="user", label=user_spam[u])
    for p in priors[2]:
        g.add_node(p, prior=priors[2][p], types="prod")
    for u, p, lab in edges:
        # UGFraud convention (read by SVD's split): label 0 marks a spam review
        g.add_edge(u, p, rating=1, label=0 if lab == -1 else 1, prior=priors[1][(u, p)],
                   types="review", date="None")
    return g, {"priors": priors, "edges": edges}


def run_speagle(g: Any) -> dict[str, Any]:
    from UGFraud.Detector.SpEagle import SpEagle

    numerical_eps, eps = 1e-5, 0.1
    ur = np.log(np.array([[1 - numerical_eps, numerical_eps], [numerical_eps, 1 - numerical_eps]]))
    rp = np.log(np.array([[1 - eps, eps], [eps, 1 - eps]]))
    potentials = {"u_r": ur, "r_u": ur, "r_p": rp, "p_r": rp}
    model = SpEagle(g, potentials, message=None, max_iters=4)
    model.schedule(schedule_type="bfs")
    model.run_bp(start_iter=0, max_iters=2, tol=1e-3)
    users, reviews, _ = model.classify()
    return {"user": {k: float(v) for k, v in users.items()},
            "review": {f"{u} {p}": float(v) for (u, p), v in reviews.items()},
            "params": "demo settings: eps=0.1, numerical_eps=1e-5, bfs schedule, 2 BP iterations"}


def run_gang(g: Any, user_label: dict[str, int]) -> dict[str, Any]:
    from UGFraud.Detector.GANG import GANG

    model = GANG(g, user_label, 0.1, nor_flg=True, sup_flg=False)
    model.pu_lbp(1000)
    vec = np.asarray(model.res_pu_spam_post_vector).ravel()
    n_prod = len(model.p_priors)
    users = {str(i + n_prod): float(v) for i, v in enumerate(vec[n_prod:])}
    return {"user": users, "params": "demo settings: unsupervised (sup_flg=False), nor_flg=True, "
            "1000 LBP iterations; raw posterior vector"}


def run_fraudar(g: Any) -> dict[str, Any]:
    from scipy import sparse
    from UGFraud.Detector.Fraudar import detect_blocks, logWeightedAveDegree

    users = [n for n, d in g.nodes(data=True) if d["types"] == "user"]
    prods = [n for n, d in g.nodes(data=True) if d["types"] == "prod"]
    ui = {u: k for k, u in enumerate(users)}
    pi = {p: k for k, p in enumerate(prods)}
    rows, cols = [], []
    for u in users:
        for p in g[u]:
            rows.append(ui[u])
            cols.append(pi[p])
    m = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), len(prods)))
    m = (m > 0).astype("int")
    blocks = detect_blocks(m, logWeightedAveDegree)
    score = {u: 0.0 for u in users}
    seen: set[int] = set()
    for (row_set, _col_set), density in blocks:
        for r in row_set:
            if r not in seen:
                seen.add(r)
                score[users[r]] = float(density)
    return {"user": score, "blocks": len(blocks),
            "params": "detect_blocks with logWeightedAveDegree (demo's multiple=0); a user's "
                      "score is the density of the first block holding it, 0 if none"}


def run_fbox(g: Any, priors: list[dict[Any, float]]) -> dict[str, Any]:
    from UGFraud.Detector.fBox import fBox

    model = fBox(g)
    det_users, _ = model.run(20, 50)
    flagged = {u for lst in det_users.values() for u in lst}
    users = {u: (priors[0][u] if u in flagged else 1e-7) for u in priors[0]}
    flag_only = {u: (1.0 if u in flagged else 0.0) for u in priors[0]}
    return {"user": users, "user_flag_only": flag_only,
            "params": "demo settings tau=20, k=50; score = user prior if flagged else 1e-7 "
                      "(the demo's rule); user_flag_only = structure alone"}


def run_svd(g: Any, seed: int) -> dict[str, Any]:
    from UGFraud.Detector.SVD import SVD

    np.random.seed(seed)
    model = SVD(g)
    out = model.run(0.9)
    ids, proba = model.evaluate_SVD(out, g)
    # evaluate_SVD returns P(class -1) (non-spam) in column 0: keep 1 - that = P(spam)
    users = {str(int(k)): float(1.0 - v) for k, v in zip(ids, proba, strict=True)}
    return {"user": users, "params": "percent=0.9; SVM trained on a random half of users "
            "(supervised, labels from the graph); scores on the held-out half only"}


def run_zoobp(g: Any) -> dict[str, Any]:
    from UGFraud.Detector.ZooBP import ZooBP

    model = ZooBP(g, 0.01, np.array([[0.5, -0.5], [-0.5, 0.5]]))
    users, _ = model.run()
    return {"user": {str(k): float(v) for k, v in users.items()},
            "params": "demo settings ep=0.01, H=[[.5,-.5],[-.5,.5]]"}


def main(argv: list[str] | None = None) -> int:
    """Run the peers named in ``--peers`` and write ``<out>/<peer>.json`` for each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--peers", default="speagle,gang,fraudar,fbox,svd,zoobp")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    g, extra = _load(args.data)
    user_label = {n: d["label"] for n, d in g.nodes(data=True) if d["types"] == "user"}
    runners = {
        "speagle": lambda: run_speagle(g),
        "gang": lambda: run_gang(g, user_label),
        "fraudar": lambda: run_fraudar(g),
        "fbox": lambda: run_fbox(g, extra["priors"]),
        "svd": lambda: run_svd(g, args.seed),
        "zoobp": lambda: run_zoobp(g),
    }
    import UGFraud

    version = getattr(UGFraud, "__version__", "0.1.1.3")
    for name in [p.strip() for p in args.peers.split(",") if p.strip()]:
        t0 = time.perf_counter()
        try:
            res = runners[name]()
            res["status"] = "ok"
        except Exception as exc:  # a peer that crashes is reported, the rest go on
            res = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc(limit=3)}
        res["seconds"] = round(time.perf_counter() - t0, 2)
        res["peer"] = name
        res["ugfraud"] = version
        (args.out / f"{name}.json").write_text(json.dumps(res), encoding="utf-8")
        print(f"{name}: {res['status']} in {res['seconds']} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
