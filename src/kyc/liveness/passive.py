"""Passive presentation-attack detection (PAD) on one image: is this face live?

:class:`PassiveLiveness` runs the MiniFASNet pair published by minivision-ai
(Silent-Face-Anti-Spoofing, Apache-2.0; ONNX files built by ``kyc models build``) on the face
found by YuNet, adds image cues of recapture (:mod:`kyc.liveness.cues`), and returns a frozen
:class:`LivenessResult`. :func:`check_liveness` is the one-call form.

Preprocessing follows the published models exactly: the face box is scaled x2.7 (MiniFASNetV2)
and x4.0 (MiniFASNetV1SE) about its centre, the scale is reduced when the enlarged box would
not fit in the image, and the box is shifted to stay inside the image; that region is resized
to 80x80 and fed as BGR, raw 0..255, NCHW. Softmax over 3 logits; class 1 is live. The two
models' live probabilities are averaged (``model_score``). Cue strengths then lower that score
in logit space (:func:`fuse_scores`): ``score`` is the fused live probability, and the face is
``live`` when ``score >= threshold``.

What is a result and what is an exception:

* ``status="live"`` / ``"spoof"``: the face was assessed; reason ``PAD_LIVE`` or
  ``PAD_SPOOF_SUSPECTED`` (with the score, threshold and per-model scores), plus one code per
  fused cue that fired (``PAD_COLOUR_CAST``, ``PAD_SCREEN_BORDER``, ``PAD_MOIRE``, ...), and
  ``PAD_MULTIPLE_FACES`` when a second face of similar size was seen (the largest is assessed).
* ``status="not_checked"``: no assessment was possible, which is *not* a spoof verdict:
  ``PAD_NO_FACE_NOT_CHECKED``, ``PAD_FACE_TOO_SMALL_NOT_CHECKED``,
  ``PAD_LOW_LIGHT_NOT_CHECKED`` (face, or the whole image when no face is found, darker than
  ``min_brightness``), ``PAD_GREYSCALE_NOT_CHECKED`` (the models need colour),
  ``PAD_MODEL_UNAVAILABLE`` (a model file is missing, corrupt or unreadable: the message
  says which command produces it). Nothing is built or downloaded at run time.
* An input that is not a decodable image raises the typed
  :class:`~kyc.errors.InvalidImage` subclass of :func:`kyc.image.load_image`; a malformed
  ``face_box`` or option raises :class:`~kyc.errors.ConfigError`.

The shipped threshold and the cues in the default fusion come from
``benchmarks/pad_eval.py`` (see :data:`OPERATING_POINT` and ``benchmarks/RESULTS.md``).

One :class:`PassiveLiveness` may be shared by threads: models load once under a lock, the
onnxruntime sessions are thread-safe, and the detector keeps one OpenCV instance per thread.

>>> from kyc.liveness.passive import crop_patch
>>> import numpy as np
>>> img = np.zeros((480, 640, 3), np.uint8)
>>> crop_patch(img, (300.0, 200.0, 100.0, 120.0), 2.7).shape
(80, 80, 3)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Union

import numpy as np

from kyc.errors import ConfigError, ModelError
from kyc.liveness.cues import CUE_FUNCTIONS, DEFAULT_LIMITS, Box, CueLimits, CueResult
from kyc.reasons import Reason

if TYPE_CHECKING:  # pragma: no cover
    from kyc.face.detect import Face, FaceDetector
    from kyc.models.registry import ModelRef

__all__ = [
    "CUE_REASONS",
    "DEFAULT_CUES",
    "DEFAULT_CUE_WEIGHT",
    "DEFAULT_THRESHOLD",
    "MODEL_SCALES",
    "OPERATING_POINT",
    "PATCH_SIZE",
    "ImageSource",
    "LivenessResult",
    "PassiveLiveness",
    "check_liveness",
    "crop_patch",
    "expanded_box",
    "fuse_scores",
]

#: Anything :func:`kyc.image.load_image` accepts.
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, np.ndarray]

Status = Literal["live", "spoof", "not_checked"]

#: Registry model names and the factor their face box is scaled by (published training crops).
MODEL_SCALES: Mapping[str, float] = MappingProxyType({"minifasnet_v2": 2.7, "minifasnet_v1se": 4.0})

#: Side of the square model input.
PATCH_SIZE = 80

#: Class index of "live" in the models' 3-way output.
LIVE_CLASS = 1

#: Cues in the default fusion: only those ``benchmarks/pad_eval.py`` showed to help.
DEFAULT_CUES: tuple[str, ...] = ("colour_cast",)

#: Logit penalty of a cue at full strength (a full-strength cue takes a model score of 0.999
#: down to about 0.25, and 0.9 down to 0.003).
DEFAULT_CUE_WEIGHT = 8.0

#: The shipped operating point (threshold on the fused live probability).
DEFAULT_THRESHOLD = 0.42

#: The attack presentation classification error rate (APCER, worst attack type) the shipped
#: threshold was set for on the calibration split of ``benchmarks/pad_eval.py``.
DEFAULT_APCER_TARGET = 0.05

#: Where the shipped threshold comes from (reported in every result).
OPERATING_POINT: Mapping[str, Any] = MappingProxyType(
    {
        "name": "pad-minifasnet2-colourcast-v1",
        "threshold": DEFAULT_THRESHOLD,
        "apcer_target": DEFAULT_APCER_TARGET,
        "calibration": (
            "benchmarks/pad_eval.py calibration split: replay_2019 first half (in time "
            "order), silent_face_samples, celebrities13"
        ),
    }
)

#: Reason code per cue, emitted when a fused cue fires (strength >= 0.5).
CUE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "colour_cast": "PAD_COLOUR_CAST",
        "black_level": "PAD_LOW_BLACK_LEVEL",
        "specular": "PAD_SPECULAR_GLARE",
        "moire": "PAD_MOIRE",
        "screen_border": "PAD_SCREEN_BORDER",
    }
)

_CUE_TEXT: Mapping[str, str] = MappingProxyType(
    {
        "colour_cast": "the face has a blue colour cast no lit skin has (screen white point)",
        "black_level": "the face's darkest parts are grey, as on a display or print",
        "specular": "glare of a glossy screen or photo paper on the face",
        "moire": "a periodic interference pattern (pixel grid or halftone) on the face",
        "screen_border": "straight edges of a device or sheet surround the face",
    }
)

_BUILD_HINT = (
    "run `kyc models build minifasnet_v2 minifasnet_v1se` (the .pth sources come from "
    "`kyc models pull minifasnet_v2_pth minifasnet_v1se_pth`, or pull and build in one step "
    "with `kyc models pull minifasnet_v2 minifasnet_v1se`)"
)


# --- geometry -------------------------------------------------------------------------------


def expanded_box(image_shape: tuple[int, ...], box: Box, scale: float) -> tuple[int, int, int, int]:
    """The region the models see: ``(left, top, right, bottom)``, inclusive pixel bounds.

    ``box`` ``(x, y, w, h)`` is scaled about its centre by ``scale``, or by less when the
    scaled box would be larger than the image (the factor is capped at
    ``min((H-1)/h, (W-1)/w)``), then shifted (not clipped) to lie inside the image.
    """
    ih, iw = int(image_shape[0]), int(image_shape[1])
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ConfigError(f"face box must have positive width and height, got {box!r}")
    s = min((ih - 1) / h, (iw - 1) / w, float(scale))
    nw, nh = w * s, h * s
    cx, cy = x + w / 2.0, y + h / 2.0
    left, top = cx - nw / 2.0, cy - nh / 2.0
    right, bottom = cx + nw / 2.0, cy + nh / 2.0
    if left < 0:
        right -= left
        left = 0.0
    if top < 0:
        bottom -= top
        top = 0.0
    if right > iw - 1:
        left -= right - (iw - 1)
        right = float(iw - 1)
    if bottom > ih - 1:
        top -= bottom - (ih - 1)
        bottom = float(ih - 1)
    li, ti = max(0, int(left)), max(0, int(top))
    ri, bi = min(iw - 1, int(right)), min(ih - 1, int(bottom))
    return li, ti, max(li, ri), max(ti, bi)


def crop_patch(image: np.ndarray, box: Box, scale: float, size: int = PATCH_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` BGR uint8 patch a MiniFASNet model sees for face ``box``.

    See :func:`expanded_box` for the region; it is resized with bilinear interpolation (as
    the published models were trained).
    """
    import cv2

    left, top, right, bottom = expanded_box(image.shape, box, scale)
    region = image[top : bottom + 1, left : right + 1]
    return np.asarray(cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR))


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(q / (1.0 - q))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fuse_scores(
    model_score: float,
    cue_strengths: Mapping[str, float],
    weights: Mapping[str, float] | float = DEFAULT_CUE_WEIGHT,
) -> float:
    """Fused live probability: ``sigmoid(logit(model_score) - sum(weight * strength))``.

    ``model_score`` is a live probability in [0, 1]; ``cue_strengths`` maps cue names to
    strengths in [0, 1]; ``weights`` is one weight for every cue or a per-cue mapping (cues
    absent from it weigh 0). With no cue firing the result equals ``model_score``.

    >>> round(fuse_scores(0.9, {"colour_cast": 0.0}), 6)
    0.9
    >>> round(fuse_scores(0.999, {"colour_cast": 1.0}), 2)
    0.25
    """
    penalty = 0.0
    for name, strength in cue_strengths.items():
        w = weights if isinstance(weights, int | float) else weights.get(name, 0.0)
        penalty += float(w) * float(strength)
    if penalty == 0.0:
        return float(model_score)
    return _sigmoid(_logit(float(model_score)) - penalty)


