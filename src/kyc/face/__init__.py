"""Faces: detection, alignment, embedding, quality, 1:1 verification and 1:N search.

The usual entry point is :class:`FaceVerifier`::

    from kyc.face import FaceVerifier
    fv = FaceVerifier()                       # dlib embedder, default threshold profile
    result = fv.verify("id.jpg", "selfie.jpg")
    result.status, result.score, result.profile, result.codes

Modules: :mod:`~kyc.face.detect` (YuNet, multi-face policy), :mod:`~kyc.face.align`
(templates, similarity transform), :mod:`~kyc.face.embed` (embedder families and lender
configs), :mod:`~kyc.face.quality` (quality gate), :mod:`~kyc.face.profiles` (calibrated
thresholds), :mod:`~kyc.face.verify` (:class:`FaceVerifier`, :class:`MatchResult`),
:mod:`~kyc.face.index` (:class:`FaceIndex`). Names are imported on first use, so importing
this package loads neither OpenCV nor onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "Face": "kyc.face.detect",
    "FaceDetector": "kyc.face.detect",
    "FaceSelection": "kyc.face.detect",
    "select_face": "kyc.face.detect",
    "ARCFACE_TEMPLATE_112": "kyc.face.align",
    "DLIB_TEMPLATE_150": "kyc.face.align",
    "align_face": "kyc.face.align",
    "ArcFaceEmbedder": "kyc.face.embed",
    "DlibEmbedder": "kyc.face.embed",
    "Embedder": "kyc.face.embed",
    "EmbedderConfig": "kyc.face.embed",
    "make_embedder": "kyc.face.embed",
    "QualityLimits": "kyc.face.quality",
    "QualityReport": "kyc.face.quality",
    "assess_quality": "kyc.face.quality",
    "ThresholdProfile": "kyc.face.profiles",
    "load_profiles": "kyc.face.profiles",
    "FaceTemplate": "kyc.face.verify",
    "FaceVerifier": "kyc.face.verify",
    "MatchResult": "kyc.face.verify",
    "FaceIndex": "kyc.face.index",
}

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DLIB_TEMPLATE_150",
    "ArcFaceEmbedder",
    "DlibEmbedder",
    "Embedder",
    "EmbedderConfig",
    "Face",
    "FaceDetector",
    "FaceIndex",
    "FaceSelection",
    "FaceTemplate",
    "FaceVerifier",
    "MatchResult",
    "QualityLimits",
    "QualityReport",
    "ThresholdProfile",
    "align_face",
    "assess_quality",
    "load_profiles",
    "make_embedder",
    "select_face",
]

if TYPE_CHECKING:  # pragma: no cover
    from kyc.face.align import ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150, align_face
    from kyc.face.detect import Face, FaceDetector, FaceSelection, select_face
    from kyc.face.embed import (
        ArcFaceEmbedder,
        DlibEmbedder,
        Embedder,
        EmbedderConfig,
        make_embedder,
    )
    from kyc.face.index import FaceIndex
    from kyc.face.profiles import ThresholdProfile, load_profiles
    from kyc.face.quality import QualityLimits, QualityReport, assess_quality
    from kyc.face.verify import FaceTemplate, FaceVerifier, MatchResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kyc.face' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
