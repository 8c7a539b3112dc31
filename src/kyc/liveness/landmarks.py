"""MediaPipe Face Landmarker over a frame sequence: landmarks, blendshapes, head pose.

:class:`FaceLandmarkTracker` wraps MediaPipe Tasks' ``FaceLandmarker`` (model
``face_landmarker``, the ``face_landmarker.task`` bundle, resolved and sha256-checked by
:mod:`kyc.models`) in VIDEO running mode, with blendshapes and facial transformation
matrices on. Each :meth:`~FaceLandmarkTracker.process` call takes one BGR frame and its
timestamp and returns a :class:`LandmarkFrame` holding, per face (largest first), a
:class:`FaceObservation`: the 478 landmarks in pixels, the 52 blendshape scores
(``eyeBlinkLeft``, ``eyeBlinkRight``, ``jawOpen``, ...), the 4x4 transformation matrix, head
yaw / pitch / roll in degrees and the face box.

VIDEO mode tracks the face from frame to frame and needs strictly increasing timestamps, so
a tracker belongs to ONE frame sequence (one liveness session) and is not thread-safe.
Close it (:meth:`~FaceLandmarkTracker.close`, or use it as a context manager): MediaPipe holds
a native graph and its threads until then.

Head-pose sign convention (the rotation part ``R`` of the transformation matrix is decomposed
as ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``; MediaPipe's metric space has x to the image right,
y up and the camera looking down -z):

* ``yaw > 0``: the nose points toward the image's RIGHT edge (growing x). In an unmirrored
  camera image that is the subject turning to THEIR OWN LEFT; in a mirrored ("selfie
  preview") image it is the subject turning to their right.
* ``pitch > 0``: the head tilts down (chin toward the chest); ``pitch < 0``: looking up.
* ``roll > 0``: the head rotates counter-clockwise as seen in the image (the eye on the
  image's right side rises).

Checked on the real video ``pad/video/live_person_moving.webm``: in frames 23-43 yaw climbs to
+34 degrees while the nose-tip landmark moves from 0.15 to 0.42 face-widths right of the
face-box centre; in frames 46-66 yaw falls to -24 degrees with the nose 0.26 face-widths left
of centre; pitch and roll agree in sign with the nose-to-eye distance and the eye-line slope.
(Whether that recording was mirrored is not known, so it fixes the image-side convention;
the subject-side reading above assumes an unmirrored camera.)

>>> yaw, pitch, roll = pose_from_matrix(np.eye(4))
>>> (yaw, pitch, roll) == (0.0, 0.0, 0.0)
True
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from kyc.errors import ConfigError, InvalidImage, InvalidRecord, ModelInvalid

__all__ = [
    "FIVE_POINT_INDICES",
    "LANDMARKER_MODEL",
    "FaceLandmarkTracker",
    "FaceObservation",
    "LandmarkFrame",
    "pose_from_matrix",
]

#: Registry name of the MediaPipe Face Landmarker bundle.
LANDMARKER_MODEL = "face_landmarker"

#: Mesh indices giving YuNet-ordered 5 points: subject's right iris centre, left iris centre,
#: nose tip, right mouth corner, left mouth corner ("right" = subject's right = image left in
#: an unmirrored image). Used to align face chips for the embedders in :mod:`kyc.face`.
FIVE_POINT_INDICES: tuple[int, int, int, int, int] = (468, 473, 1, 61, 291)

_N_LANDMARKS = 478


def pose_from_matrix(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from a 4x4 (or 3x3) facial transformation matrix.

    See the module docs for the sign convention.
    """
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -r[1, 2]))))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return yaw + 0.0, pitch + 0.0, roll + 0.0


