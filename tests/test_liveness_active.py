"""Tests for kyc.liveness.active and kyc.liveness.landmarks on real frames.

The frames are the live webcam recording ``pad/video/live_person_moving.webm`` (214 frames,
30 fps, 640x480). Landmarks are computed once per test session with the real MediaPipe Face
Landmarker and replayed from a cache keyed by the frame's bytes (:class:`ReplayTracker`), so
each session test costs milliseconds; frames that are not in the cache (spliced or flipped
frames) go through a real tracker. Segments of the video (yaw relative to the first frames,
which sit near +8 degrees): frames 23-43 the head turns with the nose toward the image's right
(up to +34 degrees: the subject's own left in an unmirrored image), 46-66 toward the image's
left (-24), 136-150 left again; 185-213 are near frontal with real blinks at frames 197 and
204.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import pytest

from kyc.errors import ConfigError, InvalidImage, InvalidRecord, ModelUnavailable
from kyc.liveness.active import (
    ActiveConfig,
    ActiveLivenessResult,
    ActiveLivenessSession,
    LandmarkSource,
    frames_from_sequence,
)
from kyc.liveness.challenge import ChallengeIssuer
from kyc.liveness.landmarks import FaceLandmarkTracker, LandmarkFrame, pose_from_matrix

SECRET = b"test deployment secret, 32 bytes"
FPS = 30.0


def _key(frame: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest()


@pytest.fixture(scope="session")
def video(data_dir: Path) -> list[np.ndarray]:
    path = data_dir / "pad/video/live_person_moving.webm"
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        pytest.skip(f"this OpenCV build cannot decode {path}")
    return frames


@pytest.fixture(scope="session")
def landmark_cache(video: list[np.ndarray], model_dir: Path) -> dict[bytes, LandmarkFrame]:
    cache: dict[bytes, LandmarkFrame] = {}
    with FaceLandmarkTracker() as tracker:
        for i, frame in enumerate(video):
            cache[_key(frame)] = tracker.process(frame, round(i * 1000 / FPS))
    return cache


class ReplayTracker:
    """Real landmarks of the video, replayed from the cache; other frames run a real tracker."""

    model = MappingProxyType({"role": "landmarker", "name": "face_landmarker", "sha256": "-"})

    def __init__(self, cache: dict[bytes, LandmarkFrame]) -> None:
        self.cache = cache
        self.live: FaceLandmarkTracker | None = None
        self.closed = False
        self.calls = 0

    def process(self, image: np.ndarray, timestamp_ms: int) -> LandmarkFrame:
        self.calls += 1
        hit = self.cache.get(_key(image))
        if hit is not None:
            return dataclasses.replace(hit, timestamp_ms=timestamp_ms)
        if self.live is None:
            self.live = FaceLandmarkTracker()
        return self.live.process(image, timestamp_ms)

    def close(self) -> None:
        self.closed = True
        if self.live is not None:
            self.live.close()


@pytest.fixture()
def replay(landmark_cache: dict[bytes, LandmarkFrame]) -> ReplayTracker:
    return ReplayTracker(landmark_cache)


@pytest.fixture(scope="session")
def verifier(model_dir: Path) -> Any:
    from kyc.face.verify import FaceVerifier

    return FaceVerifier()


@pytest.fixture()
def issuer() -> ChallengeIssuer:
    return ChallengeIssuer(SECRET, ttl=600.0)


def still(video: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` real frames of the still opening (frames 0-14, yaw 5-10 degrees), back and forth."""
    cycle = list(range(15)) + list(range(13, 0, -1))
    return [video[cycle[i % len(cycle)]] for i in range(n)]


def run(
    session: ActiveLivenessSession, frames: list[np.ndarray], start_ms: int = 0
) -> ActiveLivenessResult:
    for frame, ts in frames_from_sequence(frames, FPS, start_ms):
        if session.feed(frame, ts).done:
            break
    return session.finish()


def make(
    issuer: ChallengeIssuer,
    moves: list[str],
    tracker: LandmarkSource,
    verifier: Any,
    **kw: Any,
) -> ActiveLivenessSession:
    ch = issuer.issue(moves=moves)
    kw.setdefault("check_pad", False)
    return ActiveLivenessSession(ch.token, issuer=issuer, tracker=tracker, verifier=verifier, **kw)


