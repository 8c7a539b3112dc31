"""Tests for kyc.face.detect (YuNet, multi-face policy) and kyc.face.align (templates)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from kyc.errors import ConfigError, InvalidImage
from kyc.face.align import (
    ARCFACE_TEMPLATE_112,
    DLIB_TEMPLATE_150,
    align_face,
    similarity_transform,
)
from kyc.face.detect import Face, FaceDetector, select_face
from kyc.image import load_image

EXAMPLES = "faces/face_recognition_examples/examples"


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def examples(data_dir: Path) -> Path:
    return data_dir / EXAMPLES


def _face(x: float, y: float, w: float, h: float) -> Face:
    """A synthetic face box with plausible landmarks inside it."""
    pts = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return Face((x, y, w, h), pts * [w, h] + [x, y], 0.9)


# --- detection -----------------------------------------------------------------------------


def test_detects_one_face_with_landmarks_in_yunet_order(
    detector: FaceDetector, examples: Path
) -> None:
    img = load_image(examples / "obama.jpg")
    faces = detector.detect(img)
    assert len(faces) == 1
    f = faces[0]
    x, y, w, h = f.box
    assert f.score > 0.8 and w > 100 and h > 100
    assert f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32
    # right eye (image left) first, mouth below nose below eyes
    assert f.landmarks[0, 0] < f.landmarks[1, 0]
    assert f.landmarks[3, 0] < f.landmarks[4, 0]
    assert f.landmarks[:2, 1].max() < f.landmarks[2, 1] < f.landmarks[3:, 1].min()
    assert np.all((f.landmarks >= [x, y]) & (f.landmarks <= [x + w, y + h]))
    with pytest.raises(ValueError):
        f.landmarks[0, 0] = 0.0  # read-only


def test_large_image_is_downscaled_and_boxes_map_back_to_original_pixels(
    detector: FaceDetector, examples: Path
) -> None:
    big = load_image(examples / "obama-1080p.jpg")  # 1920x1080 > max_side 1280
    # the detector's own input for the big image is this 1280x720 resize
    small = cv2.resize(big, (1280, 720), interpolation=cv2.INTER_AREA)
    fb = detector.detect(big)[0]
    fs = detector.detect(small)[0]
    # the same face, in each image's own pixels: 1.5x the coordinates in the big one
    np.testing.assert_allclose(np.array(fb.box), np.array(fs.box) * 1.5, rtol=1e-4)
    np.testing.assert_allclose(fb.landmarks, fs.landmarks * 1.5, rtol=1e-4)
    assert fb.inter_eye > 80  # in original pixels, not the 1280-px detector input


def test_max_side_is_configurable(model_dir: Path, examples: Path) -> None:
    img = load_image(examples / "obama-1080p.jpg")
    coarse = FaceDetector(max_side=480).detect(img)[0]
    fine = FaceDetector(max_side=1920).detect(img)[0]
    np.testing.assert_allclose(coarse.landmarks, fine.landmarks, atol=10)


def test_small_image_is_used_at_native_size(detector: FaceDetector, data_dir: Path) -> None:
    # a 112x112 LFW portrait: used as is (never blown up), its face is found, and the result
    # equals pasting it unscaled into a large canvas
    path = sorted((data_dir / "faces/lfw/images/Aaron_Peirsol").glob("*.jpg"))[0]
    img = cv2.resize(load_image(path), (112, 112), interpolation=cv2.INTER_AREA)
    faces = detector.detect(img)
    assert len(faces) == 1
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:112, :112] = img
    pasted = detector.detect(canvas)
    np.testing.assert_allclose(faces[0].landmarks, pasted[0].landmarks, atol=2)


def test_tiny_real_face_is_found_at_native_size(detector: FaceDetector, examples: Path) -> None:
    img = load_image(examples / "obama_small.jpg")
    face = detector.detect(img)[0]
    tiny = cv2.resize(img, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)  # 128x96
    faces = detector.detect(tiny)
    assert faces, "a 40 px face in a 128x96 image must be found without upscaling"
    np.testing.assert_allclose(faces[0].landmarks, face.landmarks * 0.4, atol=4)


def test_no_face_in_noise_blank_or_background(detector: FaceDetector, examples: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((300, 300, 3), np.uint8)) == []
    # a real photo region without a face: the flag/background corner of the 1080p frame
    corner = load_image(examples / "obama-1080p.jpg")[:400, :500]
    assert detector.detect(np.ascontiguousarray(corner)) == []


def test_faces_are_sorted_largest_first(detector: FaceDetector, data_dir: Path) -> None:
    img = load_image(data_dir / "faces/celebrities13/selfie-many-people.jpg")
    faces = detector.detect(img)
    assert len(faces) >= 3
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_non_image_arrays_are_refused(detector: FaceDetector) -> None:
    with pytest.raises(InvalidImage):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidImage):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InvalidImage):
        detector.detect("photo.jpg")  # type: ignore[arg-type]


def test_bad_detector_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        FaceDetector(score_threshold=1.5)
    with pytest.raises(ConfigError):
        FaceDetector(max_side=8)


def test_one_detector_shared_by_threads_gives_the_same_faces(
    detector: FaceDetector, examples: Path
) -> None:
    images = [load_image(examples / n) for n in ("obama.jpg", "biden.jpg", "two_people.jpg")]
    expected = [[f.box for f in detector.detect(im)] for im in images]
    errors: list[BaseException] = []
    got: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}

    def work(t: int) -> None:
        try:
            for rep in range(3):
                for i, im in enumerate(images):
                    got[(t, rep * 10 + i)] = [f.box for f in detector.detect(im)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(got) == 4 * 9
    for (_, k), boxes in got.items():
        assert boxes == expected[k % 10]


def test_detector_reports_its_model_hash(detector: FaceDetector) -> None:
    m = detector.model
    assert m["name"] == "yunet_2023mar"
    assert m["sha256"] == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


# --- multi-face policy ---------------------------------------------------------------------


def test_policy_largest_reports_a_second_face_that_matters() -> None:
    big, other = _face(100, 100, 200, 200), _face(400, 100, 120, 120)  # area ratio 0.36
    sel = select_face([other, big], (600, 800, 3))
    assert sel.face is big and sel.count == 2 and sel.multiple and not sel.rejected
    assert sel.second_ratio == pytest.approx(0.36)
    assert sel.evidence()["count"] == 2


def test_small_background_face_does_not_matter() -> None:
    big, tiny = _face(100, 100, 200, 200), _face(500, 50, 60, 60)  # ratio 0.09
    sel = select_face([big, tiny], (600, 800, 3), policy="reject")
    assert sel.face is big and sel.count == 2 and not sel.multiple and not sel.rejected


def test_significant_ratio_is_configurable() -> None:
    big, tiny = _face(100, 100, 200, 200), _face(500, 50, 60, 60)
    assert select_face([big, tiny], (600, 800), significant_ratio=0.05).multiple


def test_policy_centre_picks_the_face_nearest_the_centre() -> None:
    big_corner = _face(0, 0, 200, 200)
    centred = _face(350, 250, 100, 100)
    sel = select_face([big_corner, centred], (600, 800, 3), policy="centre")
    assert sel.face is centred and sel.multiple
    assert select_face([big_corner, centred], (600, 800), policy="center").face is centred


def test_policy_reject_refuses_to_choose() -> None:
    a, b = _face(100, 100, 200, 200), _face(400, 100, 190, 190)
    sel = select_face([a, b], (600, 800, 3), policy="reject")
    assert sel.face is None and sel.rejected and sel.multiple


def test_unknown_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        select_face([], (10, 10), policy="first")
    with pytest.raises(ConfigError):
        select_face([], (10, 10), significant_ratio=0.0)


def test_no_faces_selects_nothing() -> None:
    sel = select_face([], (10, 10))
    assert sel.face is None and sel.count == 0 and not sel.multiple


def test_face_to_dict_is_plain_json() -> None:
    import json

    d = _face(1, 2, 30, 40).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert len(d["landmarks"]) == 5


# --- alignment -----------------------------------------------------------------------------


def test_yunet_order_matches_the_templates() -> None:
    for tpl in (DLIB_TEMPLATE_150, ARCFACE_TEMPLATE_112):
        assert tpl[0, 0] < tpl[1, 0]  # first eye on the image left
        assert tpl[3, 0] < tpl[4, 0]  # first mouth corner on the image left
        assert tpl[2, 1] > tpl[0, 1] and tpl[3, 1] > tpl[2, 1]


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    ang, scale, t = np.deg2rad(17.0), 0.63, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), dst)


def test_similarity_transform_never_reflects() -> None:
    src = DLIB_TEMPLATE_150.astype(np.float64)
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize(
    "template,size,scale",
    [
        (DLIB_TEMPLATE_150, 150, 2.2),
        (ARCFACE_TEMPLATE_112, 112, 1.3),
        (DLIB_TEMPLATE_150, 150, 5.0),
    ],
)
def test_aligned_chip_puts_the_landmarks_on_the_template(
    template: np.ndarray, size: int, scale: float
) -> None:
    # five white dots where a rotated, scaled, shifted template would put them
    ang = np.deg2rad(-23.0)
    rot = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    pts = template.astype(np.float64) @ rot.T + [150.0, 260.0]
    canvas = np.zeros((1000, 1000, 3), np.uint8)
    for x, y in pts:
        cv2.circle(canvas, (round(x * 16), round(y * 16)), round(2.5 * scale * 16), (255, 255, 255),
                   -1, lineType=cv2.LINE_AA, shift=4)  # fmt: skip
    chip = align_face(canvas, pts, template, size)
    assert chip.shape == (size, size, 3) and chip.dtype == np.uint8
    assert chip.flags["C_CONTIGUOUS"]
    grey = chip[..., 0].astype(np.float64)
    n, labels = cv2.connectedComponents((grey > 60).astype(np.uint8))
    assert n - 1 == 5
    centres = []
    for k in range(1, n):
        ys, xs = np.nonzero(labels == k)
        w = grey[ys, xs]
        centres.append([np.sum(xs * w) / w.sum(), np.sum(ys * w) / w.sum()])
    for t in template:  # every template point has a dot within half a pixel
        assert min(np.hypot(*(np.array(c) - t)) for c in centres) < 0.6


def test_downscaling_alignment_matches_a_plain_area_resize(
    detector: FaceDetector, examples: Path
) -> None:
    """A face shrunk more than 2x is area-averaged first: no aliasing."""
    img = load_image(examples / "obama-1080p.jpg")
    face = detector.detect(img)[0]
    chip = align_face(img, face.landmarks, DLIB_TEMPLATE_150, 150).astype(np.float64)
    # reference: area-resize the whole image to the chip scale first, then warp
    m = similarity_transform(face.landmarks, DLIB_TEMPLATE_150)
    s = float(np.sqrt(np.linalg.det(m[:, :2])))
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    ref = align_face(small, face.landmarks * s, DLIB_TEMPLATE_150, 150).astype(np.float64)
    naive = cv2.warpAffine(img, m, (150, 150), flags=cv2.INTER_LINEAR).astype(np.float64)
    err_chip = np.abs(chip - ref).mean()
    err_naive = np.abs(naive - ref).mean()
    assert err_chip < err_naive


def test_align_face_refuses_non_images() -> None:
    with pytest.raises(InvalidImage):
        align_face(np.zeros((10, 10), np.uint8), DLIB_TEMPLATE_150, DLIB_TEMPLATE_150, 150)
