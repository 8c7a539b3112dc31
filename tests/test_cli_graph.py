"""``kyc scan`` in-process (kyc._cli.graph)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kyc.cli import main
from kyc.graph.identifiers import IdentifierHasher
from kyc.graph.synth import SynthDataset, generate, write_csv

SECRET = "0123456789abcdef-cli-tests"


@pytest.fixture(scope="module")
def dataset() -> SynthDataset:
    return generate(1500, seed=4, n_rings=3, ring_size=(6, 14))


@pytest.fixture()
def apps_csv(tmp_path: Path, dataset: SynthDataset) -> Path:
    return write_csv(dataset, tmp_path / "applications.csv")


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYC_TEST_SECRET", SECRET)
    monkeypatch.delenv("KYC_HMAC_SECRET", raising=False)


def _raw_values(dataset: SynthDataset) -> set[str]:
    cols = dataset.applications_columns()
    raw: set[str] = set()
    for name in ("device_id", "ip", "address", "card", "email", "applicant_id"):
        raw.update(v for v in cols[name] if v)
    for name in ("phones", "contact_phones"):
        for t in cols[name]:
            raw.update(t)
    return {r for r in raw if len(r) >= 6}


def test_scan_writes_json_html_and_csv_without_raw_identifiers(
    tmp_path: Path, apps_csv: Path, dataset: SynthDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "rings.json"
    picture = tmp_path / "ring.html"
    rc = main(["scan", str(apps_csv), "--secret-env", "KYC_TEST_SECRET", "--out",
               str(out_json), "--picture", str(picture)])
    assert rc == 0
    payload = json.loads(out_json.read_text())
    assert payload["summary"]["rows"] == len(dataset)
    assert payload["summary"]["added"] == len(dataset)
    rings = payload["rings"]
    assert rings and all(r["flagged"] for r in rings)
    assert all(r["reasons"] and r["shared"] for r in rings)
    html = picture.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    out_csv = tmp_path / "rings.csv"
    assert main(["scan", str(apps_csv), "--secret-env", "KYC_TEST_SECRET", "--out",
                 str(out_csv), "--all", "--quiet"]) == 0
    with open(out_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) >= len(rings)
    assert {r["ring_id"] for r in rings} <= {row["ring_id"] for row in table}
    # every planted ring is found among the flagged ones (members are tokens of the raw ids)
    hasher = IdentifierHasher(SECRET)
    found = [set(r["members"]) for r in rings]
    for members in dataset.rings.values():
        truth = {hasher.token("applicant", m) for m in members}
        assert any(len(truth & f) / len(truth | f) >= 0.5 for f in found)
    printed = capsys.readouterr().out
    assert "ring candidates" in printed
    blob = out_json.read_text() + html + out_csv.read_text() + printed
    leaked = [r for r in _raw_values(dataset) if r in blob]
    assert leaked == []


def test_scan_png_picture(tmp_path: Path, apps_csv: Path) -> None:
    pytest.importorskip("matplotlib")
    picture = tmp_path / "ring.png"
    assert main(["scan", str(apps_csv), "--secret-env", "KYC_TEST_SECRET", "--picture",
                 str(picture), "--quiet"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scan_store_accumulates_and_fail_on_rings(tmp_path: Path, dataset: SynthDataset
                                                  ) -> None:
    store = tmp_path / "graph.db"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    rows = list(dataset.to_records())
    for path, part in ((first, rows[:800]), (second, rows[800:])):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(part[0]))
            w.writeheader()
            w.writerows(part)
    out = tmp_path / "r.json"
    assert main(["scan", str(first), "--secret-env", "KYC_TEST_SECRET", "--store", str(store),
                 "--quiet"]) == 0
    rc = main(["scan", str(second), "--secret-env", "KYC_TEST_SECRET", "--store", str(store),
               "--out", str(out), "--fail-on-rings", "--quiet"])
    summary = json.loads(out.read_text())["summary"]
    assert summary["applications_stored"] == len(rows)
    assert rc == (1 if summary["flagged_rings"] else 0)
    assert summary["flagged_rings"] >= 2


def test_scan_reports_bad_rows_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    path = tmp_path / "apps.csv"
    path.write_text(
        "application_id,applicant_id,lender_id,timestamp,device_id\n"
        "a1,P1,L1,2024-01-01T10:00:00Z,dev-1\n"
        "a2,P2,L1,not-a-time,dev-1\n"
        "a3,P3,L1,2024-01-01T11:00:00Z,dev-1\n"
    )
    out = tmp_path / "r.json"
    assert main(["scan", str(path), "--secret-env", "KYC_TEST_SECRET", "--out", str(out),
                 "--quiet", "--all"]) == 0
    err = capsys.readouterr().err
    assert "row 1" in err and "timestamp" in err
    assert json.loads(out.read_text())["summary"]["bad_rows"] == 1


@pytest.mark.parametrize("argv_tail, env_ok", [
    (["--out", "rings.txt"], True),
    (["--picture", "ring.gif"], True),
    ([], False),
])
def test_scan_bad_usage_exits_2(tmp_path: Path, apps_csv: Path, argv_tail: list[str],
                                env_ok: bool, capsys: pytest.CaptureFixture[str]) -> None:
    env = "KYC_TEST_SECRET" if env_ok else "KYC_NO_SUCH_SECRET_VAR"
    tail = [str(tmp_path / a) if "." in a and not a.startswith("--") else a for a in argv_tail]
    assert main(["scan", str(apps_csv), "--secret-env", env, "--quiet", *tail]) == 2
    assert "kyc: error" in capsys.readouterr().err


def test_scan_missing_file_and_no_valid_rows(tmp_path: Path) -> None:
    assert main(["scan", str(tmp_path / "nope.csv"), "--secret-env", "KYC_TEST_SECRET"]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("application_id,applicant_id,lender_id,timestamp\nx,,L1,2024-01-01\n")
    assert main(["scan", str(bad), "--secret-env", "KYC_TEST_SECRET", "--quiet"]) == 2


def test_scan_bad_store_exits_3(tmp_path: Path, apps_csv: Path) -> None:
    not_a_db = tmp_path / "store.db"
    not_a_db.write_text("this is not sqlite, just text that is long enough")
    assert main(["scan", str(apps_csv), "--secret-env", "KYC_TEST_SECRET", "--store",
                 str(not_a_db), "--quiet"]) == 3
