"""Tests for kyc.report and ``kyc bench``: error curves, pictures, the self-contained page.

The full quick report runs on the real data (celebrities13, the PAD samples, a synthetic
population) with MiniFASNet ONNX files built from the shared .pth sources into a temp folder.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from kyc.errors import ConfigError
from kyc.report import (
    FigureRef,
    Section,
    det_plot,
    error_curve,
    roc_plot,
    run_bench,
    score_histogram,
    write_html,
)


def _png_ok(path: Path, min_side: int = 300) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        assert min(im.size) >= min_side, (path, im.size)
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 5  # something was drawn, not a blank canvas


# --- error curves ---------------------------------------------------------------------------


def test_error_curve_counts_rates_by_hand() -> None:
    c = error_curve([0.1, 0.2, 0.3, 0.4], [0.25, 0.5, 0.6], higher_is_match=False)
    assert c.at(0.2) == (0.0, 0.5)  # 2 of 4 genuine above 0.2, no impostor at or below
    assert c.at(0.25) == (pytest.approx(1 / 3), 0.5)
    assert c.at(0.6) == (1.0, 0.0)
    assert c.fmr[0] == 0.0 and c.fnmr[0] == 1.0  # strictest end: nothing accepted
    assert c.fmr[-1] == 1.0 and c.fnmr[-1] == 0.0
    assert np.all(np.diff(c.fmr) >= 0) and np.all(np.diff(c.fnmr) <= 0)
    assert c.auc == pytest.approx(10 / 12)  # 10 of 12 (genuine, impostor) pairs ordered


def test_error_curve_for_similarities_and_tar() -> None:
    rng = np.random.default_rng(0)
    gen = rng.normal(0.8, 0.05, 500)
    imp = rng.normal(0.3, 0.1, 5000)
    c = error_curve(gen, imp, higher_is_match=True)
    assert c.auc > 0.99 and c.eer < 0.02
    fmr, fnmr = c.at(0.55)
    assert fmr == pytest.approx(float(np.mean(imp >= 0.55)))
    assert fnmr == pytest.approx(float(np.mean(gen < 0.55)))
    tar = c.tar_at(1e-3)
    assert tar is not None and 0.9 < tar <= 1.0
    assert c.tar_at(1e-4) is None  # 5,000 impostors cannot measure FMR 1e-4


def test_error_curve_refuses_empty_or_nan() -> None:
    with pytest.raises(ConfigError, match="empty"):
        error_curve([], [0.1], higher_is_match=False)
    with pytest.raises(ConfigError, match="NaN"):
        error_curve([0.1, float("nan")], [0.2], higher_is_match=False)


# --- pictures and the page -------------------------------------------------------------------


def test_plots_and_self_contained_html(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    c1 = error_curve(rng.normal(0.4, 0.06, 300), rng.normal(0.85, 0.08, 3000),
                     higher_is_match=False)  # fmt: skip
    c2 = error_curve([0.1, 0.2], [0.8, 0.9], higher_is_match=False)  # perfectly separated
    det = det_plot([("a", c1), ("b", c2)], tmp_path / "det.png", title="DET",
                   points=[("t", *c1.at(0.55))])  # fmt: skip
    roc = roc_plot([("a", c1)], tmp_path / "roc.png", title="ROC",
                   points=[("t", c1.at(0.55)[0], 1 - c1.at(0.55)[1])])  # fmt: skip
    hist = score_histogram([("g", c1.genuine), ("i", c1.impostor)], tmp_path / "h.png",
                           title="H", x_label="distance", threshold=0.55)  # fmt: skip
    for p in (det, roc, hist):
        _png_ok(p)
    page = write_html(
        [Section("Scores <&>", ("a paragraph with <b>markup</b>",), (("key", "v<1>"),),
                 (FigureRef(det, "the DET"), FigureRef(hist, "the histogram")), ("a note",))],
        tmp_path / "r.html", title="Report & co", meta=[("mode", "test")],
    )  # fmt: skip
    text = page.read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert "&lt;b&gt;markup&lt;/b&gt;" in text and "Scores &lt;&amp;&gt;" in text
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [base64.b64decode(x) for x in inlined] == [det.read_bytes(), hist.read_bytes()]


# --- the whole report on real data -----------------------------------------------------------


@pytest.fixture(scope="module")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kyc.liveness.passive import MODEL_SCALES
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("pad_models")
    for name in MODEL_SCALES:
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


def _bench(argv: list[str]) -> int:
    from kyc._cli import bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    return int(args.func(args))


@pytest.mark.slow
def test_quick_bench_writes_pictures_and_one_page(
    tmp_path: Path, data_dir: Path, model_dir: Path, pad_models: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report"
    assert _bench(["--out", str(out), "--quick", "--data", str(data_dir),
                   "--pad-models", str(pad_models), "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "report.html" in printed and "face celebrities13: AUC" in printed
    names = {"face_det.png", "face_roc.png", "face_hist.png", "pad_det.png", "pad_roc.png",
             "pad_hist.png", "ring_scores.png", "ring.png"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    for n in names:
        _png_ok(out / n)
    summary = json.loads((out / "summary.json").read_text())
    face = summary["face"]["sets"]["celebrities13"]
    assert face["genuine"] == 140 and face["impostor"] == 1690 and face["auc"] > 0.99
    assert face["fmr_at_threshold"] < 0.01 and face["fnmr_at_threshold"] < 0.1
    pad = summary["pad"]
    assert pad["auc"] > 0.9 and pad["apcer_at_threshold"] <= 0.1
    assert sum(pad["attacks"].values()) >= 30 and sum(pad["bona_fide"].values()) >= 40
    graph = summary["graph"]
    assert graph["flagged"] >= 1 and graph["planted_recovered"] >= 1
    assert 5 <= graph["pictured_ring"]["size"] <= 20
    text = (out / "report.html").read_text()
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert sorted(base64.b64decode(x) for x in inlined) == sorted(
        (out / n).read_bytes() for n in names
    )
    assert "<script" not in text.lower() and "https://" not in text
    for heading in ("At a glance", "Face match", "Presentation attacks", "Fraud rings"):
        assert heading in text
    # the ring picture and page carry hashed tokens, never the synthetic raw ids
    from kyc.graph.synth import generate

    raw = {a.applicant_id for a in generate(5000, seed=0).applications[:200]}
    assert not any(r in text for r in raw)


def test_bench_reports_a_missing_pad_model_and_goes_on(tmp_path: Path, data_dir: Path) -> None:
    empty = tmp_path / "no_models"
    empty.mkdir()
    report = run_bench(tmp_path / "r", data_dir=data_dir, quick=True, pad_model_dir=empty,
                       parts=("pad",))  # fmt: skip
    assert report.summary["pad"]["error"]["code"] == "MODEL_UNAVAILABLE"
    text = report.html.read_text()
    assert "Not measured" in text and "kyc models build" in text
    assert report.figures == ()


def test_bench_refuses_a_missing_data_folder_and_unknown_parts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data folder"):
        run_bench(tmp_path / "r", data_dir=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="parts"):
        run_bench(tmp_path / "r", data_dir=tmp_path, parts=("faces",))


def test_docstring_examples_run() -> None:
    import doctest

    import kyc.report

    assert doctest.testmod(kyc.report).failed == 0