# --- result ---------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class LivenessResult:
    """The outcome of passive liveness on one image.

    ``status`` is ``"live"``, ``"spoof"`` or ``"not_checked"``. ``score`` is the fused live
    probability (``None`` when not checked); the face is live when ``score >= threshold``.
    ``apcer_target`` is the attack acceptance rate (APCER, worst attack type) the threshold
    was set for (``None`` for a caller's own threshold) and ``operating_point`` names it.
    ``model_score`` is the mean of the models' live probabilities before cues,
    ``model_scores`` each model's live probability, ``model_probabilities`` each model's
    3-class softmax, ``cue_scores`` each fused cue's strength and ``cues`` the full cue
    measurements. ``face_box`` / ``face_score`` describe the face assessed, ``faces`` how
    many were detected (``None`` when the caller gave the box). ``models`` lists the files
    used (name, sha256, path); ``reasons`` the reason codes with evidence.
    """

    status: Status
    score: float | None
    threshold: float
    apcer_target: float | None
    operating_point: str
    model_score: float | None = None
    model_scores: Mapping[str, float] = field(default_factory=dict)
    model_probabilities: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    cue_scores: Mapping[str, float] = field(default_factory=dict)
    cues: tuple[CueResult, ...] = ()
    face_box: tuple[float, float, float, float] | None = None
    face_score: float | None = None
    faces: int | None = None
    models: tuple[ModelRef, ...] = ()
    reasons: tuple[Reason, ...] = ()

    @property
    def is_live(self) -> bool:
        """True only for ``status == "live"``."""
        return self.status == "live"

    @property
    def checked(self) -> bool:
        """True when the face was assessed (``live`` or ``spoof``)."""
        return self.status != "not_checked"

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (numbers rounded to 6 decimals)."""
        return {
            "status": self.status,
            "is_live": self.is_live,
            "score": _r(self.score),
            "threshold": _r(self.threshold),
            "apcer_target": _r(self.apcer_target),
            "operating_point": self.operating_point,
            "model_score": _r(self.model_score),
            "model_scores": {k: _r(v) for k, v in self.model_scores.items()},
            "model_probabilities": {
                k: [_r(p) for p in v] for k, v in self.model_probabilities.items()
            },
            "cue_scores": {k: _r(v) for k, v in self.cue_scores.items()},
            "cues": [c.to_dict() for c in self.cues],
            "face_box": None if self.face_box is None else [_r(v, 2) for v in self.face_box],
            "face_score": _r(self.face_score, 4),
            "faces": self.faces,
            "models": [m.to_dict() for m in self.models],
            "reasons": [r.to_dict() for r in self.reasons],
        }


# --- engine ---------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - float(np.max(logits))
    e = np.exp(z)
    return np.asarray(e / e.sum())


def _check_box(box: Any, shape: tuple[int, ...]) -> Box:
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ConfigError(f"face_box must be four numbers (x, y, w, h), got {box!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"face_box must be four finite numbers (x, y, w, h), got {box!r}")
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        raise ConfigError(f"face_box width and height must be positive, got {box!r}")
    ih, iw = shape[0], shape[1]
    if x >= iw or y >= ih or x + w <= 0 or y + h <= 0:
        raise ConfigError(f"face_box {box!r} lies outside the {iw}x{ih} image")
    return (x, y, w, h)


def _luma_mean(image: np.ndarray, region: tuple[int, int, int, int] | None = None) -> float:
    if region is not None:
        x0, y0, x1, y1 = region
        image = image[y0:y1, x0:x1]
    px = image.reshape(-1, 3).astype(np.float32)
    # ITU-R BT.601 luma, as cv2.COLOR_BGR2GRAY
    return float((px @ np.array([0.114, 0.587, 0.299], np.float32)).mean())


def _clip_region(shape: tuple[int, ...], box: Box, scale: float) -> tuple[int, int, int, int]:
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = max(0, int(cx - w * scale / 2.0))
    y0 = max(0, int(cy - h * scale / 2.0))
    x1 = min(int(shape[1]), math.ceil(cx + w * scale / 2.0))
    y1 = min(int(shape[0]), math.ceil(cy + h * scale / 2.0))
    return x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)


def _detector_ref(detector: Any) -> ModelRef:
    from kyc.models.registry import ModelRef

    info = getattr(detector, "model", None)
    if isinstance(info, Mapping):
        return ModelRef(str(info["name"]), str(info["sha256"]), str(info["path"]))
    return ModelRef(type(detector).__name__, "", "")


class PassiveLiveness:
    """MiniFASNet pair + recapture cues; :meth:`check` returns a :class:`LivenessResult`.

    Parameters:
        model_paths: explicit ONNX file (or folder) per registry name (``"minifasnet_v2"``,
            ``"minifasnet_v1se"``); names not given are resolved through ``model_dir`` or the
            registry search (``$KYC_MODEL_DIR``, then the user cache). sha256s are checked
            against the manifest.
        model_dir: a folder holding the built ONNX files.
        detector: the face detector (default: a :class:`~kyc.face.detect.FaceDetector`
            created on first use).
        threshold: live when the fused score is at least this (default: the shipped
            :data:`DEFAULT_THRESHOLD`; a threshold of your own is reported with
            ``apcer_target=None``).
        cues: names of the cues fused with the model score (default :data:`DEFAULT_CUES`;
            ``()`` for the models alone); see :mod:`kyc.liveness.cues`.
        cue_weights: logit penalty per cue at full strength (default
            :data:`DEFAULT_CUE_WEIGHT` each).
        cue_limits: per-cue ramp limits overriding :data:`kyc.liveness.cues.DEFAULT_LIMITS`.
        min_face: smallest face-box side (pixels) assessed; smaller faces are
            ``PAD_FACE_TOO_SMALL_NOT_CHECKED``.
        min_brightness: mean luma (0-255) of the face below which it is
            ``PAD_LOW_LIGHT_NOT_CHECKED`` (also applied to the whole image when no face is
            found).
        min_colourfulness: mean max-min channel spread (0-255) around the face below which the
            image counts as greyscale (``PAD_GREYSCALE_NOT_CHECKED``).
        intra_op_num_threads: onnxruntime threads per session (default: the registry's).

    Nothing is loaded until the first :meth:`check` (or :meth:`load`).
    """

    def __init__(
        self,
        *,
        model_paths: Mapping[str, str | os.PathLike[str]] | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        detector: FaceDetector | None = None,
        threshold: float | None = None,
        cues: Sequence[str] | None = None,
        cue_weights: Mapping[str, float] | None = None,
        cue_limits: Mapping[str, CueLimits] | None = None,
        min_face: float = 48.0,
        min_brightness: float = 40.0,
        min_colourfulness: float = 2.0,
        intra_op_num_threads: int | None = None,
    ) -> None:
        unknown = set(model_paths or {}) - set(MODEL_SCALES)
        if unknown:
            raise ConfigError(
                f"model_paths has unknown model names {sorted(unknown)}; "
                f"expected {sorted(MODEL_SCALES)}"
            )
        if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ConfigError(f"threshold must be in [0, 1]; got {threshold!r}")
        names = tuple(DEFAULT_CUES if cues is None else cues)
        bad = [n for n in names if n not in CUE_FUNCTIONS]
        if bad:
            raise ConfigError(f"unknown cues {bad}; known cues: {', '.join(CUE_FUNCTIONS)}")
        weights = {n: DEFAULT_CUE_WEIGHT for n in names}
        for n, w in (cue_weights or {}).items():
            if n not in names:
                raise ConfigError(f"cue_weights names {n!r}, which is not among cues {names}")
            if not (math.isfinite(w) and w >= 0):
                raise ConfigError(f"cue weight for {n!r} must be finite and >= 0; got {w!r}")
            weights[n] = float(w)
        for n in cue_limits or {}:
            if n not in CUE_FUNCTIONS:
                raise ConfigError(f"cue_limits names unknown cue {n!r}")
        if min_face < 1:
            raise ConfigError(f"min_face must be at least 1 pixel; got {min_face!r}")
        self._paths: dict[str, str | os.PathLike[str] | None] = {
            name: (model_paths or {}).get(name, model_dir) for name in MODEL_SCALES
        }
        self.threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.apcer_target: float | None = DEFAULT_APCER_TARGET if threshold is None else None
        self.operating_point = str(OPERATING_POINT["name"]) if threshold is None else "custom"
        self.cues = names
        self.cue_weights: Mapping[str, float] = MappingProxyType(weights)
        self.cue_limits: Mapping[str, CueLimits] = MappingProxyType(
            {n: (cue_limits or {}).get(n, DEFAULT_LIMITS[n]) for n in names}
        )
        self.min_face = float(min_face)
        self.min_brightness = float(min_brightness)
        self.min_colourfulness = float(min_colourfulness)
        self._threads = intra_op_num_threads
        self._detector = detector
        self._lock = threading.Lock()
        self._sessions: dict[str, Any] | None = None
        self._refs: tuple[ModelRef, ...] = ()

    def __repr__(self) -> str:
        return (
            f"PassiveLiveness(threshold={self.threshold}, cues={self.cues}, "
            f"operating_point={self.operating_point!r})"
        )

    # -- models -----------------------------------------------------------------------------

    def load(self) -> PassiveLiveness:
        """Load both models now (otherwise on first use); returns ``self``.

        Raises :class:`~kyc.errors.ModelError` (missing, corrupt or invalid file); its
        message names the file and the command that builds it.
        """
        self._ensure_loaded()
        return self

    def _ensure_loaded(self) -> dict[str, Any]:
        sessions = self._sessions
        if sessions is not None:
            return sessions
        with self._lock:
            if self._sessions is None:
                from kyc.models.registry import load_session, session_info

                loaded: dict[str, Any] = {}
                refs = []
                for name in MODEL_SCALES:
                    sess = load_session(
                        name, path=self._paths[name], intra_op_num_threads=self._threads
                    )
                    loaded[name] = sess
                    refs.append(session_info(sess))
                self._refs = tuple(refs)
                self._sessions = loaded
            return self._sessions

    @property
    def models(self) -> tuple[ModelRef, ...]:
        """The model files in use (loads them); raises :class:`~kyc.errors.ModelError`."""
        self._ensure_loaded()
        return self._refs

    def _get_detector(self, detector: FaceDetector | None) -> FaceDetector:
        if detector is not None:
            return detector
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    from kyc.face.detect import FaceDetector

                    self._detector = FaceDetector()
        return self._detector

    def model_probabilities(self, image: np.ndarray, box: Box) -> dict[str, np.ndarray]:
        """Each model's 3-class softmax for face ``box`` of a BGR uint8 image.

        Low level (no gates, no cues): ``{name: array([p_class0, p_live, p_class2])}``.
        Raises :class:`~kyc.errors.ModelError` when a model cannot be loaded.
        """
        sessions = self._ensure_loaded()
        out: dict[str, np.ndarray] = {}
        for name, scale in MODEL_SCALES.items():
            patch = crop_patch(image, box, scale)
            x = np.ascontiguousarray(patch.transpose(2, 0, 1)[None].astype(np.float32))
            sess = sessions[name]
            logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            out[name] = _softmax(np.asarray(logits, dtype=np.float64).reshape(-1))
        return out

    # -- checking ---------------------------------------------------------------------------

    def _result(
        self,
        status: Status,
        reasons: list[Reason],
        *,
        score: float | None = None,
        **kw: Any,
    ) -> LivenessResult:
        return LivenessResult(
            status=status,
            score=score,
            threshold=self.threshold,
            apcer_target=self.apcer_target,
            operating_point=self.operating_point,
            reasons=tuple(reasons),
            **kw,
        )

    def check(
        self,
        image: ImageSource,
        *,
        face_box: Sequence[float] | None = None,
        detector: FaceDetector | None = None,
    ) -> LivenessResult:
        """Assess one image; returns a :class:`LivenessResult` (a spoof is a result).

        ``image`` is anything :func:`kyc.image.load_image` accepts (path, bytes, file,
        HxWx3 uint8 BGR array). ``face_box`` ``(x, y, w, h)`` skips detection and assesses
        that box (for callers with their own detector, or tight face crops). ``detector``
        overrides the engine's detector for this call. Raises
        :class:`~kyc.errors.InvalidImage` for input that is not an image and
        :class:`~kyc.errors.ConfigError` for a malformed ``face_box``.
        """
        from kyc.image import load_image

        img = load_image(image)
        reasons: list[Reason] = []
        try:
            self._ensure_loaded()
        except ModelError as exc:
            return self._result(
                "not_checked",
                [
                    Reason(
                        "PAD_MODEL_UNAVAILABLE",
                        f"passive liveness models unavailable ({exc.code}): {_BUILD_HINT}",
                        {"error": exc.code, "detail": exc.message},
                    )
                ],
            )
        models = self._refs

        faces: int | None = None
        face_score: float | None = None
        if face_box is not None:
            box = _check_box(face_box, img.shape)
        else:
            det = self._get_detector(detector)
            try:
                found: list[Face] = det.detect(img)
            except ModelError as exc:
                return self._result(
                    "not_checked",
                    [
                        Reason(
                            "PAD_MODEL_UNAVAILABLE",
                            f"the face detector cannot be used: {exc.message}",
                            {"error": exc.code, "detail": exc.message},
                        )
                    ],
                    models=models,
                )
            faces = len(found)
            models = (*models, _detector_ref(det))
            if not found:
                lum = _luma_mean(img)
                if lum < self.min_brightness:
                    reasons.append(
                        Reason(
                            "PAD_LOW_LIGHT_NOT_CHECKED",
                            f"no face found in a dark image (mean brightness {lum:.0f} < "
                            f"{self.min_brightness:.0f}): retake with more light",
                            {"brightness": round(lum, 2), "limit": self.min_brightness},
                        )
                    )
                else:
                    reasons.append(Reason("PAD_NO_FACE_NOT_CHECKED", "no face found", {"faces": 0}))
                return self._result("not_checked", reasons, faces=0, models=models)
            from kyc.face.detect import select_face

            sel = select_face(found, img.shape, policy="largest")
            chosen = sel.face if sel.face is not None else found[0]
            box = chosen.box
            face_score = chosen.score
            if sel.multiple:
                reasons.append(
                    Reason(
                        "PAD_MULTIPLE_FACES",
                        f"{sel.significant} faces of similar size; the largest was assessed",
                        sel.evidence(),
                    )
                )
        common: dict[str, Any] = {
            "face_box": tuple(float(v) for v in box),
            "face_score": face_score,
            "faces": faces,
            "models": models,
        }

        side = min(box[2], box[3])
        if side < self.min_face:
            reasons.append(
                Reason(
                    "PAD_FACE_TOO_SMALL_NOT_CHECKED",
                    f"face box {side:.0f} px is smaller than {self.min_face:.0f} px",
                    {"face_side": round(side, 2), "limit": self.min_face},
                )
            )
            return self._result("not_checked", reasons, **common)
        face_region = _clip_region(img.shape, box, 1.0)
        lum = _luma_mean(img, face_region)
        if lum < self.min_brightness:
            reasons.append(
                Reason(
                    "PAD_LOW_LIGHT_NOT_CHECKED",
                    f"face too dark to assess (mean brightness {lum:.0f} < "
                    f"{self.min_brightness:.0f}): retake with more light",
                    {"brightness": round(lum, 2), "limit": self.min_brightness},
                )
            )
            return self._result("not_checked", reasons, **common)
        x0, y0, x1, y1 = _clip_region(img.shape, box, 1.5)
        around = img[y0:y1, x0:x1].astype(np.int16)
        spread = float((around.max(axis=2) - around.min(axis=2)).mean())
        if spread < self.min_colourfulness:
            reasons.append(
                Reason(
                    "PAD_GREYSCALE_NOT_CHECKED",
                    "the image has no colour (greyscale); the liveness models need a colour "
                    "camera picture",
                    {"channel_spread": round(spread, 3), "limit": self.min_colourfulness},
                )
            )
            return self._result("not_checked", reasons, **common)

        probs = self.model_probabilities(img, box)
        model_scores = {n: float(p[LIVE_CLASS]) for n, p in probs.items()}
        model_score = float(np.mean(list(model_scores.values())))
        cue_results = tuple(CUE_FUNCTIONS[n](img, box, self.cue_limits[n]) for n in self.cues)
        strengths = {c.name: c.strength for c in cue_results}
        score = fuse_scores(model_score, strengths, self.cue_weights)
        live = score >= self.threshold
        evidence = {
            "score": round(score, 6),
            "threshold": self.threshold,
            "model_score": round(model_score, 6),
            "model_scores": {k: round(v, 6) for k, v in model_scores.items()},
            "apcer_target": self.apcer_target,
        }
        if live:
            reasons.insert(
                0,
                Reason(
                    "PAD_LIVE",
                    f"live: score {score:.3f} >= threshold {self.threshold:.3f}",
                    evidence,
                ),
            )
        else:
            reasons.insert(
                0,
                Reason(
                    "PAD_SPOOF_SUSPECTED",
                    f"presentation attack suspected: score {score:.3f} < threshold "
                    f"{self.threshold:.3f}",
                    evidence,
                ),
            )
        for c in cue_results:
            if c.fired and self.cue_weights.get(c.name, 0.0) > 0:
                reasons.append(
                    Reason(
                        CUE_REASONS[c.name],
                        _CUE_TEXT[c.name],
                        {
                            "value": round(c.value, 4),
                            "strength": round(c.strength, 4),
                            **dict(c.evidence),
                        },
                    )
                )
        return self._result(
            "live" if live else "spoof",
            reasons,
            score=score,
            model_score=model_score,
            model_scores=model_scores,
            model_probabilities={
                n: (float(p[0]), float(p[1]), float(p[2])) for n, p in probs.items()
            },
            cue_scores=strengths,
            cues=cue_results,
            **common,
        )


_default_lock = threading.Lock()
_default_engine: PassiveLiveness | None = None


def _default() -> PassiveLiveness:
    global _default_engine
    if _default_engine is None:
        with _default_lock:
            if _default_engine is None:
                _default_engine = PassiveLiveness()
    return _default_engine


def check_liveness(
    image: ImageSource,
    *,
    detector: FaceDetector | None = None,
    face_box: Sequence[float] | None = None,
    engine: PassiveLiveness | None = None,
) -> LivenessResult:
    """Passive liveness of the (largest) face in ``image``: a :class:`LivenessResult`.

    Uses ``engine`` when given, else a shared default :class:`PassiveLiveness` (shipped
    threshold and cues; models resolved through ``$KYC_MODEL_DIR`` and the user cache,
    loaded once). ``detector`` and ``face_box`` are passed to :meth:`PassiveLiveness.check`.
    A spoof, a missing face or a missing model is a result; only undecodable input raises
    (:class:`~kyc.errors.InvalidImage`).

    >>> r = check_liveness("selfie.jpg")  # doctest: +SKIP
    >>> r.status, r.score, r.threshold, r.codes  # doctest: +SKIP
    ('live', 0.97, 0.5, ('PAD_LIVE',))
    """
    eng = engine if engine is not None else _default()
    return eng.check(image, face_box=face_box, detector=detector)
