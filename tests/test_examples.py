"""Runs the examples under ``examples/`` as a user would (a subprocess from the repo root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_onboard_example_prints_each_decision(
    model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, KYC_MODEL_DIR=str(model_dir), KYC_DATA_DIR=str(data_dir),
               TMPDIR=str(tmp_path))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "examples/onboard.py"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    decisions = dict(re.findall(r"^(A-\d{4})\s.*?DECISION: (\w+)", out, flags=re.M | re.S))
    assert decisions == {
        "A-1001": "APPROVE",
        "A-1002": "REJECT",
        "A-1003": "REJECT",
        "A-1004": "APPROVE",
        "A-1005": "APPROVE",
    }, out
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"^(A-\d{4}) .*?(?=^A-\d{4} |^re-check)",
                                                         out, flags=re.M | re.S)}
    assert re.search(r"reject\s+face\s+FACE_MISMATCH", blocks["A-1002"])
    assert re.search(r"reject\s+liveness\s+PAD_SPOOF_SUSPECTED", blocks["A-1003"])
    assert re.search(r"approve\s+face\s+FACE_MATCH", blocks["A-1001"])
    assert "linked to 1 other applicant(s) via device" in blocks["A-1005"]
    # the payout re-check shows the shared device, as hashed tokens only
    recheck = out.split("re-check before payout", 1)[1]
    assert re.search(r"A-1004: linked to 1 other applicant\(s\) through device [0-9a-f]{8}",
                     recheck)
    assert "farm-phone-7f3a" not in out and "555 0104" not in recheck
    assert "summary: A-1001 approve, A-1002 reject, A-1003 reject" in out
