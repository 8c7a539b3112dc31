"""kyc: identity-fraud defences for consumer lenders.

Faces (is the selfie live, is it the person on the ID, is this face already behind another
identity) and the applicant graph (shared devices, phones, contacts; fraud rings; multi-lender
stacking), each ending in results with reason codes.

Importing :mod:`kyc` loads no model and no heavy dependency; everything below is imported on
first use.

>>> import kyc
>>> kyc.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kyc.errors import KycError

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily on first attribute access)
_LAZY: dict[str, str] = {
    "load_image": "kyc.image",
    "ImageLimits": "kyc.image",
    "FaceVerifier": "kyc.face.verify",
    "MatchResult": "kyc.face.verify",
    "QualityReport": "kyc.face.quality",
    "QualityLimits": "kyc.face.quality",
    "FaceTemplate": "kyc.face.verify",
    "ThresholdProfile": "kyc.face.profiles",
    "FaceIndex": "kyc.face.index",
    "calibrate": "kyc.calibrate",
    "Reason": "kyc.reasons",
    "check_liveness": "kyc.liveness.passive",
    "LivenessResult": "kyc.liveness.passive",
    "PassiveLiveness": "kyc.liveness.passive",
    "Application": "kyc.graph.records",
    "FraudGraph": "kyc.graph.fraudgraph",
    "RingReport": "kyc.graph.rings",
    "ActiveLivenessSession": "kyc.liveness.active",
    "ActiveLivenessResult": "kyc.liveness.active",
    "ActiveConfig": "kyc.liveness.active",
    "ChallengeIssuer": "kyc.liveness.challenge",
    "Challenge": "kyc.liveness.challenge",
    "AttemptLimiter": "kyc.liveness.challenge",
    "decide": "kyc.decision",
    "Decision": "kyc.decision",
    "Policy": "kyc.policy",
    "load_policy": "kyc.policy",
}

__all__ = [
    "ActiveConfig",
    "ActiveLivenessResult",
    "ActiveLivenessSession",
    "Application",
    "AttemptLimiter",
    "Challenge",
    "ChallengeIssuer",
    "Decision",
    "FaceIndex",
    "FaceTemplate",
    "FaceVerifier",
    "FraudGraph",
    "ImageLimits",
    "KycError",
    "LivenessResult",
    "MatchResult",
    "PassiveLiveness",
    "Policy",
    "QualityLimits",
    "QualityReport",
    "Reason",
    "RingReport",
    "ThresholdProfile",
    "__version__",
    "calibrate",
    "check_liveness",
    "decide",
    "load_image",
    "load_policy",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from kyc.calibrate import calibrate
    from kyc.decision import Decision, decide
    from kyc.face.index import FaceIndex
    from kyc.face.profiles import ThresholdProfile
    from kyc.face.quality import QualityLimits, QualityReport
    from kyc.face.verify import FaceTemplate, FaceVerifier, MatchResult
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.records import Application
    from kyc.graph.rings import RingReport
    from kyc.image import ImageLimits, load_image
    from kyc.liveness.active import ActiveConfig, ActiveLivenessResult, ActiveLivenessSession
    from kyc.liveness.challenge import AttemptLimiter, Challenge, ChallengeIssuer
    from kyc.liveness.passive import LivenessResult, PassiveLiveness, check_liveness
    from kyc.policy import Policy, load_policy
    from kyc.reasons import Reason


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kyc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
