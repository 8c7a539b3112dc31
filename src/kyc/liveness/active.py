"""Active liveness: a challenge-response session over timestamped frames.

A server issues a :class:`~kyc.liveness.challenge.Challenge` (random moves, single-use nonce,
expiry; see :mod:`kyc.liveness.challenge`), the client films the user performing the moves
and sends the frames with their capture timestamps, and an :class:`ActiveLivenessSession`
judges them:

* **Moves** are events on the per-frame time series from MediaPipe's Face Landmarker
  (:mod:`kyc.liveness.landmarks`), each with hysteresis so one gesture is one event:

  - ``blink``: ``eyeBlinkLeft`` and ``eyeBlinkRight`` both above ``blink_closed`` then both
    below ``blink_open`` within ``blink_max_ms``;
  - ``turn_left`` / ``turn_right``: yaw beyond ``turn_deg`` from the session's neutral yaw
    (the median over the first ``neutral_ms`` of face frames) for ``turn_hold_ms``; re-armed
    once the head is back within ``turn_release_deg``. "Left" is the subject's own left:
    with unmirrored frames (what a camera delivers) that is a positive yaw, the nose moving
    toward the image's right edge; set ``mirrored=True`` for mirrored (selfie-preview)
    frames;
  - ``open_mouth``: ``jawOpen`` above ``mouth_open`` for ``mouth_hold_ms``;
  - ``read_digits``: the number of mouth open-close cycles (``jawOpen`` above
    ``speech_open`` then below ``speech_close``) while reading, within ``digit_tolerance``
    of the number of digits; reading ends after ``read_quiet_ms`` with the mouth closed.

  Moves must come in the issued order. A deliberate move other than the expected one (a turn
  or a wide mouth opening; blinks are involuntary and never count) is ``WRONG_MOVE``. A step
  not done within its ``timeout_ms`` of frame time is ``CHALLENGE_TIMEOUT``.
* **Same face throughout**: near-frontal faces are sampled every ``face_interval_ms`` (and
  right after the face jumps or reappears), aligned with the landmarker's 5 points and
  embedded with the :class:`~kyc.face.verify.FaceVerifier`'s embedder; a sample farther than
  ``face_switch_threshold`` from the closest reference (the first ``face_references``
  samples from well-posed frames, each checked against those before it) is
  ``FACE_SWITCHED``.
* **Plausible frames**: runs of identical or near-identical consecutive frames
  (``FROZEN_FRAMES``), timestamps that go backwards or jump (``TIMESTAMP_JUMP``), the face
  gone for too long (``FACE_LOST``), the challenge past its expiry on the server clock
  (``CHALLENGE_TIMEOUT``).
* **Passive PAD** (:mod:`kyc.liveness.passive` when installed, or any checker passed in) on
  sampled frames: when at least ``pad_spoof_fraction`` of the checked samples are spoofs the
  session fails with ``REPLAY_SUSPECTED``, so a replayed video that performs the moves still
  fails. PAD that cannot run (module absent, model missing) is recorded as
  ``PAD_NOT_CHECKED`` and does not fail the session.

:meth:`ActiveLivenessSession.finish` returns a frozen :class:`ActiveLivenessResult`: status
``passed`` / ``failed`` / ``not_checked`` (no frames, or no face in any frame), reason codes
with evidence and per-step timing. The first failure ends the processing of further frames.

>>> from kyc.liveness.challenge import ChallengeIssuer
>>> issuer = ChallengeIssuer(b"a deployment secret of 32 bytes!")
>>> ch = issuer.issue(subject="applicant-1")                      # send ch.to_dict() out
>>> s = ActiveLivenessSession(ch.token, issuer=issuer, subject="applicant-1")  # doctest: +SKIP
>>> for frame, ts in frames:                                       # doctest: +SKIP
...     progress = s.feed(frame, ts)
>>> result = s.finish()                                            # doctest: +SKIP
>>> result.status, result.codes                                    # doctest: +SKIP
('passed', ('CHALLENGE_PASSED',))
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from kyc.errors import ConfigError, InvalidRecord, KycError, ModelError
from kyc.liveness.challenge import Challenge, ChallengeIssuer, ChallengeStep, Move, Redemption
from kyc.liveness.landmarks import FaceLandmarkTracker, FaceObservation, LandmarkFrame
from kyc.reasons import Reason

if TYPE_CHECKING:  # pragma: no cover
    from kyc.face.verify import FaceVerifier

__all__ = [
    "DLIB_SWITCH_DISTANCE",
    "ActiveConfig",
    "ActiveLivenessResult",
    "ActiveLivenessSession",
    "ActiveProgress",
    "LandmarkSource",
    "PassiveCheck",
    "StepResult",
    "frames_from_sequence",
]

#: Default ``face_switch_threshold`` for the dlib embedder (Euclidean distance), on chips
#: aligned with the landmarker's 5 points. Measured on the live video
#: ``pad/video/live_person_moving.webm``: sampling every frame the session would sample
#: (within 25 degrees of frontal, eyes open), from sessions starting at every 8th frame, the
#: largest distance to the session's references was 0.575; 30 photos of other people lay
#: 0.72-0.95 from its first frame. Within-session distances run higher than photo-to-photo
#: ones of the same person would suggest (motion blur, changing light), hence a threshold
#: looser than the FMR-calibrated verification profile.
DLIB_SWITCH_DISTANCE = 0.65

SessionStatus = Literal["passed", "failed", "not_checked"]
ProgressState = Literal["waiting_face", "calibrating", "in_progress", "completed", "failed"]
Clock = Callable[[], float]

_DELIBERATE = ("turn_left", "turn_right", "open_mouth")
_GREY_SIZE = (80, 60)


@runtime_checkable
class LandmarkSource(Protocol):
    """What the session needs from a landmarker (:class:`FaceLandmarkTracker` by default)."""

    def process(self, image: np.ndarray, timestamp_ms: int) -> LandmarkFrame:
        """Landmarks of one BGR frame at ``timestamp_ms`` (strictly increasing)."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