# --- the landmarker on real frames ------------------------------------------------------------


def test_video_has_the_expected_frames(video: list[np.ndarray]) -> None:
    assert len(video) == 214
    assert video[0].shape == (480, 640, 3) and video[0].dtype == np.uint8


def test_landmarker_gives_478_points_blendshapes_and_pose(
    video: list[np.ndarray], landmark_cache: dict[bytes, LandmarkFrame]
) -> None:
    lf = landmark_cache[_key(video[0])]
    face = lf.face
    assert face is not None and lf.width == 640 and lf.height == 480
    assert face.landmarks.shape == (478, 3) and not face.landmarks.flags.writeable
    assert {"eyeBlinkLeft", "eyeBlinkRight", "jawOpen"} <= set(face.blendshapes)
    assert face.matrix.shape == (4, 4)
    assert (face.yaw, face.pitch, face.roll) == pytest.approx(pose_from_matrix(face.matrix))
    x, y, w, h = face.box
    assert 0 <= x < 640 and 0 <= y < 480 and 100 < w < 400 and 100 < h < 400
    pts = face.points5()
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]  # subject's right = image left
    assert json.loads(json.dumps(lf.to_dict()))["faces"][0]["yaw"] == round(face.yaw, 2)


def test_yaw_sign_follows_the_nose_direction(
    video: list[np.ndarray], landmark_cache: dict[bytes, LandmarkFrame]
) -> None:
    """Positive yaw = nose toward the image's right edge (checked on every turned frame)."""
    checked = 0
    for frame in video:
        face = landmark_cache[_key(frame)].face
        assert face is not None  # the face is visible throughout the recording
        cx = face.box[0] + face.box[2] / 2
        nose_offset = (face.landmarks[1, 0] - cx) / face.box[2]
        if face.yaw > 15:
            assert nose_offset > 0.1
            checked += 1
        elif face.yaw < -15:
            assert nose_offset < -0.1
            checked += 1
    assert checked > 60


def test_yaw_reaches_both_directions_in_the_known_segments(
    video: list[np.ndarray], landmark_cache: dict[bytes, LandmarkFrame]
) -> None:
    def yaw(i: int) -> float:
        face = landmark_cache[_key(video[i])].face
        assert face is not None
        return face.yaw

    assert max(yaw(i) for i in range(23, 44)) > 30
    assert min(yaw(i) for i in range(46, 67)) < -20
    assert all(abs(yaw(i) - yaw(0)) < 8 for i in range(0, 12))


def test_tracker_rejects_bad_frames_and_non_increasing_timestamps(
    video: list[np.ndarray], model_dir: Path
) -> None:
    with FaceLandmarkTracker() as tracker:
        tracker.process(video[0], 100)
        with pytest.raises(InvalidRecord, match="increase"):
            tracker.process(video[1], 100)
        with pytest.raises(InvalidImage):
            tracker.process(video[0][:, :, 0], 200)
        with pytest.raises(InvalidRecord):
            tracker.process(video[1], 1.5)  # type: ignore[arg-type]
    assert tracker.closed
    with pytest.raises(RuntimeError, match="closed"):
        tracker.process(video[2], 300)


def test_tracker_reports_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        FaceLandmarkTracker(tmp_path)


# --- moves on the real recording ----------------------------------------------------------------


