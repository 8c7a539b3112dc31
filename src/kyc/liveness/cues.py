"""Image cues of recapture: evidence that a face was re-photographed from a screen or print.

MiniFASNet (see :mod:`kyc.liveness.passive`) judges an 80x80 patch. A few properties of a
recaptured face are visible at full resolution or are plain colorimetry, and are measured here
directly. Each cue looks at the face box (and, where it says so, the context around it) and
returns a :class:`CueResult`: the raw measurement (``value``) and a *strength* in [0, 1] (0 = no
sign of recapture, 1 = a clear one), obtained by a linear ramp between two fixed limits
(:class:`CueLimits`). Strengths are fused with the model score by
:func:`kyc.liveness.passive.fuse_scores`.

Cues (all pure numpy/OpenCV, a few milliseconds each):

``colour_cast``
    Median CIE b* (yellow-blue axis) of the central face. Skin reflects more long-wave light
    than short-wave, so in a white-balanced camera picture of a real face b* is positive
    (typically 5-25). A face shown on a display and recaptured takes the display's cold white
    point and emissive colour rendering, and comes out blue (negative b*). Greyscale images
    have b* = 0 and never trigger it.
``black_level``
    2nd-percentile luminance of the face and its immediate surround. Displays and prints cannot
    render deep black (backlight bleed, paper white), so the darkest parts of a recaptured face
    (pupils, nostrils, hair) stay grey.
``specular``
    Share of clipped, colourless pixels on the face: glare of a glossy screen or photo paper.
``moire``
    Strongest isolated peak of the face's log-magnitude spectrum above its radial median, in
    the mid-to-high frequency band: the interference grid of a pixel matrix or halftone
    recaptured by a camera sensor (measured at native resolution, at most 256 px).
``screen_border``
    Long straight edges around (not across) the face, in the context a device or sheet of paper
    would occupy (the face box x3.2): how many of the four sides carry one.

Which cues enter the default fusion is decided by ``benchmarks/pad_eval.py`` (a cue is kept
only where it measurably helps; see ``benchmarks/RESULTS.md``).

>>> import numpy as np
>>> grey = np.full((200, 160, 3), 128, np.uint8)
>>> r = colour_cast(grey, (40.0, 50.0, 80.0, 100.0))
>>> r.name, r.value, r.strength
('colour_cast', 0.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CUE_FUNCTIONS",
    "CUE_NAMES",
    "DEFAULT_LIMITS",
    "Box",
    "CueLimits",
    "CueResult",
    "black_level",
    "colour_cast",
    "compute_cues",
    "moire",
    "screen_border",
    "specular",
]

#: A face box ``(x, y, w, h)`` in image pixels.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CueLimits:
    """Ramp limits of one cue: strength 0 at ``none`` (or beyond), 1 at ``full`` (or beyond).

    ``none`` may be larger or smaller than ``full``: the ramp runs in whichever direction the
    two give (for ``colour_cast`` b* falling from -3 to -9 raises the strength).
    """

    none: float
    full: float

    def strength(self, value: float) -> float:
        """Map a measurement to a strength in [0, 1] (linear between the two limits)."""
        if not np.isfinite(value) or self.none == self.full:
            return 0.0
        s = (value - self.none) / (self.full - self.none)
        return float(min(1.0, max(0.0, s)))

    def to_dict(self) -> dict[str, float]:
        """Plain-JSON form ``{"none", "full"}``."""
        return {"none": self.none, "full": self.full}


#: Default ramp limits per cue (measurement units in :func:`compute_cues`' docstrings).
DEFAULT_LIMITS: Mapping[str, CueLimits] = MappingProxyType(
    {
        # median b* of the central face; calibration half of replay_2019: live >= -0.3,
        # replayed <= -11.6 (benchmarks/RESULTS.md); the ramp sits in that gap
        "colour_cast": CueLimits(none=-3.0, full=-9.0),
        "black_level": CueLimits(none=60.0, full=90.0),  # 2nd-percentile luminance, 0..255
        "specular": CueLimits(none=0.03, full=0.12),  # share of clipped colourless pixels
        "moire": CueLimits(none=3.0, full=4.5),  # peak log-magnitude above radial median
        "screen_border": CueLimits(none=1.0, full=3.0),  # sides of the face with a long edge
    }
)


@dataclass(frozen=True)
class CueResult:
    """One cue on one face: ``value`` (the measurement), ``strength`` in [0, 1], ``evidence``."""

    name: str
    value: float
    strength: float
    limits: CueLimits
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        """True when the strength is at least 0.5 (reported as a reason code when fused)."""
        return self.strength >= 0.5

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "name": self.name,
            "value": round(float(self.value), 6),
            "strength": round(float(self.strength), 6),
            "limits": self.limits.to_dict(),
            "evidence": dict(self.evidence),
        }


# --- geometry -------------------------------------------------------------------------------


def _region(shape: tuple[int, ...], box: Box, scale: float) -> tuple[int, int, int, int]:
    """The box scaled about its centre and clipped to the image: ``(x0, y0, x1, y1)``."""
    h, w = int(shape[0]), int(shape[1])
    bx, by, bw, bh = box
    cx, cy = bx + bw / 2.0, by + bh / 2.0
    hw, hh = bw * scale / 2.0, bh * scale / 2.0
    x0 = int(max(0, np.floor(cx - hw)))
    y0 = int(max(0, np.floor(cy - hh)))
    x1 = int(min(w, np.ceil(cx + hw)))
    y1 = int(min(h, np.ceil(cy + hh)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box} does not overlap the {w}x{h} image")
    return x0, y0, x1, y1


def _crop(image: np.ndarray, box: Box, scale: float) -> np.ndarray:
    x0, y0, x1, y1 = _region(image.shape, box, scale)
    return image[y0:y1, x0:x1]


def _luma(bgr: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), dtype=np.float32)


# --- cues -----------------------------------------------------------------------------------


def colour_cast(image: np.ndarray, box: Box, limits: CueLimits | None = None) -> CueResult:
    """Median CIE b* of the central 60 % of the face box (well-exposed pixels only).

    ``image`` is HxWx3 uint8 BGR, ``box`` ``(x, y, w, h)``. Pixels with L* outside 15-95 are
    ignored (shadows and clipped highlights carry no colour). Negative values mean a blue cast.
    """
    lim = limits or DEFAULT_LIMITS["colour_cast"]
    patch = _crop(image, box, 0.6)
    lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    keep = (lab[:, 0] >= 15.0) & (lab[:, 0] <= 95.0)
    used = int(keep.sum())
    if used < 16:
        return CueResult("colour_cast", 0.0, 0.0, lim, {"pixels": used, "b_star": None})
    b_star = float(np.median(lab[keep, 2]))
    a_star = float(np.median(lab[keep, 1]))
    ev = {"b_star": round(b_star, 3), "a_star": round(a_star, 3), "pixels": used}
    return CueResult("colour_cast", b_star, lim.strength(b_star), lim, ev)


def black_level(image: np.ndarray, box: Box, limits: CueLimits | None = None) -> CueResult:
    """2nd-percentile luminance (0..255) of the face box enlarged x1.2: how black its blacks are."""
    lim = limits or DEFAULT_LIMITS["black_level"]
    grey = _luma(_crop(image, box, 1.2))
    p2 = float(np.percentile(grey, 2.0))
    p98 = float(np.percentile(grey, 98.0))
    ev = {"p2": round(p2, 2), "p98": round(p98, 2)}
    return CueResult("black_level", p2, lim.strength(p2), lim, ev)


def specular(image: np.ndarray, box: Box, limits: CueLimits | None = None) -> CueResult:
    """Share of face-box pixels that are clipped and colourless (HSV V >= 245, S <= 40)."""
    lim = limits or DEFAULT_LIMITS["specular"]
    hsv = cv2.cvtColor(_crop(image, box, 1.0), cv2.COLOR_BGR2HSV)
    glare = (hsv[..., 2] >= 245) & (hsv[..., 1] <= 40)
    share = float(glare.mean())
    return CueResult("specular", share, lim.strength(share), lim, {"share": round(share, 5)})


_MOIRE_MAX_SIDE = 256


def moire(image: np.ndarray, box: Box, limits: CueLimits | None = None) -> CueResult:
    """Strongest isolated spectral peak of the face, above the spectrum's radial median.

    The face box (x1.0, clipped) is taken at native resolution (downscaled only when its long
    side exceeds 256 px), windowed (Hann), and its log-magnitude spectrum compared with the
    median at the same radius. The value is the largest excess in the band of 0.15-0.45
    cycles per pixel, in natural-log units (3.0 = a peak 20x the typical magnitude there).
    """
    lim = limits or DEFAULT_LIMITS["moire"]
    grey = _luma(_crop(image, box, 1.0))
    h, w = grey.shape
    if max(h, w) > _MOIRE_MAX_SIDE:
        f = _MOIRE_MAX_SIDE / float(max(h, w))
        grey = cv2.resize(
            grey, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA
        )
        h, w = grey.shape
    if min(h, w) < 16:
        return CueResult("moire", 0.0, 0.0, lim, {"size": [w, h]})
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spec = np.fft.fftshift(np.abs(np.fft.fft2((grey - grey.mean()) * win)))
    logmag = np.log(spec + 1e-3)
    yy, xx = np.mgrid[0:h, 0:w]
    fy = (yy - h // 2) / float(h)
    fx = (xx - w // 2) / float(w)
    radius = np.hypot(fx, fy)
    ring = np.minimum((radius * 100).astype(np.int64), 100)
    band = (radius >= 0.15) & (radius <= 0.45)
    if not band.any():
        return CueResult("moire", 0.0, 0.0, lim, {"size": [w, h]})
    medians = np.zeros(101, dtype=np.float64)
    for r in np.unique(ring[band]):
        medians[r] = float(np.median(logmag[ring == r]))
    excess = logmag - medians[ring]
    excess[~band] = -np.inf
    k = int(np.argmax(excess))
    peak = float(excess.flat[k])
    ky, kx = divmod(k, w)
    ev = {
        "peak": round(peak, 4),
        "frequency": [round(float(fx[ky, kx]), 4), round(float(fy[ky, kx]), 4)],
        "size": [w, h],
    }
    return CueResult("moire", peak, lim.strength(peak), lim, ev)


def screen_border(image: np.ndarray, box: Box, limits: CueLimits | None = None) -> CueResult:
    """How many sides of the face (0-4) carry a long straight edge in the surrounding context.

    Looks at the face box enlarged x3.2 (clipped). Edges (Canny, thresholds from the median
    grey level) are searched for straight segments (probabilistic Hough) at least 0.9 face
    widths long, within 25 degrees of horizontal or vertical, lying entirely outside the face
    box enlarged x1.3. A vertical segment left of the face counts for the left side, and so
    on. A phone, tablet or sheet of paper held up to the camera typically gives 2-4 sides;
    background furniture usually gives 0-1.
    """
    lim = limits or DEFAULT_LIMITS["screen_border"]
    x0, y0, x1, y1 = _region(image.shape, box, 3.2)
    grey = _luma(image[y0:y1, x0:x1])
    bx, by, bw, bh = box
    # work at a scale where the face is ~120 px wide, so thresholds are size-free
    f = min(1.0, 120.0 / max(bw, 1.0))
    if f < 1.0:
        grey = cv2.resize(
            grey,
            (max(8, round(grey.shape[1] * f)), max(8, round(grey.shape[0] * f))),
            interpolation=cv2.INTER_AREA,
        )
    g8 = np.clip(grey, 0, 255).astype(np.uint8)
    g8 = cv2.GaussianBlur(g8, (3, 3), 0)
    med = float(np.median(g8))
    edges = cv2.Canny(g8, max(10.0, 0.66 * med), max(30.0, 1.33 * med))
    fw = bw * f
    lines = cv2.HoughLinesP(
        edges, 1, np.pi / 180, threshold=40, minLineLength=int(0.9 * fw), maxLineGap=4
    )
    cx, cy = (bx + bw / 2.0 - x0) * f, (by + bh / 2.0 - y0) * f
    ex, ey = bw * f * 1.3 / 2.0, bh * f * 1.3 / 2.0  # half extents of the exclusion zone
    sides: set[str] = set()
    kept = 0
    if lines is not None:
        for seg in lines.reshape(-1, 4).astype(np.float64):
            xa, ya, xb, yb = seg
            ang = abs(np.degrees(np.arctan2(yb - ya, xb - xa))) % 180.0
            vertical = abs(ang - 90.0) <= 25.0
            horizontal = ang <= 25.0 or ang >= 155.0
            if not (vertical or horizontal):
                continue
            # the segment must stay outside the enlarged face box
            xs = np.linspace(xa, xb, 16)
            ys = np.linspace(ya, yb, 16)
            inside = (np.abs(xs - cx) < ex) & (np.abs(ys - cy) < ey)
            if inside.any():
                continue
            mx, my = (xa + xb) / 2.0, (ya + yb) / 2.0
            if vertical:
                sides.add("left" if mx < cx else "right")
            else:
                sides.add("top" if my < cy else "bottom")
            kept += 1
    n = float(len(sides))
    ev = {"sides": sorted(sides), "segments": kept}
    return CueResult("screen_border", n, lim.strength(n), lim, ev)


CueFunction = Callable[[np.ndarray, Box, "CueLimits | None"], CueResult]

#: Every cue this module implements, by name.
CUE_FUNCTIONS: Mapping[str, CueFunction] = MappingProxyType(
    {
        "colour_cast": colour_cast,
        "black_level": black_level,
        "specular": specular,
        "moire": moire,
        "screen_border": screen_border,
    }
)

#: Names of the implemented cues.
CUE_NAMES: tuple[str, ...] = tuple(CUE_FUNCTIONS)


def compute_cues(
    image: np.ndarray,
    box: Box,
    names: tuple[str, ...] | list[str] = CUE_NAMES,
    *,
    limits: Mapping[str, CueLimits] | None = None,
) -> dict[str, CueResult]:
    """Run the named cues on one face; returns ``{name: CueResult}`` in the order given.

    ``image`` is HxWx3 uint8 BGR, ``box`` the face ``(x, y, w, h)`` in its pixels (it must
    overlap the image). ``limits`` overrides :data:`DEFAULT_LIMITS` per cue. Unknown names
    raise ``KeyError``.
    """
    out: dict[str, CueResult] = {}
    for name in names:
        func = CUE_FUNCTIONS[name]
        lim = (limits or {}).get(name)
        out[name] = func(image, box, lim)
    return out