#: A passive PAD check: a callable ``image -> result`` or an object with ``check(image)``;
#: the result has ``status`` (``"live"``, ``"spoof"`` or ``"not_checked"``) and optionally
#: ``score``. :func:`kyc.liveness.passive.check_liveness` fits.
PassiveCheck = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class ActiveConfig:
    """Thresholds of an :class:`ActiveLivenessSession` (angles in degrees, times in ms).

    The move thresholds were set on MediaPipe's blendshapes and pose for the live video in
    the shared data (head turns of 20-40 degrees, blinks reaching 0.6-0.7 on both eyes,
    spontaneous ``jawOpen`` below 0.35); the mouth and digit-reading thresholds have no real
    recording behind them yet: tune them on your own captures.
    """

    neutral_ms: int = 300
    neutral_min_frames: int = 3
    turn_deg: float = 18.0
    turn_release_deg: float = 8.0
    turn_hold_ms: int = 60
    blink_closed: float = 0.5
    blink_open: float = 0.35
    blink_max_ms: int = 700
    mouth_open: float = 0.45
    mouth_release: float = 0.15
    mouth_hold_ms: int = 150
    speech_open: float = 0.18
    speech_close: float = 0.08
    read_quiet_ms: int = 800
    digit_tolerance: int = 1
    mirrored: bool = False
    wrong_moves: tuple[str, ...] = _DELIBERATE
    max_gap_ms: int = 1000
    max_face_lost_ms: int = 1500
    frozen_pixel_eps: float = 0.1
    frozen_near_eps: float = 0.6
    frozen_landmark_eps: float = 0.1
    frozen_min_frames: int = 8
    face_interval_ms: int = 300
    face_max_angle: float = 25.0
    face_ref_angle: float = 15.0
    face_references: int = 3
    face_max_samples: int = 40
    face_switch_threshold: float | None = None
    pad_interval_ms: int = 1000
    pad_max_samples: int = 5
    pad_spoof_fraction: float = 0.5

    def __post_init__(self) -> None:
        for f, v in asdict(self).items():
            if f in ("mirrored", "wrong_moves", "face_switch_threshold"):
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigError(f"ActiveConfig.{f} must be a finite number, got {v!r}")
            if v < 0:
                raise ConfigError(f"ActiveConfig.{f} must not be negative, got {v!r}")
        pairs = [
            ("turn_release_deg", "turn_deg"),
            ("blink_open", "blink_closed"),
            ("mouth_release", "mouth_open"),
            ("speech_close", "speech_open"),
            ("frozen_pixel_eps", "frozen_near_eps"),
        ]
        for lo, hi in pairs:
            if getattr(self, lo) >= getattr(self, hi):
                raise ConfigError(f"ActiveConfig.{lo} must be below {hi} (hysteresis)")
        if not 0 < self.pad_spoof_fraction <= 1:
            raise ConfigError("ActiveConfig.pad_spoof_fraction must be in (0, 1]")
        if min(self.frozen_min_frames, self.neutral_min_frames, self.face_references) < 1:
            raise ConfigError(
                "frozen_min_frames, neutral_min_frames and face_references must be >= 1"
            )
        known = {m.value for m in Move}
        bad = [m for m in self.wrong_moves if m not in known]
        if bad:
            raise ConfigError(f"ActiveConfig.wrong_moves has unknown moves {bad}")
        thr = self.face_switch_threshold
        if thr is not None and (isinstance(thr, bool) or not math.isfinite(float(thr))):
            raise ConfigError(f"face_switch_threshold must be a finite number, got {thr!r}")


