"""Reason codes: the explainable part of every result.

A :class:`Reason` is a stable upper-case ``code`` (``"FACE_MISMATCH"``, ``"DEVICE_SHARED_BY_7"``),
a human sentence, and the evidence behind it (measured values, limits, hashed identifiers).
Codes are part of the public contract: they do not change meaning between releases.

>>> r = Reason("LOW_QUALITY_SELFIE", "selfie too blurred", {"sharpness": 12.0, "limit": 40.0})
>>> r.to_dict()["evidence"]["limit"]
40.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Reason"]


@dataclass(frozen=True)
class Reason:
    """One reason code with its evidence."""

    code: str
    message: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"code", "message", "evidence"}``."""
        return {"code": self.code, "message": self.message, "evidence": dict(self.evidence)}
