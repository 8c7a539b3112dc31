"""The package surface: light import, every public name resolves, CLI wiring."""

from __future__ import annotations

import json
import subprocess
import sys

import kyc
from kyc.cli import build_parser, main


def test_import_loads_no_model_or_heavy_dependency() -> None:
    code = (
        "import sys, json; import kyc; "
        "print(json.dumps(sorted(m for m in ('cv2', 'onnxruntime', 'onnx', 'mediapipe', "
        "'scipy', 'networkx', 'PIL') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_every_public_name_resolves() -> None:
    for name in kyc.__all__:
        assert getattr(kyc, name) is not None, name
    assert set(kyc.__all__) >= {"FaceVerifier", "FraudGraph", "load_image", "KycError"}


def test_cli_registers_every_area() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    commands = set(actions[0].choices)  # type: ignore[arg-type]
    assert {"models", "verify", "calibrate", "scan"} <= commands


def test_cli_version_and_no_command(capsys: object) -> None:
    assert main(["--version"]) == 0
    assert main([]) == 2