@dataclass(frozen=True)
class StepResult:
    """One challenge step: its move, outcome and timing (ms from the session's first frame).

    ``status`` is ``"passed"``, ``"failed"``, ``"pending"`` (under way when the session
    ended) or ``"not_started"``. ``evidence`` holds what the detector measured (peak yaw,
    eye-closure time, mouth cycles, ...).
    """

    index: int
    move: str
    status: Literal["passed", "failed", "pending", "not_started"]
    started_ms: int | None = None
    completed_ms: int | None = None
    timeout_ms: int = 0
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> int | None:
        """Time from the step's start to its completion (``None`` unless completed)."""
        if self.started_ms is None or self.completed_ms is None:
            return None
        return self.completed_ms - self.started_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "index": self.index,
            "move": self.move,
            "status": self.status,
            "started_ms": self.started_ms,
            "completed_ms": self.completed_ms,
            "duration_ms": self.duration_ms,
            "timeout_ms": self.timeout_ms,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class ActiveProgress:
    """Where a session stands after a frame (returned by :meth:`ActiveLivenessSession.feed`).

    ``state``: ``waiting_face``, ``calibrating`` (learning the neutral pose),
    ``in_progress``, ``completed`` (every move done; call :meth:`~ActiveLivenessSession.finish`
    for the verdict) or ``failed``. ``step`` is the index of the current step (the number of
    steps once completed), ``move`` / ``prompt`` what the user should do now, ``face``
    whether this frame had a face, ``reasons`` the failure reasons so far.
    """

    state: ProgressState
    step: int
    total_steps: int
    move: str | None
    prompt: str | None
    face: bool
    timestamp_ms: int | None
    reasons: tuple[Reason, ...] = ()

    @property
    def done(self) -> bool:
        """True when no further frame will change the outcome."""
        return self.state in ("completed", "failed")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "state": self.state,
            "step": self.step,
            "total_steps": self.total_steps,
            "move": self.move,
            "prompt": self.prompt,
            "face": self.face,
            "timestamp_ms": self.timestamp_ms,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class ActiveLivenessResult:
    """The verdict of an active-liveness session.

    ``status`` is ``"passed"`` (every move in order, nothing implausible), ``"failed"`` or
    ``"not_checked"`` (no frames, or no face in any frame); ``passed`` is true only for
    ``"passed"``. ``reasons`` carries the codes with evidence (``CHALLENGE_PASSED``,
    ``CHALLENGE_TIMEOUT``, ``CHALLENGE_INCOMPLETE``, ``WRONG_MOVE``,
    ``READ_DIGITS_MISMATCH``, ``FACE_SWITCHED``, ``FACE_LOST``, ``FROZEN_FRAMES``,
    ``TIMESTAMP_JUMP``, ``REPLAY_SUSPECTED``, ``NONCE_REUSED``, ``CHALLENGE_INVALID``,
    ``CHALLENGE_SUBJECT_MISMATCH``, ``NO_FACE``, ``NO_FRAMES``; informational:
    ``PAD_NOT_CHECKED``, ``FACE_CONTINUITY_NOT_CHECKED``, ``MULTIPLE_FACES``). ``steps`` has
    per-step timing; ``pad`` and ``face_continuity`` summarise those checks; ``neutral`` the
    neutral head pose; ``models`` the models used. Contains no pixels and no landmarks.
    """

    status: SessionStatus
    passed: bool
    nonce: str
    steps: tuple[StepResult, ...]
    reasons: tuple[Reason, ...]
    frames: int
    face_frames: int
    duration_ms: int
    neutral: Mapping[str, float] | None
    pad: Mapping[str, Any]
    face_continuity: Mapping[str, Any]
    models: tuple[Mapping[str, str], ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the whole result."""
        return {
            "status": self.status,
            "passed": self.passed,
            "nonce": self.nonce,
            "steps": [s.to_dict() for s in self.steps],
            "reasons": [r.to_dict() for r in self.reasons],
            "frames": self.frames,
            "face_frames": self.face_frames,
            "duration_ms": self.duration_ms,
            "neutral": dict(self.neutral) if self.neutral is not None else None,
            "pad": _plain(self.pad),
            "face_continuity": _plain(self.face_continuity),
            "models": [dict(m) for m in self.models],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- move detectors ---------------------------------------------------------------------------


class _Threshold:
    """A value crossing ``hi`` and held for ``hold_ms`` is one event; re-armed below ``lo``.

    Starts disarmed: the value must first be below ``lo`` (so a pose held from before the
    step does not count).
    """

    def __init__(self, hi: float, lo: float, hold_ms: int) -> None:
        self.hi, self.lo, self.hold = hi, lo, hold_ms
        self.armed = False
        self.since: int | None = None
        self.peak = 0.0

    def update(self, ts: int, value: float) -> dict[str, Any] | None:
        if not self.armed:
            if value < self.lo:
                self.armed, self.since, self.peak = True, None, 0.0
            return None
        if value > self.hi:
            if self.since is None:
                self.since = ts
            self.peak = max(self.peak, value)
            if ts - self.since >= self.hold:
                self.armed = False
                return {"peak": round(self.peak, 3), "threshold": self.hi, "onset_ms": self.since}
        else:
            self.since, self.peak = None, 0.0
        return None


class _Blink:
    """Both eyes closed (> ``closed``) then both open (< ``open``) within ``max_ms``."""

    def __init__(self, closed: float, open_: float, max_ms: int) -> None:
        self.closed_thr, self.open_thr, self.max_ms = closed, open_, max_ms
        self.closed_at: int | None = None
        self.peak = 0.0

    def update(self, ts: int, left: float, right: float) -> dict[str, Any] | None:
        if self.closed_at is None:
            if min(left, right) > self.closed_thr:
                self.closed_at, self.peak = ts, min(left, right)
            return None
        self.peak = max(self.peak, min(left, right))
        if max(left, right) < self.open_thr:
            closed_for = ts - self.closed_at
            self.closed_at = None
            if closed_for <= self.max_ms:
                return {
                    "closed_ms": closed_for,
                    "peak": round(self.peak, 3),
                    "threshold": self.closed_thr,
                }
        return None


class _Cycles:
    """Counts mouth open-close cycles (``jawOpen`` above ``hi`` then below ``lo``)."""

    def __init__(self, hi: float, lo: float) -> None:
        self.hi, self.lo = hi, lo
        self.open = False
        self.count = 0
        self.last_close: int | None = None
        self.peak = 0.0

    def update(self, ts: int, jaw: float) -> None:
        self.peak = max(self.peak, jaw)
        if not self.open and jaw > self.hi:
            self.open = True
        elif self.open and jaw < self.lo:
            self.open = False
            self.count += 1
            self.last_close = ts


# --- the session ------------------------------------------------------------------------------


@dataclass
class _StepState:
    step: ChallengeStep
    status: Literal["passed", "failed", "pending", "not_started"] = "not_started"
    started: int | None = None
    completed: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class ActiveLivenessSession:
    """Judge one challenge-response attempt from timestamped frames.

    Parameters:
        challenge: the :class:`~kyc.liveness.challenge.Challenge` or its signed token (a
            token needs ``issuer``).
        issuer: the :class:`~kyc.liveness.challenge.ChallengeIssuer` that signed it; when
            given, the challenge is redeemed now (signature, expiry, subject, single-use
            nonce) and a refusal (``NONCE_REUSED``, ``CHALLENGE_TIMEOUT``,
            ``CHALLENGE_INVALID``, ``CHALLENGE_SUBJECT_MISMATCH``) fails the session before
            any frame. Without it the caller vouches for the challenge (expiry still checked).
        subject: the subject the challenge was issued to (when it was bound to one).
        verifier: the :class:`~kyc.face.verify.FaceVerifier` whose embedder checks that the
            face stays the same; ``None`` builds the default one on first use.
        passive: a :data:`PassiveCheck`; ``None`` uses
            :func:`kyc.liveness.passive.check_liveness` when that module can be imported.
        check_face, check_pad: turn the face-continuity / PAD checks off.
        config: an :class:`ActiveConfig` (thresholds).
        tracker: a :class:`LandmarkSource`; ``None`` opens a :class:`FaceLandmarkTracker`
            on ``landmarker_model`` (registry model ``face_landmarker`` by default). The
            session closes the tracker it was given or made in :meth:`close`/:meth:`finish`.
        clock: server clock in the issuer's time base (default :func:`time.time`).

    Raises :class:`~kyc.errors.ConfigError` for a token without issuer or a bad config, and
    :class:`~kyc.errors.ModelError` when the landmarker model is missing or corrupt. A session
    is for one frame stream and one thread.
    """

    def __init__(
        self,
        challenge: Challenge | str,
        *,
        issuer: ChallengeIssuer | None = None,
        subject: str | None = None,
        verifier: FaceVerifier | None = None,
        passive: PassiveCheck | None = None,
        check_face: bool = True,
        check_pad: bool = True,
        config: ActiveConfig | None = None,
        tracker: LandmarkSource | None = None,
        landmarker_model: str | os.PathLike[str] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.config = config if config is not None else ActiveConfig()
        if not isinstance(self.config, ActiveConfig):
            raise ConfigError("config must be an ActiveConfig")
        self.clock = clock
        self._lock = threading.Lock()
        self._fail: list[Reason] = []
        red: Redemption | None = None
        if isinstance(challenge, str):
            if issuer is None:
                raise ConfigError("a challenge token needs the ChallengeIssuer that signed it")
            red = issuer.redeem(challenge, subject=subject)
        elif isinstance(challenge, Challenge):
            red = issuer.redeem(challenge, subject=subject) if issuer is not None else None
        else:
            raise ConfigError("challenge must be a Challenge or its token string")
        ch = challenge if isinstance(challenge, Challenge) else None
        if red is not None:
            ch = red.challenge or ch
            self._fail.extend(red.reasons)
        self.challenge: Challenge | None = ch
        self._steps = [_StepState(s) for s in (ch.steps if ch else ())]
        self._current = 0
        self._result: ActiveLivenessResult | None = None
        # frame bookkeeping
        self.frames = 0
        self.face_frames = 0
        self._t0: int | None = None
        self._last_ts: int | None = None
        self._last_face_ts: int | None = None
        self._first_face_ts: int | None = None
        self._prev_grey: np.ndarray | None = None
        self._prev_face: FaceObservation | None = None
        self._frozen_run = 0
        self._frozen_start: int | None = None
        self._frozen_max_diff = 0.0
        self._multi_frames = 0
        # neutral pose
        self._calib: list[tuple[float, float]] = []
        self._neutral: tuple[float, float] | None = None
        cfg = self.config
        self._turn_left = _Threshold(cfg.turn_deg, cfg.turn_release_deg, cfg.turn_hold_ms)
        self._turn_right = _Threshold(cfg.turn_deg, cfg.turn_release_deg, cfg.turn_hold_ms)
        self._mouth = _Threshold(cfg.mouth_open, cfg.mouth_release, cfg.mouth_hold_ms)
        self._blink = _Blink(cfg.blink_closed, cfg.blink_open, cfg.blink_max_ms)
        self._cycles: _Cycles | None = None
        # face continuity
        self.check_face = bool(check_face)
        self._verifier = verifier
        self._face_state: dict[str, Any] = {"status": "not_checked", "samples": 0}
        self._face_refs: list[np.ndarray] = []
        self._face_last_ts: int | None = None
        self._face_force = False
        self._face_scores: list[float] = []
        self._face_threshold: float | None = None
        self._face_metric = ""
        self._face_off_reason = "" if self.check_face else "disabled by the caller"
        # passive PAD
        self.check_pad = bool(check_pad)
        self._pad: PassiveCheck | None = None
        self._pad_off_reason = ""
        self._pad_samples: list[dict[str, Any]] = []
        self._pad_last_ts: int | None = None
        if self.check_pad:
            self._pad = _resolve_passive(passive)
            if self._pad is None:
                self._pad_off_reason = "kyc.liveness.passive is not available"
        else:
            self._pad_off_reason = "disabled by the caller"
        # landmarker (not opened for a challenge that already failed)
        self._tracker: LandmarkSource | None = tracker
        if self._tracker is None and not self._fail:
            self._tracker = FaceLandmarkTracker(landmarker_model)
        self._models: list[Mapping[str, str]] = []
        model = getattr(self._tracker, "model", None)
        if isinstance(model, Mapping):
            self._models.append(dict(model))

    def __repr__(self) -> str:
        moves = [s.step.move.value for s in self._steps]
        return f"ActiveLivenessSession(moves={moves}, frames={self.frames}, state={self._state()})"

    def __enter__(self) -> ActiveLivenessSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the landmarker (idempotent); :meth:`finish` calls it."""
        tr, self._tracker = self._tracker, None
        if tr is not None:
            tr.close()

    # -- state -----------------------------------------------------------------------------

    @property
    def neutral(self) -> tuple[float, float] | None:
        """The neutral ``(yaw, pitch)`` in degrees, once calibrated."""
        return self._neutral

    def _state(self) -> ProgressState:
        if self._fail:
            return "failed"
        if self._steps and self._current >= len(self._steps):
            return "completed"
        if self._first_face_ts is None:
            return "waiting_face"
        if self._neutral is None:
            return "calibrating"
        return "in_progress"

    def _progress(self, face: bool, ts: int | None) -> ActiveProgress:
        cur = self._steps[self._current].step if self._current < len(self._steps) else None
        return ActiveProgress(
            state=self._state(),
            step=self._current,
            total_steps=len(self._steps),
            move=cur.move.value if cur else None,
            prompt=cur.prompt if cur else None,
            face=face,
            timestamp_ms=None if ts is None or self._t0 is None else ts - self._t0,
            reasons=tuple(self._fail),
        )

    def _rel(self, ts: int) -> int:
        return ts - (self._t0 if self._t0 is not None else ts)

    def _failed(self, code: str, message: str, evidence: Mapping[str, Any]) -> None:
        self._fail.append(Reason(code, message, dict(evidence)))
        if self._current < len(self._steps):
            st = self._steps[self._current]
            if st.status == "pending":
                st.status = "failed"

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, frame: Any, timestamp_ms: int) -> ActiveProgress:
        """Process one frame taken at ``timestamp_ms`` (capture time, integer milliseconds).

        ``frame`` is an ``HxWx3`` uint8 BGR array or anything :func:`kyc.image.load_image`
        takes (encoded JPEG/PNG bytes, a grey array, ...). Returns an
        :class:`ActiveProgress`. Once the session has failed or completed, further frames are
        ignored. Raises :class:`~kyc.errors.InvalidImage` for a frame that cannot be decoded
        and :class:`~kyc.errors.InvalidRecord` (``field="timestamp_ms"``) for a timestamp
        that is not a non-negative integer; timestamps that go backwards or jump are a
        result (``TIMESTAMP_JUMP``), not an exception.
        """
        if (
            isinstance(timestamp_ms, bool)
            or not isinstance(timestamp_ms, int | np.integer)
            or timestamp_ms < 0
        ):
            raise InvalidRecord(
                f"timestamp_ms must be a non-negative integer, got {timestamp_ms!r}",
                field="timestamp_ms",
            )
        ts = int(timestamp_ms)
        from kyc.image import load_image

        image = load_image(frame) if not _is_bgr(frame) else frame
        with self._lock:
            if self._result is not None or self._fail or self._state() == "completed":
                return self._progress(False, ts)
            return self._feed(image, ts)

    def _feed(self, image: np.ndarray, ts: int) -> ActiveProgress:
        cfg = self.config
        ch = self.challenge
        assert ch is not None  # a session without a challenge has failed already
        now = float(self.clock())
        if ch.expired(now):
            self._failed(
                "CHALLENGE_TIMEOUT",
                "the challenge expired before the moves were completed",
                {"expires_at": ch.expires_at, "now": round(now, 3)},
            )
            return self._progress(False, ts)
        if self._t0 is None:
            self._t0 = ts
        if self._last_ts is not None:
            gap = ts - self._last_ts
            if gap <= 0 or gap > cfg.max_gap_ms:
                self._failed(
                    "TIMESTAMP_JUMP",
                    "frame timestamps went backwards or repeated"
                    if gap <= 0
                    else f"frame timestamps jumped by {gap} ms",
                    {
                        "previous_ms": self._rel(self._last_ts),
                        "timestamp_ms": self._rel(ts),
                        "gap_ms": gap,
                        "max_gap_ms": cfg.max_gap_ms,
                    },
                )
                return self._progress(False, ts)
        tracker = self._tracker
        if tracker is None:
            raise RuntimeError("this ActiveLivenessSession is closed")
        lf = tracker.process(image, ts)
        prev_ts = self._last_ts
        self._last_ts = ts
        self.frames += 1
        face = lf.face
        grey = cv2.resize(
            cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), _GREY_SIZE, interpolation=cv2.INTER_AREA
        ).astype(np.float32)
        if face is None:
            self._no_face(ts)
            self._prev_grey, self._prev_face = grey, None
            return self._progress(False, ts)
        self.face_frames += 1
        if len(lf.faces) > 1:
            self._multi_frames += 1
        if self._first_face_ts is None:
            self._first_face_ts = ts
        self._check_frozen(ts, prev_ts, grey, face)
        self._check_jump(ts, face)
        self._last_face_ts = ts
        self._prev_grey, self._prev_face = grey, face
        if self._fail:
            return self._progress(True, ts)
        if self._neutral is None:
            self._calibrate(ts, face)
        if self._neutral is not None and not self._fail:
            self._moves(ts, face)
        if not self._fail:
            self._sample_face(image, ts, face)
        if not self._fail:
            self._sample_pad(image, ts, face)
        return self._progress(True, ts)

    # -- plausibility ------------------------------------------------------------------------

    def _no_face(self, ts: int) -> None:
        self._frozen_run = 0
        if self._last_face_ts is None:
            return
        lost = ts - self._last_face_ts
        if lost > self.config.max_face_lost_ms:
            self._failed(
                "FACE_LOST",
                f"the face left the frame for {lost} ms",
                {
                    "lost_ms": lost,
                    "since_ms": self._rel(self._last_face_ts),
                    "max_face_lost_ms": self.config.max_face_lost_ms,
                },
            )
        self._face_force = True

    def _check_frozen(
        self, ts: int, prev_ts: int | None, grey: np.ndarray, face: FaceObservation
    ) -> None:
        cfg = self.config
        prev = self._prev_grey
        if prev is None or prev.shape != grey.shape or self._prev_face is None:
            self._frozen_run = 0
            return
        diff = float(np.abs(grey - prev).mean())
        motion = float(np.abs(face.landmarks[:, :2] - self._prev_face.landmarks[:, :2]).mean())
        static = diff < cfg.frozen_pixel_eps or (
            diff < cfg.frozen_near_eps and motion < cfg.frozen_landmark_eps
        )
        if not static:
            self._frozen_run = 0
            return
        if self._frozen_run == 0:
            self._frozen_start = prev_ts if prev_ts is not None else ts
            self._frozen_max_diff = 0.0
        self._frozen_run += 1
        self._frozen_max_diff = max(self._frozen_max_diff, diff)
        if self._frozen_run >= cfg.frozen_min_frames:
            start = self._frozen_start if self._frozen_start is not None else ts
            self._failed(
                "FROZEN_FRAMES",
                f"{self._frozen_run + 1} consecutive frames are (nearly) identical",
                {
                    "frames": self._frozen_run + 1,
                    "from_ms": self._rel(start),
                    "to_ms": self._rel(ts),
                    "max_mean_abs_diff": round(self._frozen_max_diff, 4),
                    "pixel_eps": cfg.frozen_pixel_eps,
                    "min_frames": cfg.frozen_min_frames,
                },
            )

    def _check_jump(self, ts: int, face: FaceObservation) -> None:
        prev = self._prev_face
        if prev is None:
            if self._last_face_ts is not None:
                self._face_force = True  # the face reappeared
            return
        (px, py), (cx, cy) = prev.centre, face.centre
        size = max(prev.box[2], face.box[2], 1.0)
        ratio = max(face.area, 1.0) / max(prev.area, 1.0)
        if math.hypot(cx - px, cy - py) > 0.35 * size or not 0.55 < ratio < 1.8:
            self._face_force = True

    # -- moves -----------------------------------------------------------------------------

    def _calibrate(self, ts: int, face: FaceObservation) -> None:
        self._calib.append((face.yaw, face.pitch))
        first = self._first_face_ts if self._first_face_ts is not None else ts
        if ts - first >= self.config.neutral_ms and len(self._calib) >= (
            self.config.neutral_min_frames
        ):
            arr = np.array(self._calib, dtype=np.float64)
            self._neutral = (float(np.median(arr[:, 0])), float(np.median(arr[:, 1])))
            if self._steps:
                self._start_step(ts)

    def _start_step(self, ts: int) -> None:
        st = self._steps[self._current]
        st.status = "pending"
        st.started = ts
        if st.step.move is Move.READ_DIGITS:
            self._cycles = _Cycles(self.config.speech_open, self.config.speech_close)

    def _complete_step(self, ts: int, evidence: Mapping[str, Any]) -> None:
        st = self._steps[self._current]
        st.status = "passed"
        st.completed = ts
        st.evidence.update(evidence)
        self._current += 1
        self._cycles = None
        if self._current < len(self._steps):
            self._start_step(ts)

    def _moves(self, ts: int, face: FaceObservation) -> None:
        cfg = self.config
        assert self._neutral is not None
        rel_yaw = face.yaw - self._neutral[0]
        if cfg.mirrored:
            rel_yaw = -rel_yaw
        events: dict[str, dict[str, Any]] = {}
        for name, det, value in (
            ("turn_left", self._turn_left, rel_yaw),
            ("turn_right", self._turn_right, -rel_yaw),
            ("open_mouth", self._mouth, face.jaw_open),
        ):
            ev = det.update(ts, value)
            if ev is not None:
                events[name] = ev
        blink = self._blink.update(ts, face.eye_blink_left, face.eye_blink_right)
        if blink is not None:
            events["blink"] = blink
        if self._current >= len(self._steps):
            return
        st = self._steps[self._current]
        move = st.step.move
        assert st.started is not None
        if move is Move.READ_DIGITS and self._cycles is not None:
            self._cycles.update(ts, face.jaw_open)
        if move.value in events:
            ev = events[move.value]
            if "onset_ms" in ev:
                ev["onset_ms"] = self._rel(int(ev["onset_ms"]))
            if move in (Move.TURN_LEFT, Move.TURN_RIGHT):
                ev["peak_deg"] = ev.pop("peak")
                ev["threshold_deg"] = ev.pop("threshold")
            self._complete_step(ts, ev)
            return
        wrong = [
            m
            for m in events
            if m in cfg.wrong_moves
            and m != move.value
            and not (move is Move.READ_DIGITS and m == "open_mouth")
        ]
        if wrong:
            self._failed(
                "WRONG_MOVE",
                f"expected {move.value}, saw {wrong[0]}",
                {
                    "step": self._current,
                    "expected": move.value,
                    "observed": wrong[0],
                    "at_ms": self._rel(ts),
                    "yaw_from_neutral": round(rel_yaw, 2),
                    "jaw_open": round(face.jaw_open, 3),
                },
            )
            return
        if move is Move.READ_DIGITS and self._cycles is not None and self._read_digits(ts, st):
            return
        elapsed = ts - st.started
        if elapsed > st.step.timeout_ms:
            if move is Move.READ_DIGITS and self._cycles is not None and self._cycles.count:
                self._digits_mismatch(ts, st)
                return
            self._failed(
                "CHALLENGE_TIMEOUT",
                f"step {self._current} ({move.value}) not done within {st.step.timeout_ms} ms",
                {
                    "step": self._current,
                    "move": move.value,
                    "elapsed_ms": elapsed,
                    "timeout_ms": st.step.timeout_ms,
                },
            )

    def _digits_evidence(self, st: _StepState) -> dict[str, Any]:
        assert self._cycles is not None
        n = len(st.step.digits or "")
        return {
            "cycles": self._cycles.count,
            "digits": n,
            "tolerance": self.config.digit_tolerance,
            "peak_jaw_open": round(self._cycles.peak, 3),
        }

    def _digits_mismatch(self, ts: int, st: _StepState) -> None:
        ev = self._digits_evidence(st)
        st.evidence.update(ev)
        self._failed(
            "READ_DIGITS_MISMATCH",
            f"counted {ev['cycles']} mouth cycles for {ev['digits']} digits",
            {"step": self._current, "at_ms": self._rel(ts), **ev},
        )

    def _read_digits(self, ts: int, st: _StepState) -> bool:
        """Judge reading once the mouth has been quiet long enough; True when decided."""
        cyc = self._cycles
        assert cyc is not None
        if cyc.open or cyc.last_close is None or ts - cyc.last_close < self.config.read_quiet_ms:
            return False
        n = len(st.step.digits or "")
        tol = self.config.digit_tolerance
        if abs(cyc.count - n) <= tol:
            self._complete_step(ts, self._digits_evidence(st))
            return True
        if cyc.count > n + tol:
            self._digits_mismatch(ts, st)
            return True
        return False  # too few so far: the user may still be reading

    # -- sampled checks ----------------------------------------------------------------------

    def _frontal(self, face: FaceObservation, limit: float | None = None) -> bool:
        lim = self.config.face_max_angle if limit is None else limit
        return abs(face.yaw) <= lim and abs(face.pitch) <= lim

    def _sample_face(self, image: np.ndarray, ts: int, face: FaceObservation) -> None:
        cfg = self.config
        if not self.check_face or self._face_off_reason:
            return
        due = self._face_last_ts is None or ts - self._face_last_ts >= cfg.face_interval_ms
        if not (self._face_force or due) or not self._frontal(face):
            return
        if max(face.eye_blink_left, face.eye_blink_right) > cfg.blink_closed:
            return  # closed eyes change the embedding: wait for open ones
        building = len(self._face_refs) < cfg.face_references
        if building and not self._frontal(face, cfg.face_ref_angle):
            return  # references are taken only from well-posed frames
        if not self._face_force and self._face_state["samples"] >= cfg.face_max_samples:
            return
        try:
            from kyc.face.align import align_face
            from kyc.face.embed import compare

            if self._verifier is None:
                from kyc.face.verify import FaceVerifier

                self._verifier = FaceVerifier()
            emb = self._verifier.embedder
            chip = align_face(image, face.points5(), emb.template, emb.chip_size)
            vec = np.asarray(emb.embed(chip[None]), dtype=np.float32)[0]
        except KycError as exc:
            self._face_off_reason = f"face embedding unavailable: {exc.message}"
            return
        self._face_last_ts = ts
        self._face_force = False
        self._face_state["samples"] += 1
        if not self._face_refs:
            self._face_refs.append(vec)
            self._face_metric = emb.metric
            self._face_threshold = self._switch_threshold()
            self._face_state.update(
                status="checked",
                metric=emb.metric,
                threshold=self._face_threshold,
                embedder=emb.name,
                reference_ms=self._rel(ts),
            )
            ref = {"role": "embedder", "name": emb.name, "sha256": emb.sha256}
            if ref not in self._models:
                self._models.append(ref)
            return
        scores = np.asarray(compare(np.stack(self._face_refs), vec, emb.metric))
        euclid = emb.metric == "euclidean"
        score = float(scores.min() if euclid else scores.max())  # the closest reference
        self._face_scores.append(score)
        thr = self._face_threshold
        assert thr is not None
        if score > thr if euclid else score < thr:
            what = "distance" if euclid else "similarity"
            self._failed(
                "FACE_SWITCHED",
                f"the face at {self._rel(ts)} ms is not the face seen at the start "
                f"({what} {score:.3f}, threshold {thr:g})",
                {
                    what: round(score, 4),
                    "threshold": thr,
                    "metric": emb.metric,
                    "at_ms": self._rel(ts),
                    "reference_ms": self._face_state.get("reference_ms"),
                    "references": len(self._face_refs),
                },
            )
        elif building:
            self._face_refs.append(vec)

    def _switch_threshold(self) -> float:
        cfg = self.config
        if cfg.face_switch_threshold is not None:
            return float(cfg.face_switch_threshold)
        assert self._verifier is not None
        if self._verifier.embedder.name == "dlib_resnet_v1":
            return DLIB_SWITCH_DISTANCE
        return float(self._verifier.profile.threshold)

    def _sample_pad(self, image: np.ndarray, ts: int, face: FaceObservation) -> None:
        cfg = self.config
        pad = self._pad
        if pad is None or len(self._pad_samples) >= cfg.pad_max_samples:
            return
        if self._pad_last_ts is not None and ts - self._pad_last_ts < cfg.pad_interval_ms:
            return
        if not self._frontal(face):
            return
        self._pad_last_ts = ts
        try:
            out = pad(image)
        except ModelError as exc:
            self._pad, self._pad_off_reason = None, f"PAD model unavailable: {exc.message}"
            return
        except KycError as exc:
            self._pad_samples.append(
                {"at_ms": self._rel(ts), "status": "not_checked", "error": exc.code}
            )
            return
        status = str(getattr(out, "status", "not_checked"))
        score = getattr(out, "score", None)
        codes = tuple(str(c) for c in getattr(out, "codes", ()))
        if status not in ("live", "spoof") and "PAD_MODEL_UNAVAILABLE" in codes:
            self._pad, self._pad_off_reason = None, "PAD model unavailable (PAD_MODEL_UNAVAILABLE)"
            return
        sample: dict[str, Any] = {
            "at_ms": self._rel(ts),
            "status": status if status in ("live", "spoof") else "not_checked",
            "score": None if score is None else round(float(score), 4),
        }
        if codes:
            sample["codes"] = list(codes)
        self._pad_samples.append(sample)
        if sample["status"] != "not_checked":
            self._note_pad_models(out)

    def _note_pad_models(self, out: Any) -> None:
        refs = [
            {"role": "pad", "name": str(m.name), "sha256": str(m.sha256)}
            for m in getattr(out, "models", ()) or ()
            if hasattr(m, "name") and hasattr(m, "sha256")
        ]
        if not refs:
            refs = [{"role": "pad", "name": _pad_name(self._pad)}]
        for ref in refs:
            if ref not in self._models:
                self._models.append(ref)

    # -- verdict ---------------------------------------------------------------------------

    def finish(self) -> ActiveLivenessResult:
        """End the session and return its :class:`ActiveLivenessResult` (idempotent).

        Releases the landmarker. Steps not done by now give ``CHALLENGE_TIMEOUT`` (past their
        time limit, or the challenge expired) or ``CHALLENGE_INCOMPLETE``.
        """
        with self._lock:
            if self._result is None:
                self._result = self._verdict()
                self.close()
            return self._result

    def _pad_summary(self) -> tuple[dict[str, Any], list[Reason]]:
        cfg = self.config
        checked = [s for s in self._pad_samples if s["status"] in ("live", "spoof")]
        spoof = [s for s in checked if s["status"] == "spoof"]
        summary: dict[str, Any] = {
            "status": "checked" if checked else "not_checked",
            "samples": list(self._pad_samples),
            "checked": len(checked),
            "spoof": len(spoof),
            "spoof_fraction_limit": cfg.pad_spoof_fraction,
        }
        reasons: list[Reason] = []
        if not checked:
            why = self._pad_off_reason or (
                "no frame was sampled" if not self._pad_samples else "PAD could not judge"
            )
            summary["why"] = why
            reasons.append(Reason("PAD_NOT_CHECKED", f"passive PAD not checked: {why}", {}))
        elif len(spoof) / len(checked) >= cfg.pad_spoof_fraction:
            reasons.append(
                Reason(
                    "REPLAY_SUSPECTED",
                    f"passive PAD judged {len(spoof)} of {len(checked)} sampled frames a spoof",
                    {
                        "spoof": len(spoof),
                        "checked": len(checked),
                        "limit": cfg.pad_spoof_fraction,
                        "scores": [s["score"] for s in checked],
                    },
                )
            )
        return summary, reasons

    def _face_summary(self) -> tuple[dict[str, Any], list[Reason]]:
        summary = dict(self._face_state)
        if self._face_scores:
            key = "max_distance" if self._face_metric == "euclidean" else "min_similarity"
            fn = max if self._face_metric == "euclidean" else min
            summary[key] = round(fn(self._face_scores), 4)
        reasons: list[Reason] = []
        if not self._face_refs or not self._face_scores:
            why = self._face_off_reason or (
                "no near-frontal face to sample" if not self._face_refs else "only one face sample"
            )
            summary["status"] = "not_checked"
            summary["why"] = why
            reasons.append(
                Reason("FACE_CONTINUITY_NOT_CHECKED", f"face continuity not checked: {why}", {})
            )
        return summary, reasons

    def _verdict(self) -> ActiveLivenessResult:
        ch = self.challenge
        fail = list(self._fail)
        info: list[Reason] = []
        status: SessionStatus = "failed"
        if ch is not None and not fail:
            if self.frames == 0:
                info.append(Reason("NO_FRAMES", "no frame was received", {}))
                status = "not_checked"
            elif self.face_frames == 0:
                info.append(Reason("NO_FACE", "no face in any frame", {"frames": self.frames}))
                status = "not_checked"
            elif self._current < len(self._steps):
                self._unfinished(fail)
        pad, pad_reasons = self._pad_summary()
        face, face_reasons = self._face_summary()
        if self.frames:
            for r in pad_reasons:
                (fail if r.code == "REPLAY_SUSPECTED" else info).append(r)
            info.extend(face_reasons)
        if self._multi_frames:
            info.append(
                Reason(
                    "MULTIPLE_FACES",
                    f"a second face was visible in {self._multi_frames} frames",
                    {"frames": self._multi_frames},
                )
            )
        if status != "not_checked":
            status = "failed" if fail else "passed"
        reasons: list[Reason] = []
        if status == "passed":
            reasons.append(
                Reason(
                    "CHALLENGE_PASSED",
                    "every move was performed in the issued order",
                    {"steps": len(self._steps)},
                )
            )
        reasons.extend(fail)
        reasons.extend(info)
        steps = tuple(
            StepResult(
                index=i,
                move=s.step.move.value,
                status=s.status,
                started_ms=None if s.started is None else self._rel(s.started),
                completed_ms=None if s.completed is None else self._rel(s.completed),
                timeout_ms=s.step.timeout_ms,
                evidence=dict(s.evidence),
            )
            for i, s in enumerate(self._steps)
        )
        duration = 0
        if self._t0 is not None and self._last_ts is not None:
            duration = self._last_ts - self._t0
        neutral = (
            {"yaw": round(self._neutral[0], 2), "pitch": round(self._neutral[1], 2)}
            if self._neutral is not None
            else None
        )
        return ActiveLivenessResult(
            status=status,
            passed=status == "passed",
            nonce=ch.nonce if ch is not None else "",
            steps=steps,
            reasons=tuple(reasons),
            frames=self.frames,
            face_frames=self.face_frames,
            duration_ms=duration,
            neutral=neutral,
            pad=pad,
            face_continuity=face,
            models=tuple(self._models),
        )

    def _unfinished(self, fail: list[Reason]) -> None:
        ch = self.challenge
        assert ch is not None
        now = float(self.clock())
        idx = self._current
        st = self._steps[idx]
        if ch.expired(now):
            fail.append(
                Reason(
                    "CHALLENGE_TIMEOUT",
                    "the challenge expired before the moves were completed",
                    {"expires_at": ch.expires_at, "now": round(now, 3), "step": idx},
                )
            )
        elif (
            st.started is not None
            and self._last_ts is not None
            and self._last_ts - st.started > st.step.timeout_ms
        ):
            fail.append(
                Reason(
                    "CHALLENGE_TIMEOUT",
                    f"step {idx} ({st.step.move.value}) not done within {st.step.timeout_ms} ms",
                    {
                        "step": idx,
                        "move": st.step.move.value,
                        "elapsed_ms": self._last_ts - st.started,
                        "timeout_ms": st.step.timeout_ms,
                    },
                )
            )
        else:
            fail.append(
                Reason(
                    "CHALLENGE_INCOMPLETE",
                    f"the session ended at step {idx} ({st.step.move.value}) of {len(self._steps)}",
                    {
                        "step": idx,
                        "move": st.step.move.value,
                        "steps": len(self._steps),
                        "calibrated": self._neutral is not None,
                    },
                )
            )
        if st.status == "pending":
            st.status = "failed"