def test_head_turn_passes_on_the_segment_with_the_turn(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    session = make(issuer, ["turn_left"], replay, verifier)
    res = run(session, video[0:46])
    assert res.status == "passed" and res.passed
    assert res.codes[0] == "CHALLENGE_PASSED"
    step = res.steps[0]
    assert step.status == "passed" and step.move == "turn_left"
    assert step.started_ms == 300  # after the neutral-pose window
    assert step.completed_ms is not None and 700 <= step.completed_ms <= 1300  # frames 23-43
    assert step.duration_ms == step.completed_ms - step.started_ms
    assert step.evidence["peak_deg"] > 18.0
    assert res.neutral is not None and abs(res.neutral["yaw"] - 8.4) < 2
    assert res.face_continuity["status"] == "checked"
    assert res.face_continuity["max_distance"] < res.face_continuity["threshold"]
    assert replay.closed  # finish() released the landmarker
    json.dumps(res.to_dict())


def test_head_turn_fails_with_wrong_move_on_a_turn_the_other_way(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    res = run(make(issuer, ["turn_right"], replay, verifier), video[0:46])
    assert res.status == "failed" and "WRONG_MOVE" in res.codes
    wrong = next(r for r in res.reasons if r.code == "WRONG_MOVE")
    assert wrong.evidence["expected"] == "turn_right" and wrong.evidence["observed"] == "turn_left"
    assert res.steps[0].status == "failed"


def test_head_turn_fails_on_a_segment_without_the_move(
    replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    # frames 190-213: near frontal (yaw within 11 degrees of the start), two blinks
    short = ChallengeIssuer(SECRET, step_timeout_ms={"turn_left": 400})
    res = run(make(short, ["turn_left"], replay, verifier), video[190:214])
    assert res.status == "failed" and "CHALLENGE_TIMEOUT" in res.codes
    ev = next(r for r in res.reasons if r.code == "CHALLENGE_TIMEOUT").evidence
    assert ev["move"] == "turn_left" and ev["elapsed_ms"] > 400
    assert res.steps[0].status == "failed"
    # a longer still stretch (real frames 0-14 back and forth) against a 2 s limit
    longer = ChallengeIssuer(SECRET, step_timeout_ms={"turn_right": 2000})
    res = run(make(longer, ["turn_right"], ReplayTracker(replay.cache), verifier),
              still(video, 80))  # fmt: skip
    assert res.status == "failed" and "CHALLENGE_TIMEOUT" in res.codes
    # within its time limit but ended early: incomplete, never passed
    res = run(make(ChallengeIssuer(SECRET), ["turn_left"], ReplayTracker(replay.cache), verifier),
              video[190:214])  # fmt: skip
    assert res.status == "failed" and "CHALLENGE_INCOMPLETE" in res.codes


def test_moves_must_come_in_the_issued_order(
    issuer: ChallengeIssuer,
    landmark_cache: dict[bytes, LandmarkFrame],
    video: list[np.ndarray],
    verifier: Any,
) -> None:
    ok = run(make(issuer, ["turn_left", "turn_right"], ReplayTracker(landmark_cache), verifier),
             video[0:67])  # fmt: skip
    assert ok.status == "passed"
    a, b = ok.steps
    assert a.completed_ms is not None and b.started_ms == a.completed_ms
    assert b.completed_ms is not None and b.completed_ms > a.completed_ms
    bad = run(make(issuer, ["turn_right", "turn_left"], ReplayTracker(landmark_cache), verifier),
              video[0:67])  # fmt: skip
    assert bad.status == "failed" and "WRONG_MOVE" in bad.codes


def test_right_turn_passes_on_its_own_segment(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    res = run(make(issuer, ["turn_right"], replay, verifier), video[104:151])
    assert res.status == "passed"


def test_mirrored_frames_swap_left_and_right(
    issuer: ChallengeIssuer, video: list[np.ndarray], verifier: Any, model_dir: Path
) -> None:
    flipped = [cv2.flip(f, 1) for f in video[0:46]]  # what a selfie preview shows
    cfg = ActiveConfig(mirrored=True)
    res = run(make(issuer, ["turn_left"], FaceLandmarkTracker(), verifier, config=cfg), flipped)
    assert res.status == "passed"


def test_real_blink_is_detected(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    res = run(make(issuer, ["blink"], replay, verifier), video[185:214])
    assert res.status == "passed"
    ev = res.steps[0].evidence
    assert ev["peak"] > 0.5 and 0 < ev["closed_ms"] <= 700


def test_blinks_are_never_a_wrong_move(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    res = run(make(issuer, ["open_mouth"], replay, verifier), video[190:214])
    assert res.codes[0] == "CHALLENGE_INCOMPLETE"  # the real blink at frame 204 was no error


# --- mouth and digits: real landmarks, scripted jawOpen -------------------------------------


class ScriptedJaw:
    """Real landmarks of a still segment with a scripted ``jawOpen`` series (no mouth video)."""

    model = ReplayTracker.model

    def __init__(self, cache: dict[bytes, LandmarkFrame], jaw: list[float]) -> None:
        self.replay = ReplayTracker(cache)
        self.jaw = jaw
        self.i = 0

    def process(self, image: np.ndarray, timestamp_ms: int) -> LandmarkFrame:
        lf = self.replay.process(image, timestamp_ms)
        value = self.jaw[min(self.i, len(self.jaw) - 1)]
        self.i += 1
        assert lf.face is not None
        shapes = dict(lf.face.blendshapes, jawOpen=value)
        face = dataclasses.replace(lf.face, blendshapes=MappingProxyType(shapes))
        return dataclasses.replace(lf, faces=(face,))

    def close(self) -> None:
        self.replay.close()


def _speech(cycles: int, lead: int = 12, period: int = 8, tail: int = 40) -> list[float]:
    """jawOpen: closed, then ``cycles`` open-close cycles, then closed."""
    one = [0.02, 0.15, 0.3, 0.35, 0.25, 0.1, 0.03, 0.02][:period]
    return [0.02] * lead + one * cycles + [0.02] * tail


@pytest.mark.parametrize(("cycles", "ok"), [(4, True), (3, True), (5, True), (8, False)])
def test_read_digits_counts_mouth_cycles(
    issuer: ChallengeIssuer,
    landmark_cache: dict[bytes, LandmarkFrame],
    video: list[np.ndarray],
    verifier: Any,
    cycles: int,
    ok: bool,
) -> None:
    frames = still(video, 100)
    tracker = ScriptedJaw(landmark_cache, _speech(cycles))
    res = run(make(issuer, ["read_digits"], tracker, verifier, check_face=False), frames)
    if ok:
        assert res.status == "passed", res.codes
        assert res.steps[0].evidence["cycles"] == cycles
    else:
        assert "READ_DIGITS_MISMATCH" in res.codes
        ev = next(r for r in res.reasons if r.code == "READ_DIGITS_MISMATCH").evidence
        assert ev["cycles"] >= 6 and ev["digits"] == 4


def test_open_mouth_is_an_event_and_a_wrong_move_elsewhere(
    issuer: ChallengeIssuer,
    landmark_cache: dict[bytes, LandmarkFrame],
    video: list[np.ndarray],
    verifier: Any,
) -> None:
    wide = [0.02] * 15 + [0.6] * 10 + [0.02] * 10
    res = run(make(issuer, ["open_mouth"], ScriptedJaw(landmark_cache, wide), verifier),
              still(video, 35))  # fmt: skip
    assert res.status == "passed" and res.steps[0].evidence["peak"] == pytest.approx(0.6)
    res = run(make(issuer, ["blink"], ScriptedJaw(landmark_cache, wide), verifier),
              still(video, 35))  # fmt: skip
    assert "WRONG_MOVE" in res.codes


# --- plausibility ---------------------------------------------------------------------------


def test_frozen_frames_fail(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    frames = video[0:15] + [video[15]] * 20 + video[16:46]
    res = run(make(issuer, ["turn_left"], replay, verifier), frames)
    assert res.status == "failed" and "FROZEN_FRAMES" in res.codes
    ev = next(r for r in res.reasons if r.code == "FROZEN_FRAMES").evidence
    assert ev["frames"] >= 9 and ev["max_mean_abs_diff"] == 0.0
    assert res.frames < len(frames)  # processing stopped at the failure


def test_a_few_repeated_frames_are_tolerated(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    frames = video[0:15] + [video[15]] * 3 + video[16:46]  # a camera dropping frames
    assert run(make(issuer, ["turn_left"], replay, verifier), frames).status == "passed"


def test_timestamps_going_backwards_or_jumping_fail(
    issuer: ChallengeIssuer,
    landmark_cache: dict[bytes, LandmarkFrame],
    video: list[np.ndarray],
    verifier: Any,
) -> None:
    for stamps, what in (
        ([i * 33 for i in range(20)] + [600] + [700 + i * 33 for i in range(20)], "backwards"),
        ([i * 33 for i in range(20)] + [5000 + i * 33 for i in range(20)], "jump"),
    ):
        tracker = ReplayTracker(landmark_cache)
        s = make(issuer, ["turn_left"], tracker, verifier)
        for frame, ts in zip(video, stamps, strict=False):
            s.feed(frame, ts)
        res = s.finish()
        assert res.status == "failed" and res.codes[0] == "TIMESTAMP_JUMP", what
        ev = res.reasons[0].evidence
        assert (ev["gap_ms"] <= 0) if what == "backwards" else (ev["gap_ms"] > 1000)
        assert tracker.calls == 20  # the offending frame never reached the landmarker


def test_bad_timestamp_or_frame_raise(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    s = make(issuer, ["blink"], replay, verifier)
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(InvalidRecord):
            s.feed(video[0], bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidImage):
        s.feed(b"not an image", 0)
    ok, jpeg = cv2.imencode(".jpg", video[0])
    assert ok and s.feed(jpeg.tobytes(), 0).face  # encoded frames are decoded
    s.close()


def test_no_face_is_not_checked_and_no_frames_too(
    issuer: ChallengeIssuer, verifier: Any, model_dir: Path
) -> None:
    black = [np.full((480, 640, 3), 20 + i % 2, np.uint8) for i in range(12)]
    res = run(make(issuer, ["blink"], FaceLandmarkTracker(), verifier), black)
    assert res.status == "not_checked" and not res.passed and "NO_FACE" in res.codes
    res = make(issuer, ["blink"], FaceLandmarkTracker(), verifier).finish()
    assert res.status == "not_checked" and "NO_FRAMES" in res.codes


def test_face_leaving_the_frame_for_long_fails(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    empty = np.zeros((480, 640, 3), np.uint8)
    frames = video[0:15] + [empty + (i % 3) for i in range(60)] + video[15:46]
    res = run(make(issuer, ["turn_left"], replay, verifier), frames)
    assert res.status == "failed" and "FACE_LOST" in res.codes


# --- challenge protocol -----------------------------------------------------------------------


def test_reused_nonce_fails_before_any_frame(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    ch = issuer.issue(moves=["turn_left"])
    first = ActiveLivenessSession(ch.token, issuer=issuer, tracker=replay, check_pad=False,
                                  verifier=verifier)  # fmt: skip
    assert run(first, video[0:46]).status == "passed"
    again = ActiveLivenessSession(ch.token, issuer=issuer, check_pad=False)
    assert again.feed(video[0], 0).state == "failed"
    res = again.finish()
    assert res.status == "failed" and res.codes == ("NONCE_REUSED",) and res.frames == 0


def test_expired_challenge_times_out(
    replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    now = [1000.0]
    issuer = ChallengeIssuer(SECRET, ttl=30.0, clock=lambda: now[0])
    ch = issuer.issue(moves=["turn_left"])
    now[0] = 1031.0
    res = ActiveLivenessSession(ch.token, issuer=issuer, check_pad=False).finish()
    assert res.status == "failed" and res.codes == ("CHALLENGE_TIMEOUT",)
    # redeemed in time, but the frames keep coming after the expiry
    now[0] = 1000.0
    ch = issuer.issue(moves=["turn_left"])
    s = ActiveLivenessSession(ch, issuer=issuer, tracker=replay, verifier=verifier,
                              check_pad=False, clock=lambda: now[0])  # fmt: skip
    for frame, ts in frames_from_sequence(video[0:20], FPS):
        s.feed(frame, ts)
    now[0] = 1030.5
    assert s.feed(video[20], 700).state == "failed"
    res = s.finish()
    assert res.codes[0] == "CHALLENGE_TIMEOUT" and res.frames == 20


def test_forged_token_and_token_without_issuer(issuer: ChallengeIssuer) -> None:
    forged = ChallengeIssuer(b"an attacker's own secret value!!").issue(moves=["blink"])
    res = ActiveLivenessSession(forged.token, issuer=issuer, check_pad=False).finish()
    assert res.codes == ("CHALLENGE_INVALID",) and res.status == "failed"
    with pytest.raises(ConfigError):
        ActiveLivenessSession(forged.token)


# --- same face throughout -----------------------------------------------------------------------


def test_spliced_face_is_face_switched(
    issuer: ChallengeIssuer, video: list[np.ndarray], verifier: Any, data_dir: Path
) -> None:
    photo = cv2.imread(str(data_dir / "faces/face_recognition_examples/examples/biden.jpg"))
    assert photo is not None
    h, w = photo.shape[:2]
    scale = min(640 / w, 480 / h)
    photo = cv2.resize(photo, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    y0, x0 = (480 - photo.shape[0]) // 2, (640 - photo.shape[1]) // 2
    canvas[y0 : y0 + photo.shape[0], x0 : x0 + photo.shape[1]] = photo
    rng = np.random.default_rng(0)

    def other(k: int) -> np.ndarray:  # the other person, with camera-like shake and noise
        m = np.float32([[1, 0, k % 3], [0, 1, (k // 3) % 3]])
        out = cv2.warpAffine(canvas, m, (640, 480), borderMode=cv2.BORDER_REPLICATE)
        noise = rng.integers(-3, 4, out.shape)
        return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    frames = video[0:30] + [other(k) for k in range(15)] + video[30:60]
    res = run(make(issuer, ["turn_left", "turn_right"], FaceLandmarkTracker(), verifier), frames)
    assert res.status == "failed" and "FACE_SWITCHED" in res.codes
    ev = next(r for r in res.reasons if r.code == "FACE_SWITCHED").evidence
    assert ev["distance"] > ev["threshold"] and ev["at_ms"] >= 1000  # spliced from frame 30


def test_whole_live_video_performs_seven_moves_with_the_same_face(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    moves = ["turn_left", "turn_right", "turn_left", "turn_right", "turn_right", "turn_right",
             "blink"]  # fmt: skip
    res = run(make(issuer, moves, replay, verifier), video)
    assert res.status == "passed", res.codes
    done = [s.completed_ms for s in res.steps]
    assert all(d is not None for d in done) and done == sorted(done)
    assert res.steps[-1].completed_ms == pytest.approx(199 * 1000 / FPS, abs=40)  # frame 199
    assert res.frames == 200  # nothing processed after the last move
    assert res.face_continuity["samples"] >= 10
    assert res.face_continuity["max_distance"] < res.face_continuity["threshold"]


def test_face_check_off_is_reported(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray]
) -> None:
    res = run(make(issuer, ["turn_left"], replay, None, check_face=False), video[0:46])
    assert res.status == "passed" and "FACE_CONTINUITY_NOT_CHECKED" in res.codes


# --- passive PAD on sampled frames ------------------------------------------------------------


@pytest.fixture(scope="session")
def pad_engine(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    passive = pytest.importorskip("kyc.liveness.passive")
    from kyc.models.minifasnet_convert import convert_minifasnet_pth

    out = tmp_path_factory.mktemp("minifasnet_onnx")
    for name in ("2.7_80x80_MiniFASNetV2", "4_0_0_80x80_MiniFASNetV1SE"):
        convert_minifasnet_pth(model_dir / f"{name}.pth", out / f"{name}.onnx")
    return passive.PassiveLiveness(model_dir=out)


@pytest.mark.slow
def test_real_pad_keeps_the_live_recording_passing(
    issuer: ChallengeIssuer,
    replay: ReplayTracker,
    video: list[np.ndarray],
    verifier: Any,
    pad_engine: Any,
) -> None:
    res = run(make(issuer, ["turn_left"], replay, verifier, check_pad=True,
                   passive=pad_engine.check), video[0:46])  # fmt: skip
    assert res.status == "passed", res.codes
    assert res.pad["status"] == "checked" and res.pad["checked"] >= 1 and res.pad["spoof"] == 0
    pad_models = {m["name"]: m["sha256"] for m in res.models if m["role"] == "pad"}
    assert {"minifasnet_v2", "minifasnet_v1se"} <= set(pad_models)
    assert all(len(h) == 64 for h in pad_models.values())


@pytest.mark.slow
def test_real_pad_flags_a_screen_replay(
    issuer: ChallengeIssuer, verifier: Any, pad_engine: Any, data_dir: Path
) -> None:
    """A face shown on a tablet (real recapture photo), held in front of a shaking camera."""
    img = cv2.imread(str(data_dir / "pad/silent_face_samples/images/sample/image_F2.jpg"))
    assert img is not None
    rng = np.random.default_rng(1)
    frames = []
    for k in range(40):
        m = np.float32([[1, 0, (k % 5) - 2], [0, 1, (k % 3) - 1]])
        out = cv2.warpAffine(img, m, img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
        frames.append(
            np.clip(out.astype(np.int16) + rng.integers(-3, 4, out.shape), 0, 255).astype(np.uint8)
        )
    cfg = ActiveConfig(pad_interval_ms=300)
    s = make(issuer, ["blink"], FaceLandmarkTracker(), verifier, check_pad=True,
             passive=pad_engine, config=cfg)  # fmt: skip
    res = run(s, frames)
    assert res.status == "failed" and "REPLAY_SUSPECTED" in res.codes
    assert res.pad["spoof"] >= 1 and res.pad["spoof"] / res.pad["checked"] >= 0.5


class _EverySampleSpoof:
    """A PAD verdict source for the decision logic only: it judges every sample a spoof.

    The real model on real replay data is exercised in ``test_real_pad_flags_a_screen_replay``;
    this double shows that a spoof verdict fails a session whose moves were all performed.
    """

    status = "spoof"
    score = 0.01
    codes = ("PAD_SPOOF_SUSPECTED",)

    def __call__(self, image: np.ndarray) -> _EverySampleSpoof:
        assert image.shape == (480, 640, 3)
        return self


def test_pad_spoof_fails_a_session_whose_moves_passed(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    res = run(make(issuer, ["turn_left"], replay, verifier, check_pad=True,
                   passive=_EverySampleSpoof()), video[0:46])  # fmt: skip
    assert res.steps[0].status == "passed"
    assert res.status == "failed" and "REPLAY_SUSPECTED" in res.codes


def test_default_pad_is_kyc_liveness_passive(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    pytest.importorskip("kyc.liveness.passive")
    res = run(make(issuer, ["turn_left"], replay, verifier, check_pad=True), video[0:46])
    assert res.status == "passed"  # checked and live, or models not built: never a failure
    pad_models = [m for m in res.models if m["role"] == "pad"]
    if res.pad["status"] == "not_checked":
        assert "PAD_NOT_CHECKED" in res.codes and "unavailable" in res.pad["why"]
        assert pad_models == []
    else:
        assert res.pad["spoof"] == 0 and len(pad_models) >= 2


def test_progress_reports_the_state_and_the_current_prompt(
    issuer: ChallengeIssuer, replay: ReplayTracker, video: list[np.ndarray], verifier: Any
) -> None:
    s = make(issuer, ["turn_left", "turn_right"], replay, verifier)
    blank = s.feed(np.zeros((480, 640, 3), np.uint8), 0)
    assert blank.state == "waiting_face" and not blank.face and blank.move == "turn_left"
    seen = []
    for frame, ts in frames_from_sequence(video[0:67], FPS, start_ms=33):
        p = s.feed(frame, ts)
        seen.append((p.state, p.move))
    assert seen[0] == ("calibrating", "turn_left")
    assert ("in_progress", "turn_left") in seen and ("in_progress", "turn_right") in seen
    assert seen[-1] == ("completed", None)
    assert p.done and p.prompt is None and json.loads(json.dumps(p.to_dict()))["step"] == 2
    assert s.finish().status == "passed"


def test_pad_model_missing_is_not_checked_not_failed(
    issuer: ChallengeIssuer,
    replay: ReplayTracker,
    video: list[np.ndarray],
    verifier: Any,
    tmp_path: Path,
) -> None:
    passive = pytest.importorskip("kyc.liveness.passive")
    engine = passive.PassiveLiveness(model_dir=tmp_path)  # no ONNX files there
    res = run(make(issuer, ["turn_left"], replay, verifier, check_pad=True, passive=engine),
              video[0:46])  # fmt: skip
    assert res.status == "passed" and "PAD_NOT_CHECKED" in res.codes
    assert res.pad["status"] == "not_checked"


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"turn_deg": 5.0, "turn_release_deg": 8.0},
        {"blink_open": 0.6},
        {"pad_spoof_fraction": 0.0},
        {"frozen_min_frames": 0},
        {"wrong_moves": ("jump",)},
        {"max_gap_ms": float("nan")},
    ],
)
def test_bad_config_raises(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ActiveConfig(**kw)
