"""Face image quality, in the spirit of ISO/IEC 29794-5: measured components, each with a limit.

:func:`assess_quality` measures one detected face and returns a frozen :class:`QualityReport`:

* ``inter_eye``: distance between the eye landmarks in original pixels (face size);
* ``sharpness``: variance of the Laplacian on a grey face chip normalised to a fixed size
  (:data:`QUALITY_CHIP`: the ArcFace template scaled to 64x64, so a face is judged at the same
  scale whatever the photo's resolution; the blur that matters is blur relative to the face);
* ``brightness`` (mean grey level of that chip), ``dark_fraction`` (pixels <= 15) and
  ``bright_fraction`` (pixels >= 240), for under- and over-exposure;
* ``yaw`` and ``roll`` in degrees, estimated from the 5 landmarks: roll from the eye line, yaw
  from how far the nose tip sits off the midline of the eyes and mouth, with a frontal-face
  depth model (``yaw = atan(offset / (0.8 * inter_eye / 2))``; a rough estimate, not a 3-D fit).
  YuNet's landmarks lag behind strong in-plane rotation (a face rotated 40 degrees reads about
  28), so the default roll limit is 20 degrees;
* ``outside``: fraction of the face box lying beyond the image borders.

Every component that misses its limit in :class:`QualityLimits` becomes a
:class:`~kyc.reasons.Reason` with the measured value and the limit:
``LOW_QUALITY_FACE_TOO_SMALL``, ``LOW_QUALITY_BLUR``, ``LOW_QUALITY_UNDEREXPOSED``,
``LOW_QUALITY_OVEREXPOSED``, ``LOW_QUALITY_POSE``, ``FACE_PARTLY_OUTSIDE``.

The default limits are deliberately permissive: they flag images a reviewer would reject (a
face a few pixels wide, heavy blur, a nearly black or blown-out face, a profile view) and let
ordinary photos through. On the shared data (LFW grey 250x250, the celebrity photos and the
face_recognition examples) they pass the large majority of images; the exact fractions are in
the face module's report. Tune them for your capture conditions.

>>> QualityLimits().min_inter_eye
20.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from kyc.errors import ConfigError
from kyc.face.align import ARCFACE_TEMPLATE_112, warp_params
from kyc.face.detect import Face
from kyc.reasons import Reason

__all__ = [
    "QUALITY_CHIP",
    "QualityLimits",
    "QualityReport",
    "assess_quality",
    "estimate_pose",
]

#: Side of the grey chip on which sharpness and exposure are measured.
QUALITY_CHIP = 64
_TEMPLATE = (ARCFACE_TEMPLATE_112 * (QUALITY_CHIP / 112.0)).astype(np.float64)
# Nose-tip depth in front of the eye/mouth plane, as a fraction of half the inter-eye
# distance (anthropometric average, rounded); turns the nose offset into a yaw angle.
_NOSE_DEPTH = 0.8
_DARK = 15
_REF_LEVEL = 128.0
_MIN_LEVEL = 8.0
_BRIGHT = 240


@dataclass(frozen=True)
class QualityLimits:
    """Limits of the quality gate (a component failing its limit adds a reason).

    ``min_inter_eye``: eye-to-eye distance in pixels (20 px: below it a face has too little
    detail for the embedders' chips). ``min_sharpness``: Laplacian variance on the 64x64 grey
    chip (see :data:`QUALITY_CHIP`). ``min_brightness`` / ``max_brightness``: mean grey level
    of the chip. ``max_dark_fraction`` / ``max_bright_fraction``: share of chip pixels at or
    below 15 / at or above 240. ``max_yaw`` / ``max_roll``: degrees. ``max_outside``: share of
    the face box beyond the image borders.
    """

    min_inter_eye: float = 20.0
    min_sharpness: float = 60.0
    min_brightness: float = 40.0
    max_brightness: float = 225.0
    max_dark_fraction: float = 0.5
    max_bright_fraction: float = 0.4
    max_yaw: float = 45.0
    max_roll: float = 20.0
    max_outside: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"quality limit {name} must be a non-negative number; got {value!r}"
                )
            object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, float]:
        """Plain-JSON form."""
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QualityReport:
    """Measured quality of one face; ``passed`` is true when ``reasons`` is empty.

    Units: ``inter_eye`` pixels; ``sharpness`` Laplacian variance on the 64x64 grey chip;
    ``brightness`` grey level 0-255; ``dark_fraction`` / ``bright_fraction`` in [0, 1];
    ``yaw`` / ``roll`` degrees (sign: positive yaw = nose toward the image right, positive
    roll = the eye line falls toward the image right); ``outside`` in [0, 1].
    """

    inter_eye: float
    sharpness: float
    brightness: float
    dark_fraction: float
    bright_fraction: float
    yaw: float
    roll: float
    outside: float
    reasons: tuple[Reason, ...] = ()

    @property
    def passed(self) -> bool:
        """True when every component met its limit."""
        return not self.reasons

    @property
    def codes(self) -> tuple[str, ...]:
        """The failing components' reason codes."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (values rounded for reading)."""
        return {
            "passed": self.passed,
            "inter_eye": round(self.inter_eye, 2),
            "sharpness": round(self.sharpness, 2),
            "brightness": round(self.brightness, 2),
            "dark_fraction": round(self.dark_fraction, 4),
            "bright_fraction": round(self.bright_fraction, 4),
            "yaw": round(self.yaw, 2),
            "roll": round(self.roll, 2),
            "outside": round(self.outside, 4),
            "reasons": [r.to_dict() for r in self.reasons],
        }


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Estimate ``(yaw, roll)`` in degrees from 5 landmarks in YuNet order.

    Roll is the angle of the line from the right eye (image left) to the left eye. Yaw comes
    from the nose tip's horizontal offset from the midline through the eye midpoint and the
    mouth midpoint, measured in the roll-corrected frame and divided by the nose depth model.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_vec = pts[1] - pts[0]
    iod = float(np.hypot(*eye_vec))
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    if iod <= 1e-6:
        return 0.0, roll
    c, s = eye_vec / iod
    rot = np.array([[c, s], [-s, c]])  # undo the roll: eye line horizontal
    p = pts @ rot.T
    eye_mid = (p[0] + p[1]) / 2.0
    mouth_mid = (p[3] + p[4]) / 2.0
    dy = mouth_mid[1] - eye_mid[1]
    t = (p[2, 1] - eye_mid[1]) / dy if abs(dy) > 1e-6 else 0.5
    mid_x = eye_mid[0] + t * (mouth_mid[0] - eye_mid[0])
    offset = p[2, 0] - mid_x
    yaw = math.degrees(math.atan2(offset, _NOSE_DEPTH * iod / 2.0))
    return yaw, roll


def _outside_fraction(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> float:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return 0.0
    ix = max(0.0, min(x + w, float(shape[1])) - max(x, 0.0))
    iy = max(0.0, min(y + h, float(shape[0])) - max(y, 0.0))
    return float(max(0.0, 1.0 - (ix * iy) / (w * h)))


def _grey_chip(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey 64x64 aligned chip and a mask of the chip pixels that come from the image."""
    size = (QUALITY_CHIP, QUALITY_CHIP)
    src, m = warp_params(image, landmarks, _TEMPLATE, size)
    grey = cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)
    chip = cv2.warpAffine(grey, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
    ones = np.full(grey.shape[:2], 255, dtype=np.uint8)
    mask = cv2.warpAffine(ones, m, size, flags=cv2.INTER_NEAREST, borderValue=0) > 0
    return chip, mask


def assess_quality(
    image: np.ndarray, face: Face, limits: QualityLimits | None = None
) -> QualityReport:
    """Measure the quality of ``face`` in ``image`` (HxWx3 uint8 BGR) against ``limits``.

    Returns a :class:`QualityReport` whose ``reasons`` list every component that missed its
    limit, each with ``{"value", "limit"}`` evidence.
    """
    lim = limits or QualityLimits()
    chip, mask = _grey_chip(image, face.landmarks)
    # Erode the mask so the black border outside the image does not count as an edge.
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    lap = cv2.Laplacian(chip.astype(np.float32), cv2.CV_32F, ksize=1)
    vals = chip[mask]
    if inner.sum() >= 16 and vals.size:
        brightness = float(vals.mean())
        # Laplacian variance scales with the square of the exposure gain: divide the gain out
        # (reference level 128) so a dark but sharp face is not reported as blurred.
        gain = _REF_LEVEL / max(brightness, _MIN_LEVEL)
        sharpness = float(lap[inner].var()) * gain * gain
        dark = float((vals <= _DARK).mean())
        bright = float((vals >= _BRIGHT).mean())
    else:  # the face lies (almost) entirely outside the image
        sharpness, brightness, dark, bright = 0.0, 0.0, 1.0, 0.0
    yaw, roll = estimate_pose(face.landmarks)
    iod = face.inter_eye
    outside = _outside_fraction(face.box, image.shape)

    reasons: list[Reason] = []

    def fail(code: str, message: str, value: float, limit: float, **extra: Any) -> None:
        evidence = {"value": round(value, 4), "limit": limit, **extra}
        reasons.append(Reason(code, message, evidence))

    if iod < lim.min_inter_eye:
        fail(
            "LOW_QUALITY_FACE_TOO_SMALL",
            f"face too small: {iod:.1f} px between the eyes, at least {lim.min_inter_eye:g} needed",
            iod,
            lim.min_inter_eye,
            measure="inter_eye_px",
        )
    if sharpness < lim.min_sharpness:
        fail(
            "LOW_QUALITY_BLUR",
            f"face too blurred: sharpness {sharpness:.1f}, at least {lim.min_sharpness:g} needed",
            sharpness,
            lim.min_sharpness,
            measure="laplacian_variance_64px",
        )
    if brightness < lim.min_brightness or dark > lim.max_dark_fraction:
        fail(
            "LOW_QUALITY_UNDEREXPOSED",
            f"face too dark: mean level {brightness:.0f} (at least {lim.min_brightness:g}), "
            f"{dark:.0%} of pixels black (at most {lim.max_dark_fraction:.0%})",
            brightness,
            lim.min_brightness,
            dark_fraction=round(dark, 4),
            dark_limit=lim.max_dark_fraction,
            measure="mean_grey_level",
        )
    if brightness > lim.max_brightness or bright > lim.max_bright_fraction:
        fail(
            "LOW_QUALITY_OVEREXPOSED",
            f"face too bright: mean level {brightness:.0f} (at most {lim.max_brightness:g}), "
            f"{bright:.0%} of pixels blown out (at most {lim.max_bright_fraction:.0%})",
            brightness,
            lim.max_brightness,
            bright_fraction=round(bright, 4),
            bright_limit=lim.max_bright_fraction,
            measure="mean_grey_level",
        )
    if abs(yaw) > lim.max_yaw or abs(roll) > lim.max_roll:
        yaw_excess = abs(yaw) / max(lim.max_yaw, 1e-9)
        worst = "yaw" if yaw_excess >= abs(roll) / max(lim.max_roll, 1e-9) else "roll"
        fail(
            "LOW_QUALITY_POSE",
            f"head turned too far: yaw {yaw:.0f} deg (limit {lim.max_yaw:g}), "
            f"roll {roll:.0f} deg (limit {lim.max_roll:g})",
            abs(yaw) if worst == "yaw" else abs(roll),
            lim.max_yaw if worst == "yaw" else lim.max_roll,
            measure=f"{worst}_degrees",
            yaw=round(yaw, 2),
            roll=round(roll, 2),
            yaw_limit=lim.max_yaw,
            roll_limit=lim.max_roll,
        )
    if outside > lim.max_outside:
        fail(
            "FACE_PARTLY_OUTSIDE",
            f"{outside:.0%} of the face box lies outside the image (at most {lim.max_outside:.0%})",
            outside,
            lim.max_outside,
            measure="box_fraction_outside",
        )
    return QualityReport(
        inter_eye=iod,
        sharpness=sharpness,
        brightness=brightness,
        dark_fraction=dark,
        bright_fraction=bright,
        yaw=yaw,
        roll=roll,
        outside=outside,
        reasons=tuple(reasons),
    )
