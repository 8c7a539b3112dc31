"""Liveness: is the face in front of the camera a live person, or a presentation attack?

Passive, on one image (:mod:`kyc.liveness.passive`)::

    from kyc.liveness import check_liveness
    r = check_liveness("selfie.jpg")
    r.status, r.score, r.threshold, r.codes      # "live" | "spoof" | "not_checked"

:class:`PassiveLiveness` holds the models (loaded lazily, thread-safe) and the operating
point; :mod:`kyc.liveness.cues` the image cues of recapture fused with the model score.
Names are imported on first use, so importing this package loads neither OpenCV nor
onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "check_liveness": "kyc.liveness.passive",
    "LivenessResult": "kyc.liveness.passive",
    "PassiveLiveness": "kyc.liveness.passive",
    "ActiveLivenessSession": "kyc.liveness.active",
    "ActiveLivenessResult": "kyc.liveness.active",
    "ActiveConfig": "kyc.liveness.active",
    "ChallengeIssuer": "kyc.liveness.challenge",
    "Challenge": "kyc.liveness.challenge",
    "AttemptLimiter": "kyc.liveness.challenge",
    "FaceLandmarkTracker": "kyc.liveness.landmarks",
}

__all__ = [
    "ActiveConfig",
    "ActiveLivenessResult",
    "ActiveLivenessSession",
    "AttemptLimiter",
    "Challenge",
    "ChallengeIssuer",
    "FaceLandmarkTracker",
    "LivenessResult",
    "PassiveLiveness",
    "check_liveness",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from kyc.liveness.active import ActiveConfig, ActiveLivenessResult, ActiveLivenessSession
    from kyc.liveness.challenge import AttemptLimiter, Challenge, ChallengeIssuer
    from kyc.liveness.landmarks import FaceLandmarkTracker
    from kyc.liveness.passive import LivenessResult, PassiveLiveness, check_liveness


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kyc.liveness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
