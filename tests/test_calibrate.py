"""Tests for kyc.calibrate and the `kyc calibrate` command."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from kyc.calibrate import (
    CalibrationResult,
    all_pair_scores,
    calibrate,
    equal_error_rate,
    error_rates,
    pair_scores,
    roc_auc,
    scores_from_pairs,
)
from kyc.cli import main
from kyc.errors import CalibrationError

# impostor distances ~ Normal(1.0, 0.1), genuine ~ Normal(0.45, 0.1): true quantiles known
IMP_MU, IMP_SD = 1.0, 0.1
GEN_MU, GEN_SD = 0.45, 0.1


def _synthetic(n_gen: int, n_imp: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(GEN_MU, GEN_SD, n_gen), rng.normal(IMP_MU, IMP_SD, n_imp)


@pytest.fixture(scope="module")
def result() -> CalibrationResult:
    gen, imp = _synthetic(5_000, 400_000, seed=1)
    return calibrate(gen, imp, source="synthetic normal")


def test_threshold_recovers_the_known_impostor_quantile(result: CalibrationResult) -> None:
    for est in result.thresholds:
        true_q = IMP_MU + IMP_SD * norm.ppf(est.fmr_target)
        width = est.ci[1] - est.ci[0]
        # the point estimate is close to the true quantile on the scale of its interval
        assert abs(est.threshold - true_q) < 2 * width, (est.fmr_target, est.ci, true_q)
        assert abs(est.threshold - true_q) < 0.01
        assert est.ci[0] <= est.threshold <= est.ci[1]


def test_threshold_interval_covers_the_true_quantile_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(123)
    targets = (1e-2, 1e-3)
    covered = dict.fromkeys(targets, 0)
    runs = 200
    for i in range(runs):
        imp = rng.normal(IMP_MU, IMP_SD, 20_000)
        res = calibrate([0.4], imp, fmr_targets=targets, n_bootstrap=200, seed=i)
        for t in targets:
            q = IMP_MU + IMP_SD * norm.ppf(t)
            lo, hi = res.at(t).ci
            covered[t] += lo <= q <= hi
    for t in targets:
        # binomial(200, 0.95) lies in [181, 197] with probability > 99.8 %
        assert 0.88 * runs <= covered[t] <= 0.99 * runs, (t, covered[t])


def test_achieved_fmr_never_exceeds_target_on_the_data(result: CalibrationResult) -> None:
    for est in result.thresholds:
        assert est.fmr <= est.fmr_target
        assert est.false_matches == round(est.fmr * result.n_impostor)
        assert est.fmr_ci[0] <= est.fmr <= est.fmr_ci[1]
        # with continuous scores the threshold uses its whole budget of false matches
        assert est.false_matches == math.floor(est.fmr_target * result.n_impostor)


def test_threshold_transfers_to_fresh_samples_of_the_same_population(
    result: CalibrationResult,
) -> None:
    rng = np.random.default_rng(99)
    fresh_imp = rng.normal(IMP_MU, IMP_SD, 2_000_000)
    fresh_gen = rng.normal(GEN_MU, GEN_SD, 200_000)
    for est in result.thresholds:
        fresh_fmr = float(np.mean(fresh_imp <= est.threshold))
        # the true FMR at the chosen threshold lies in the exact interval ...
        assert est.fmr_ci[0] * 0.8 <= fresh_fmr <= est.fmr_ci[1] * 1.2, (est, fresh_fmr)
        # ... and the threshold interval brackets the target on new data
        fmr_lo = float(np.mean(fresh_imp <= est.ci[0]))
        fmr_hi = float(np.mean(fresh_imp <= est.ci[1]))
        assert fmr_lo <= est.fmr_target * 1.1 and fmr_hi >= est.fmr_target * 0.9
        fresh_tar = float(np.mean(fresh_gen <= est.threshold))
        assert est.tar_ci[0] - 0.005 <= fresh_tar <= est.tar_ci[1] + 0.005


def test_stricter_targets_give_lower_distance_thresholds(result: CalibrationResult) -> None:
    ests = sorted(result.thresholds, key=lambda e: e.fmr_target)
    thresholds = [e.threshold for e in ests]
    tars = [e.tar for e in ests]
    fmrs = [e.fmr for e in ests]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) == len(thresholds)
    assert tars == sorted(tars) and fmrs == sorted(fmrs)


def test_similarities_mirror_distances() -> None:
    gen, imp = _synthetic(2_000, 100_000, seed=3)
    dist = calibrate(gen, imp, fmr_targets=(1e-2, 1e-3), seed=5)
    sim = calibrate(-gen, -imp, higher_is_match=True, fmr_targets=(1e-2, 1e-3), seed=5)
    for d, s in zip(dist.thresholds, sim.thresholds, strict=True):
        assert s.threshold == pytest.approx(-d.threshold)
        assert s.ci == pytest.approx((-d.ci[1], -d.ci[0]))
        assert (s.fmr, s.tar, s.false_matches) == (d.fmr, d.tar, d.false_matches)
    assert sim.roc_auc == pytest.approx(dist.roc_auc)
    assert sim.eer == pytest.approx(dist.eer)
    assert sim.higher_is_match and sim.metric_kind == "similarity"


def test_bootstrap_shortcut_matches_brute_force_resampling() -> None:
    # the order-statistic bootstrap must give the same spread as resampling for real
    _, imp = _synthetic(10, 20_000, seed=7)
    gen = np.array([0.4, 0.5])
    fast = calibrate(gen, imp, fmr_targets=(1e-2,), n_bootstrap=2_000, seed=1).at(1e-2)
    rng = np.random.default_rng(2)
    brute = []
    for _ in range(400):
        sample = np.sort(rng.choice(imp, imp.size, replace=True))
        brute.append((sample[199] + sample[200]) / 2)  # same rule: k = 200 allowed
    lo, hi = np.percentile(brute, [2.5, 97.5])
    width = hi - lo
    assert fast.ci[0] == pytest.approx(lo, abs=0.15 * width)
    assert fast.ci[1] == pytest.approx(hi, abs=0.15 * width)


def test_ties_at_the_boundary_are_not_split() -> None:
    # integer-valued scores: the threshold must not accept part of a tied group
    imp = np.repeat(np.arange(10, dtype=float), 100)  # 1,000 scores, 100 per value
    gen = np.zeros(50)
    est = calibrate(gen, imp, fmr_targets=(0.15,), n_bootstrap=50).at(0.15)
    assert est.fmr <= 0.15
    assert est.false_matches == 100  # only the value 0 fits into 150 allowed
    assert 0.0 <= est.threshold < 1.0


def test_result_is_reproducible_and_serialisable(result: CalibrationResult) -> None:
    gen, imp = _synthetic(5_000, 400_000, seed=1)
    again = calibrate(gen, imp, source="synthetic normal")
    assert again == result
    d = json.loads(json.dumps(result.to_dict()))
    assert d["source"] == "synthetic normal"
    assert d["n_impostor"] == 400_000 and len(d["thresholds"]) == 3
    assert d["thresholds"][1]["fmr_target"] == 1e-3
    with pytest.raises(AttributeError):
        result.source = "x"  # type: ignore[misc]


def test_at_unknown_target_raises(result: CalibrationResult) -> None:
    with pytest.raises(CalibrationError, match="not calibrated"):
        result.at(0.05)


def test_too_few_impostors_are_refused_with_the_number_needed() -> None:
    gen, imp = _synthetic(100, 10_000, seed=2)
    with pytest.raises(CalibrationError, match=r"need at least 30000 impostor pairs"):
        calibrate(gen, imp)  # FMR 1e-4 needs 3/1e-4 impostor pairs
    # the targets it can resolve work
    assert calibrate(gen, imp, fmr_targets=(1e-2, 1e-3)).at(1e-3).false_matches == 10


@pytest.mark.parametrize(
    ("genuine", "impostor", "kwargs", "message"),
    [
        ([], [1.0] * 1000, {}, "no genuine scores"),
        ([0.3], [], {}, "no impostor scores"),
        ([0.3, float("nan")], [1.0] * 100_000, {}, "NaN or infinite"),
        ([0.3], [1.0, float("inf")] * 50_000, {}, "NaN or infinite"),
        ([0.3], ["a", "b"], {}, "not numbers"),
        ([0.3], [1.0] * 1000, {"fmr_targets": (0.0,)}, "not a rate"),
        ([0.3], [1.0] * 1000, {"fmr_targets": (1.5,)}, "not a rate"),
        ([0.3], [1.0] * 1000, {"fmr_targets": ()}, "no FMR targets"),
        ([0.3], [1.0] * 1000, {"fmr_targets": (0.1,), "n_bootstrap": 5}, "too small"),
    ],
)
def test_bad_input_raises_calibration_error(
    genuine: list[object], impostor: list[object], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(CalibrationError, match=message):
        calibrate(genuine, impostor, **kwargs)  # type: ignore[arg-type]


def test_auc_eer_and_error_rates() -> None:
    gen, imp = _synthetic(4_000, 40_000, seed=4)
    # analytic AUC for two normals: P(G < I) = Phi((mu_i - mu_g) / sqrt(sd_g^2 + sd_i^2))
    expected = norm.cdf((IMP_MU - GEN_MU) / math.hypot(GEN_SD, IMP_SD))
    assert roc_auc(gen, imp) == pytest.approx(expected, abs=2e-3)
    # equal variances: EER at the midpoint, Phi(-(delta/2)/sd)
    assert equal_error_rate(gen, imp) == pytest.approx(norm.cdf(-0.275 / 0.1), abs=2e-3)
    fmr, fnmr = error_rates(gen, imp, [0.0, 0.725, 2.0])
    assert fmr[0] == 0.0 and fnmr[0] == 1.0 and fmr[2] == 1.0 and fnmr[2] == 0.0
    assert fmr[1] == pytest.approx(fnmr[1], abs=2e-3)
    assert roc_auc([0.1, 0.2], [0.9, 1.0]) == 1.0
    assert roc_auc([0.5], [0.5]) == 0.5
    assert equal_error_rate([0.1, 0.2], [0.9, 1.0]) == 0.0


def test_pair_scores_from_embeddings() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 16)), rng.normal(size=(50, 16))
    np.testing.assert_allclose(pair_scores(a, b), np.linalg.norm(a - b, axis=1))
    cos = pair_scores(a, b, "cosine")
    expected = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(cos, expected)
    same = np.arange(50) % 2 == 0
    gen, imp = scores_from_pairs(a, b, same)
    assert gen.size == 25 and imp.size == 25
    with pytest.raises(CalibrationError, match="labels for"):
        scores_from_pairs(a, b, same[:10])
    with pytest.raises(CalibrationError, match="shape"):
        pair_scores(a, b[:, :8])
    with pytest.raises(CalibrationError, match="unknown metric"):
        pair_scores(a, b, "manhattan")  # type: ignore[arg-type]


def test_all_pair_scores_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(41, 8))
    ids = [f"p{i % 7}" for i in range(41)]
    gen, imp = all_pair_scores(emb, ids, block=5)  # several blocks
    brute_g, brute_i = [], []
    for i in range(41):
        for j in range(i + 1, 41):
            d = float(np.linalg.norm(emb[i] - emb[j]))
            (brute_g if ids[i] == ids[j] else brute_i).append(d)
    assert gen.size + imp.size == 41 * 40 // 2
    np.testing.assert_allclose(np.sort(gen), np.sort(brute_g), atol=1e-9)
    np.testing.assert_allclose(np.sort(imp), np.sort(brute_i), atol=1e-9)
    gen_c, _ = all_pair_scores(emb, ids, "cosine")
    assert gen_c.size == gen.size and np.all(np.abs(gen_c) <= 1 + 1e-12)
    with pytest.raises(CalibrationError, match="identities for"):
        all_pair_scores(emb, ids[:-1])


# --- CLI ---------------------------------------------------------------------------------------


def _write_scores(path: Path, gen: np.ndarray, imp: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["score", "same"])
        w.writerows([f"{s:.6f}", 1] for s in gen)
        w.writerows([f"{s:.6f}", 0] for s in imp)


def test_cli_calibrates_a_score_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen, imp = _synthetic(300, 5_000, seed=11)
    pairs = tmp_path / "pairs.csv"
    _write_scores(pairs, gen, imp)
    code = main(["calibrate", str(pairs), "--fmr", "1e-2", "--fmr", "1e-3", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert data["n_genuine"] == 300 and data["n_impostor"] == 5_000
    assert [t["fmr_target"] for t in data["thresholds"]] == [1e-2, 1e-3]
    direct = calibrate(gen, imp, fmr_targets=(1e-2, 1e-3))
    assert data["thresholds"][1]["threshold"] == pytest.approx(direct.at(1e-3).threshold, abs=2e-6)
    assert str(pairs) in data["source"]

    code = main(["calibrate", str(pairs), "--fmr", "1e-2"])
    text = capsys.readouterr().out
    assert code == 0 and "1e-02" in text and "CI" in text


def test_cli_refuses_unresolvable_target_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen, imp = _synthetic(30, 500, seed=12)
    pairs = tmp_path / "pairs.csv"
    _write_scores(pairs, gen, imp)
    assert main(["calibrate", str(pairs)]) == 2  # default targets need 30,000 impostors
    assert "need at least" in capsys.readouterr().err


def test_cli_reports_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("score,same\n0.3,1\nabc,0\n")
    assert main(["calibrate", str(pairs), "--fmr", "0.5"]) == 2
    assert "line 3" in capsys.readouterr().err
    missing = tmp_path / "nope.csv"
    assert main(["calibrate", str(missing)]) == 2
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    assert main(["calibrate", str(wrong)]) == 2
    assert "columns" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_embeds_image_pairs_and_skips_bad_ones(
    model_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    root = data_dir / "faces" / "face_recognition_examples" / "examples"
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))  # no face in it
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    obama = ["obama.jpg", "obama2.jpg", "obama-480p.jpg", "obama-720p.jpg"]
    others = ["biden.jpg", "alex-lacamoire.png", "lin-manuel-miranda.png"]
    rows = ["image_a,image_b,same"]
    for i, a in enumerate(obama + others):
        for b in (obama + others)[i + 1 :]:
            rows.append(f"{root / a},{root / b},{int(a in obama and b in obama)}")
    rows.append(f"{blank},{root / 'obama.jpg'},1")
    rows.append(f"{tmp_path / 'junk.jpg'},{root / 'biden.jpg'},0")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")

    code = main(["calibrate", str(pairs), "--fmr", "0.2", "--min-false-matches", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["n_genuine"] == 6 and data["n_impostor"] == 15  # 21 pairs, 2 skipped
    assert "no face" in captured.err and "cannot read image" in captured.err
    assert "2 of 23 pairs skipped" in captured.err
    assert data["roc_auc"] == 1.0  # Obama vs three other people: perfectly separated
    assert "dlib_resnet_v1" in data["source"]


def test_cli_toml_output_is_a_loadable_profiles_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kyc.face.profiles import load_profiles

    gen, imp = _synthetic(400, 40_000, seed=13)
    pairs = tmp_path / "pairs.csv"
    _write_scores(pairs, gen, imp)
    source = "synthetic applicants, 2024 Q1"
    code = main(["calibrate", str(pairs), "--fmr", "1e-3", "--toml", "acme", "--source", source])
    assert code == 0
    toml = tmp_path / "profiles.toml"
    toml.write_text(capsys.readouterr().out)
    (profile,) = load_profiles(toml)
    direct = calibrate(gen, imp, fmr_targets=(1e-3,)).at(1e-3)
    assert profile.name == "acme-fmr1e-3" and profile.embedder == "dlib_resnet_v1"
    assert profile.metric == "euclidean" and profile.fmr_target == 1e-3
    assert profile.threshold == pytest.approx(direct.threshold, abs=1e-5)
    assert profile.population == source and profile.n_impostor == 40_000
    assert profile.is_match(direct.threshold - 0.01) and not profile.is_match(
        direct.threshold + 0.01
    )