@dataclass(frozen=True, eq=False)
class FaceObservation:
    """One face in one frame, from the Face Landmarker.

    ``landmarks`` is a read-only ``(478, 3)`` float32 array: x and y in frame pixels, z in
    the same scale (MediaPipe's relative depth times the frame width; smaller is nearer).
    ``blendshapes`` maps the 52 ARKit-style names to scores in [0, 1]. ``matrix`` is the 4x4
    facial transformation matrix; ``yaw``/``pitch``/``roll`` are degrees (see the module
    docs for signs). ``box`` is ``(x, y, w, h)``, the landmarks' extent in pixels.
    """

    landmarks: np.ndarray
    blendshapes: Mapping[str, float]
    matrix: np.ndarray
    yaw: float
    pitch: float
    roll: float
    box: tuple[float, float, float, float]

    @property
    def eye_blink_left(self) -> float:
        """``eyeBlinkLeft`` (the subject's left eye), 0 open .. 1 closed."""
        return float(self.blendshapes.get("eyeBlinkLeft", 0.0))

    @property
    def eye_blink_right(self) -> float:
        """``eyeBlinkRight`` (the subject's right eye), 0 open .. 1 closed."""
        return float(self.blendshapes.get("eyeBlinkRight", 0.0))

    @property
    def jaw_open(self) -> float:
        """``jawOpen``, 0 closed .. 1 wide open."""
        return float(self.blendshapes.get("jawOpen", 0.0))

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.box[2] * self.box[3]

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    def points5(self) -> np.ndarray:
        """``(5, 2)`` float32 points in YuNet order (see :data:`FIVE_POINT_INDICES`)."""
        return np.ascontiguousarray(self.landmarks[list(FIVE_POINT_INDICES), :2])

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (pose, box, the three blendshapes used; no landmark list)."""
        return {
            "box": [round(v, 1) for v in self.box],
            "yaw": round(self.yaw, 2),
            "pitch": round(self.pitch, 2),
            "roll": round(self.roll, 2),
            "eye_blink_left": round(self.eye_blink_left, 4),
            "eye_blink_right": round(self.eye_blink_right, 4),
            "jaw_open": round(self.jaw_open, 4),
        }


@dataclass(frozen=True)
class LandmarkFrame:
    """The landmarker's output for one frame: its timestamp, size and faces (largest first)."""

    timestamp_ms: int
    width: int
    height: int
    faces: tuple[FaceObservation, ...]

    @property
    def face(self) -> FaceObservation | None:
        """The largest face, or ``None`` when no face was found."""
        return self.faces[0] if self.faces else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary."""
        return {
            "timestamp_ms": self.timestamp_ms,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }


def _observation(points: Any, shapes: Any, matrix: Any, width: int, height: int) -> FaceObservation:
    arr = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32)
    if arr.shape != (_N_LANDMARKS, 3):
        raise ModelInvalid(
            f"the face landmarker returned {arr.shape[0]} landmarks; expected {_N_LANDMARKS}"
        )
    arr[:, 0] *= width
    arr[:, 1] *= height
    arr[:, 2] *= width
    arr.setflags(write=False)
    bs = MappingProxyType({str(c.category_name): float(c.score) for c in shapes or ()})
    m = np.array(matrix, dtype=np.float64).reshape(4, 4) if matrix is not None else np.eye(4)
    m.setflags(write=False)
    yaw, pitch, roll = pose_from_matrix(m)
    x0, y0 = float(arr[:, 0].min()), float(arr[:, 1].min())
    x1, y1 = float(arr[:, 0].max()), float(arr[:, 1].max())
    return FaceObservation(arr, bs, m, yaw, pitch, roll, (x0, y0, x1 - x0, y1 - y0))


class FaceLandmarkTracker:
    """MediaPipe Face Landmarker in VIDEO mode for one frame sequence.

    Parameters:
        model: path of the ``.task`` bundle (a file or a folder holding it); ``None``
            resolves the registry model ``face_landmarker`` (``$KYC_MODEL_DIR``, then the
            user cache), sha256-checked.
        num_faces: most faces reported per frame (default 2, so a second person shows up).
        min_face_detection_confidence, min_face_presence_confidence,
        min_tracking_confidence: MediaPipe's thresholds (default 0.5 each).

    The model is loaded on construction: :class:`~kyc.errors.ModelUnavailable` /
    :class:`~kyc.errors.ModelCorrupt` when the file is missing or wrong,
    :class:`~kyc.errors.ModelInvalid` when MediaPipe cannot load it.

    >>> with FaceLandmarkTracker() as tracker:               # doctest: +SKIP
    ...     out = tracker.process(frame_bgr, timestamp_ms=0)
    ...     out.face.yaw, out.face.jaw_open
    (8.1, 0.02)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        num_faces: int = 2,
        min_face_detection_confidence: float = 0.5,
        min_face_presence_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        from kyc.models import model_ref

        if isinstance(num_faces, bool) or not isinstance(num_faces, int) or num_faces < 1:
            raise ConfigError(f"num_faces must be a positive integer, got {num_faces!r}")
        ref = model_ref(LANDMARKER_MODEL, path=model)
        self.model: dict[str, str] = {
            "role": "landmarker",
            "name": ref.name,
            "sha256": ref.sha256,
        }
        self.path = ref.path
        self.num_faces = num_faces
        try:
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(ref.path)),
                running_mode=vision.RunningMode.VIDEO,
                num_faces=num_faces,
                min_face_detection_confidence=float(min_face_detection_confidence),
                min_face_presence_confidence=float(min_face_presence_confidence),
                min_tracking_confidence=float(min_tracking_confidence),
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            self._landmarker: Any = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelInvalid(f"MediaPipe cannot load {ref.path}: {exc}") from None
        self._lock = threading.Lock()
        self._last_ts: int | None = None
        self.frames = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.frames} frames"
        return f"FaceLandmarkTracker(num_faces={self.num_faces}, {state})"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._landmarker is None

    def close(self) -> None:
        """Release MediaPipe's graph and threads (idempotent)."""
        with self._lock:
            lm, self._landmarker = self._landmarker, None
        if lm is not None:
            lm.close()

    def __enter__(self) -> FaceLandmarkTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            self.close()

    def process(self, image: np.ndarray, timestamp_ms: int) -> LandmarkFrame:
        """Landmarks of one ``HxWx3`` uint8 BGR frame taken at ``timestamp_ms``.

        Timestamps must be integers that strictly increase from call to call
        (:class:`~kyc.errors.InvalidRecord` with ``field="timestamp_ms"`` otherwise; the
        frame is not processed). A frame that is not an ``HxWx3`` uint8 array raises
        :class:`~kyc.errors.InvalidImage`. Using a closed tracker raises ``RuntimeError``.
        """
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
            or image.shape[0] < 1
            or image.shape[1] < 1
        ):
            raise InvalidImage("a frame must be an HxWx3 uint8 BGR ndarray")
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int | np.integer):
            raise InvalidRecord(
                f"timestamp_ms must be an integer, got {timestamp_ms!r}", field="timestamp_ms"
            )
        ts = int(timestamp_ms)
        import mediapipe as mp

        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        with self._lock:
            if self._landmarker is None:
                raise RuntimeError("this FaceLandmarkTracker is closed")
            if self._last_ts is not None and ts <= self._last_ts:
                raise InvalidRecord(
                    f"timestamp_ms must increase: {ts} after {self._last_ts}",
                    field="timestamp_ms",
                )
            result = self._landmarker.detect_for_video(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts
            )
            self._last_ts = ts
            self.frames += 1
        shapes = result.face_blendshapes or []
        mats = result.facial_transformation_matrixes or []
        faces = [
            _observation(
                pts,
                shapes[i] if i < len(shapes) else None,
                mats[i] if i < len(mats) else None,
                width,
                height,
            )
            for i, pts in enumerate(result.face_landmarks or [])
        ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return LandmarkFrame(ts, width, height, tuple(faces))
