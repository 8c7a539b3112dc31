"""Shared fixtures: where the real models and data live.

Tests use ``KYC_MODEL_DIR`` and ``KYC_DATA_DIR`` (CI sets them to ``../shared/models`` and
``../shared/data``). When unset, the sibling ``../shared`` folders are used if present; tests
that need them skip with a clear reason otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dir(env: str, fallback: Path) -> Path | None:
    value = os.environ.get(env)
    path = Path(value) if value else fallback
    return path.resolve() if path.is_dir() else None


MODEL_DIR = _dir("KYC_MODEL_DIR", ROOT.parent / "shared" / "models")
DATA_DIR = _dir("KYC_DATA_DIR", ROOT.parent / "shared" / "data")

# Absolute paths: some tests change the working directory, and a relative KYC_MODEL_DIR
# (the README exports ../shared/models) would then point nowhere.
if MODEL_DIR is not None:
    os.environ["KYC_MODEL_DIR"] = str(MODEL_DIR)
if DATA_DIR is not None:
    os.environ["KYC_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Folder with the real model files; skips the test when absent."""
    if MODEL_DIR is None:
        pytest.skip("model folder not found: set KYC_MODEL_DIR (e.g. ../shared/models)")
    return MODEL_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder with the real evaluation data; skips the test when absent."""
    if DATA_DIR is None:
        pytest.skip("data folder not found: set KYC_DATA_DIR (e.g. ../shared/data)")
    return DATA_DIR
