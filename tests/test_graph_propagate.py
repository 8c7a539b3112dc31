"""Tests for prior propagation over a bipartite graph (kyc.graph.propagate)."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from kyc.errors import ConfigError
from kyc.graph.propagate import PropagationResult, propagate_priors


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """300 accounts, 40 items; 30 fraudsters concentrate on 3 target items, with noisy priors."""
    rng = np.random.default_rng(seed)
    n_u, n_i = 300, 40
    fraud = np.zeros(n_u, dtype=bool)
    fraud[:30] = True
    users, items = [], []
    for u in range(n_u):
        k = int(rng.integers(1, 4))
        if fraud[u]:
            picks = rng.choice(3, size=min(k, 3), replace=False)
        else:
            picks = rng.choice(np.arange(n_i), size=k, replace=False)
        users += [u] * len(picks)
        items += list(picks)
    u_arr, i_arr = np.array(users), np.array(items)
    # priors only weakly informative: fraud 0.3 +- noise, normal 0.2 +- noise
    up = np.clip(np.where(fraud, 0.3, 0.2) + rng.normal(0, 0.12, n_u), 0.01, 0.99)
    ep = np.clip(np.where(fraud[u_arr], 0.3, 0.2) + rng.normal(0, 0.12, u_arr.size), 0.01, 0.99)
    return u_arr, i_arr, up, ep, fraud


def test_propagation_lifts_accounts_that_share_fraud_targets() -> None:
    u, i, up, ep, fraud = _planted()
    res = propagate_priors(u, i, user_prior=up, edge_prior=ep)
    assert isinstance(res, PropagationResult) and res.converged
    base = np.log(up / (1 - up)) + np.bincount(u, weights=np.log(ep / (1 - ep)),
                                               minlength=up.size)
    assert _auc(fraud, res.user_scores) > _auc(fraud, base) + 0.05
    # the target items get the highest learned rates
    assert set(np.argsort(-res.item_rates)[:3].tolist()) == {0, 1, 2}
    assert res.user_scores.shape == (300,) and res.edge_scores.shape == u.shape
    assert 0.0 < res.base_rate < 1.0


def test_without_graph_signal_scores_follow_the_priors() -> None:
    # each account has its own item: nothing to propagate, ranking = naive-Bayes of priors
    up = np.array([0.1, 0.5, 0.9, 0.3])
    ep = np.array([0.2, 0.2, 0.2, 0.2])
    res = propagate_priors(np.arange(4), np.arange(4), user_prior=up, edge_prior=ep)
    assert np.argsort(res.user_scores).tolist() == [0, 3, 1, 2]


def test_no_priors_means_no_opinion() -> None:
    res = propagate_priors(np.array([0, 1, 1]), np.array([0, 0, 1]))
    assert np.allclose(res.user_scores, 0.0, atol=1e-6)


def test_deterministic_and_to_dict_is_json() -> None:
    u, i, up, ep, _ = _planted(1)
    a = propagate_priors(u, i, user_prior=up, edge_prior=ep)
    b = propagate_priors(u, i, user_prior=up, edge_prior=ep)
    assert np.array_equal(a.user_scores, b.user_scores)
    json.dumps(a.to_dict())


def test_empty_graph() -> None:
    res = propagate_priors(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), n_users=3,
                           n_items=0, user_prior=np.array([0.2, 0.5, 0.8]))
    assert res.user_scores.shape == (3,) and res.user_scores[2] > res.user_scores[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"users": [0, 1], "items": [0]}, "same length"),
        ({"users": [0.5], "items": [0]}, "integer"),
        ({"users": [-1], "items": [0]}, "non-negative"),
        ({"users": [3], "items": [0], "n_users": 2}, "out of range"),
        ({"users": [0], "items": [0], "user_prior": [1.5]}, "probabilities"),
        ({"users": [0], "items": [0], "edge_prior": [float("nan")]}, "NaN"),
        ({"users": [0], "items": [0], "edge_prior": [0.1, 0.2]}, "shape"),
        ({"users": [0], "items": [0], "alpha": 0.0}, "alpha"),
    ],
)
def test_bad_input_raises_config_error(kwargs: dict[str, object], needle: str) -> None:
    users = np.asarray(kwargs.pop("users"))
    items = np.asarray(kwargs.pop("items"))
    with pytest.raises(ConfigError, match=needle):
        propagate_priors(users, items, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_yelpchi_beats_priors_without_propagation(data_dir: Path) -> None:
    folder = data_dir / "graph" / "yelpchi" / "UGFraud" / "Yelp_Data" / "YelpChi"
    if not folder.is_dir():
        pytest.skip(f"YelpChi copy not found under {folder}")
    us, ps, lab = [], [], []
    with gzip.open(folder / "metadata.gz", "rt") as fh:
        for line in fh:
            u, p, _r, label, _d = line.split()
            us.append(u)
            ps.append(p)
            lab.append(label == "-1")
    with (folder / "priors.pkl").open("rb") as fh:
        priors = pickle.load(fh)
    users = sorted(set(us), key=int)
    prods = sorted(set(ps), key=int)
    uix = {u: k for k, u in enumerate(users)}
    pix = {p: k for k, p in enumerate(prods)}
    ui = np.array([uix[u] for u in us])
    pi = np.array([pix[p] for p in ps])
    y = np.zeros(len(users), dtype=bool)
    np.logical_or.at(y, ui, np.array(lab))
    up = np.array([priors[0][u] for u in users])
    ep = np.array([priors[1][(u, p)] for u, p in zip(us, ps, strict=True)])
    res = propagate_priors(ui, pi, user_prior=up, edge_prior=ep)
    from scipy.stats import rankdata

    def auc(s: np.ndarray) -> float:
        r = rankdata(s)
        n1 = int(y.sum())
        return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * (y.size - n1)))

    lg = np.log(np.clip(ep, 1e-6, 1 - 1e-6) / (1 - np.clip(ep, 1e-6, 1 - 1e-6)))
    no_prop = np.log(up / (1 - up)) + np.bincount(ui, weights=lg, minlength=len(users))
    assert auc(res.user_scores) > auc(no_prop) + 0.002
    assert auc(res.user_scores) > 0.66
