"""Face detection with YuNet (boxes + 5 landmarks) and the multi-face policy.

:class:`FaceDetector` runs OpenCV's ``cv2.FaceDetectorYN`` on the YuNet 2023mar ONNX file
resolved by the model registry (``yunet_2023mar``). YuNet was trained on faces of roughly
10-300 px, so large photos are downscaled (long side <= ``max_side``, default 1280) before
detection and the boxes and landmarks are mapped back to the original pixels. Small images are
never upscaled: YuNet pads them internally, which finds small faces that a 5x blow-up misses.

``cv2.FaceDetectorYN`` keeps per-call state and is not thread-safe, so every thread gets its
own instance (``threading.local``); one :class:`FaceDetector` can be shared by many threads.
The model file is read and its sha256 checked once; every instance is built from those
checked bytes (never from the path again), so a file swapped later is never run.

:func:`select_face` applies the multi-face policy: ``"largest"`` (default), ``"centre"`` (the
face nearest the image centre) or ``"reject"`` (no face is chosen when a second face matters).
A second face *matters* when its box area is at least ``significant_ratio`` (default 0.25) of
the largest face's: an ID card held next to the face, a person close behind.

>>> import numpy as np
>>> face = Face(box=(10.0, 20.0, 100.0, 120.0),
...             landmarks=np.array([[40, 60], [80, 60], [60, 85], [45, 110], [75, 110]]),
...             score=0.93)
>>> face.area, face.inter_eye
(12000.0, 40.0)
>>> sel = select_face([face], (480, 640, 3))
>>> sel.face is face, sel.multiple
(True, False)
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from kyc.errors import ConfigError, InvalidImage, ModelCorrupt, ModelInvalid, ModelUnavailable

__all__ = [
    "DETECTOR_MODEL",
    "MULTI_FACE_POLICIES",
    "Face",
    "FaceDetector",
    "FaceSelection",
    "MultiFacePolicy",
    "select_face",
]

#: Registry name of the detector model.
DETECTOR_MODEL = "yunet_2023mar"

MultiFacePolicy = Literal["largest", "centre", "reject"]
#: Accepted values of the multi-face policy (``"center"`` is accepted as an alias).
MULTI_FACE_POLICIES: tuple[str, ...] = ("largest", "centre", "reject")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in ORIGINAL image pixels.

    ``box`` is ``(x, y, w, h)`` and may extend beyond the image (a face cut by the frame).
    ``landmarks`` is a read-only ``(5, 2)`` float32 array in YuNet order: right eye, left eye,
    nose tip, right mouth corner, left mouth corner, where "right" is the subject's right,
    i.e. the point with the smaller x in an upright, unmirrored photo. ``score`` is YuNet's
    confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    def __post_init__(self) -> None:
        pts = np.array(self.landmarks, dtype=np.float32).reshape(5, 2)
        pts.setflags(write=False)
        object.__setattr__(self, "landmarks", pts)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre ``(x, y)``."""
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    @property
    def inter_eye(self) -> float:
        """Distance between the two eye landmarks, in pixels."""
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"box": [x, y, w, h], "landmarks": [[x, y] * 5], "score"}``."""
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class FaceSelection:
    """The outcome of the multi-face policy on one image.

    ``face`` is the chosen face (``None`` when there is none, or when the ``"reject"`` policy
    refused to choose); ``count`` how many faces were detected; ``significant`` how many have
    an area of at least ``significant_ratio`` of the largest (the largest included);
    ``second_ratio`` the second-largest face's area over the largest's (0.0 with one face);
    ``multiple`` is true when ``significant > 1``; ``rejected`` when the policy refused.
    """

    face: Face | None
    count: int
    significant: int
    second_ratio: float
    policy: str
    multiple: bool
    rejected: bool = False
    faces: tuple[Face, ...] = field(default=(), repr=False)

    def evidence(self) -> dict[str, Any]:
        """Evidence for a ``MULTIPLE_FACES`` reason (plain JSON types)."""
        return {
            "count": self.count,
            "significant": self.significant,
            "second_ratio": round(self.second_ratio, 4),
            "policy": self.policy,
        }


def _normalise_policy(policy: str) -> str:
    value = "centre" if policy == "center" else policy
    if value not in MULTI_FACE_POLICIES:
        raise ConfigError(
            f"multi_face policy must be one of {', '.join(MULTI_FACE_POLICIES)}; got {policy!r}"
        )
    return value


def select_face(
    faces: Sequence[Face],
    image_shape: tuple[int, ...],
    *,
    policy: str = "largest",
    significant_ratio: float = 0.25,
) -> FaceSelection:
    """Choose one face from ``faces`` (as returned by :meth:`FaceDetector.detect`).

    ``image_shape`` is the image's ``(height, width[, channels])``; ``policy`` is
    ``"largest"``, ``"centre"`` or ``"reject"``; a face other than the largest *matters* when
    its area is at least ``significant_ratio`` times the largest's. Returns a
    :class:`FaceSelection`; under ``"reject"`` with a second face that matters, its ``face``
    is ``None`` and ``rejected`` is true. Small background faces never cause a rejection.
    """
    pol = _normalise_policy(policy)
    if not 0.0 < significant_ratio <= 1.0:
        raise ConfigError(f"significant_ratio must be in (0, 1]; got {significant_ratio!r}")
    ordered = sorted(faces, key=lambda f: f.area, reverse=True)
    if not ordered:
        return FaceSelection(None, 0, 0, 0.0, pol, False, faces=())
    largest = ordered[0].area
    second_ratio = ordered[1].area / largest if len(ordered) > 1 and largest > 0 else 0.0
    significant = sum(1 for f in ordered if largest > 0 and f.area >= significant_ratio * largest)
    multiple = significant > 1
    chosen: Face | None = ordered[0]
    rejected = False
    if pol == "centre":
        cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
        chosen = min(ordered, key=lambda f: math.hypot(f.centre[0] - cx, f.centre[1] - cy))
    elif pol == "reject" and multiple:
        chosen, rejected = None, True
    return FaceSelection(
        chosen, len(ordered), significant, second_ratio, pol, multiple, rejected, tuple(ordered)
    )


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidImage(
            f"expected an HxWx3 uint8 BGR ndarray, got {type(image).__name__}; "
            "decode files with kyc.image.load_image first"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImage(
            f"expected an HxWx3 uint8 BGR ndarray, got dtype {image.dtype} shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImage(f"image has no pixels (shape {image.shape})")
    return np.ascontiguousarray(image)


class FaceDetector:
    """YuNet face detector; :meth:`detect` returns faces largest first.

    Parameters:
        model_path: the YuNet ONNX file; ``None`` resolves ``yunet_2023mar`` through the model
            registry (explicit path, ``KYC_MODEL_DIR``, user cache; sha256 checked).
        score_threshold: minimum YuNet confidence (0.6 keeps real faces seen at 0.7-0.8 in
            large, downscaled photos while dropping the 0.5-0.6 false positives seen on the
            shared celebrity photos).
        nms_threshold: IoU for non-maximum suppression.
        top_k: candidates kept before NMS.
        max_side: images whose long side exceeds this are downscaled (INTER_AREA) to it before
            detection. Smaller images are used as they are (never upscaled).

    One instance may be shared by many threads; each thread lazily builds its own
    ``cv2.FaceDetectorYN``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int = 1280,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in [0, 1]; got {score_threshold!r}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold must be in (0, 1]; got {nms_threshold!r}")
        if max_side < 32:
            raise ConfigError(f"max_side must be at least 32 pixels; got {max_side!r}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.max_side = int(max_side)
        self._explicit_path = model_path
        self._path: str | None = None
        self._buffer: np.ndarray | None = None  # the checked model bytes every thread loads
        self._model: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- model ------------------------------------------------------------------------------

    def _resolve(self) -> str:
        """Resolve the model file once and keep its checked bytes.

        The registry finds the file (and reports a missing or corrupt one); the bytes are
        then read once and *their* sha256 is checked against the manifest, so every
        thread's detector is built from exactly the bytes that were checked: a file
        replaced later is never loaded.
        """
        if self._path is None:
            with self._lock:
                if self._path is None:
                    from kyc.models import model_spec, resolve_model

                    path = resolve_model(DETECTOR_MODEL, self._explicit_path)
                    try:
                        data = path.read_bytes()
                    except OSError as exc:
                        raise ModelUnavailable(
                            f"cannot read {path}: {exc.strerror or exc}"
                        ) from None
                    digest = hashlib.sha256(data).hexdigest()
                    spec = model_spec(DETECTOR_MODEL)
                    if not spec.accepts(digest):
                        raise ModelCorrupt(
                            f"model file {path} has sha256 {digest}, which the manifest does "
                            f"not accept for {DETECTOR_MODEL!r} (it changed while being "
                            f"read); expected {' or '.join(spec.sha256)}"
                        )
                    buf = np.frombuffer(data, dtype=np.uint8)
                    buf.setflags(write=False)
                    self._buffer = buf
                    self._model = {"name": DETECTOR_MODEL, "sha256": digest, "path": str(path)}
                    self._path = str(path)
        return self._path

    @property
    def model(self) -> dict[str, str]:
        """``{"name", "sha256", "path"}`` of the detector file (resolved on first use).

        ``sha256`` is the digest of the bytes the detectors were built from.
        """
        self._resolve()
        assert self._model is not None
        return dict(self._model)

    def _instance(self) -> Any:
        det = getattr(self._local, "det", None)
        if det is None:
            path = self._resolve()
            buf = self._buffer
            assert buf is not None
            old = cv2.utils.logging.getLogLevel()
            try:
                # OpenCV warns on every creation that the new DNN engine ignores the target.
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
                det = cv2.FaceDetectorYN.create(
                    "onnx", buf, np.empty(0, dtype=np.uint8), (320, 320),
                    self.score_threshold, self.nms_threshold, self.top_k,
                )
            except cv2.error as exc:
                raise ModelInvalid(f"cannot load the YuNet detector from {path}: {exc}") from exc
            finally:
                cv2.utils.logging.setLogLevel(old)
            self._local.det = det
        return det

    # -- detection --------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an HxWx3 uint8 BGR image; returns :class:`Face` s largest first.

        Boxes and landmarks are in the input image's pixels whatever the internal scale.
        An image without faces gives ``[]``. A non-image array raises ``InvalidImage``.
        """
        img = _check_image(image)
        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / float(max(h, w)))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            sx, sy = w / size[0], h / size[1]
        else:
            small, sx, sy = img, 1.0, 1.0
        det = self._instance()
        det.setInputSize((small.shape[1], small.shape[0]))
        _, rows = det.detect(small)
        if rows is None or len(rows) == 0:
            return []
        faces = []
        for row in np.asarray(rows, dtype=np.float64):
            box = (row[0] * sx, row[1] * sy, row[2] * sx, row[3] * sy)
            pts = row[4:14].reshape(5, 2) * np.array([sx, sy])
            faces.append(Face(box=box, landmarks=pts, score=float(row[14])))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