def _is_bgr(frame: Any) -> bool:
    return (
        isinstance(frame, np.ndarray)
        and frame.ndim == 3
        and frame.shape[2] == 3
        and frame.dtype == np.uint8
        and frame.shape[0] > 0
        and frame.shape[1] > 0
    )


def _resolve_passive(passive: PassiveCheck | None) -> PassiveCheck | None:
    if passive is not None:
        check = getattr(passive, "check", None)
        if callable(check) and not callable(passive):
            return check  # type: ignore[no-any-return]
        if not callable(passive):
            raise ConfigError("passive must be callable or have a check(image) method")
        return passive
    try:
        from kyc.liveness import passive as module
    except ImportError:
        return None
    fn = getattr(module, "check_liveness", None)
    return fn if callable(fn) else None


def _pad_name(pad: PassiveCheck | None) -> str:
    if pad is None:
        return "kyc.liveness.passive"
    mod = getattr(pad, "__module__", "") or ""
    name = getattr(pad, "__qualname__", type(pad).__qualname__)
    return f"{mod}.{name}" if mod else str(name)


def frames_from_sequence(
    frames: Sequence[np.ndarray], fps: float = 30.0, start_ms: int = 0
) -> list[tuple[np.ndarray, int]]:
    """Pair frames with evenly spaced timestamps (``start_ms + i * 1000 / fps``)."""
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps!r}")
    return [(f, start_ms + round(i * 1000.0 / fps)) for i, f in enumerate(frames)]
