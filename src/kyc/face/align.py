"""Face alignment: a similarity transform from the 5 YuNet landmarks to a model's template.

Each embedder was trained on chips cut in one particular way; feeding it chips cut the same
way is what makes its distances meaningful. The two templates here give, for the 5 points in
YuNet order (right eye, left eye, nose tip, right mouth corner, left mouth corner; "right" is
the subject's right = the image left), where they must land on the chip:

* :data:`DLIB_TEMPLATE_150`: dlib's 150x150 chip (``dlib.get_face_chip``, padding 0.25) for
  the dlib ResNet descriptor;
* :data:`ARCFACE_TEMPLATE_112`: the standard 112x112 ArcFace/InsightFace template, used by
  MobileFaceNet- and ArcFace-style models.

The transform (rotation, uniform scale, translation; no shear) is the least-squares
Umeyama (1991) solution, computed in closed form: deterministic, no RANSAC. When it shrinks the
face by more than 2x, the face region is first reduced with area averaging so the chip does not
alias (bilinear sampling alone skips pixels).

>>> import numpy as np
>>> m = similarity_transform(DLIB_TEMPLATE_150 * 2 + 5, DLIB_TEMPLATE_150)
>>> np.allclose(m, [[0.5, 0, -2.5], [0, 0.5, -2.5]], atol=1e-6)
True
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from kyc.errors import InvalidImage

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DLIB_TEMPLATE_150",
    "align_face",
    "similarity_transform",
    "warp_params",
]

DLIB_TEMPLATE_150: np.ndarray = np.array(
    [[47.02, 43.51], [101.2, 43.34], [73.54, 75.28], [50.81, 99.95], [98.57, 99.56]],
    dtype=np.float32,
)
DLIB_TEMPLATE_150.setflags(write=False)

ARCFACE_TEMPLATE_112: np.ndarray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE_112.setflags(write=False)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping points ``src`` onto ``dst``.

    ``src`` and ``dst`` are ``(N, 2)`` arrays (N >= 2) of corresponding points. Returns the
    ``(2, 3)`` float64 matrix ``M`` such that ``dst ~= src @ M[:, :2].T + M[:, 2]`` (Umeyama's
    closed form; a reflection is never produced). Raises ``ValueError`` for degenerate input
    (all source points equal).
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if s.shape != d.shape or s.shape[0] < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {s.shape} and {d.shape}")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    var_s = float((sc**2).sum() / len(s))
    if var_s <= 1e-12:
        raise ValueError("source points are degenerate (all equal)")
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign)) / var_s
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def warp_params(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """The source image and ``(2, 3)`` matrix to ``cv2.warpAffine`` for an aligned chip.

    ``size`` is ``(width, height)`` of the chip. When the chip shrinks the face by more than
    2x, the returned source is the face region already reduced with area averaging (and the
    matrix maps that reduced region), so bilinear sampling does not alias; otherwise it is
    ``image`` itself.
    """
    cw, ch = size
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    tpl = np.asarray(template, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(pts, tpl)
    scale = math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    if scale >= 0.5:
        return image, m
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [cw, 0, 1], [0, ch, 1], [cw, ch, 1]], dtype=np.float64)
    mapped = corners @ inv.T
    pad = 2.0 / scale
    x0 = max(math.floor(mapped[:, 0].min() - pad), 0)
    y0 = max(math.floor(mapped[:, 1].min() - pad), 0)
    x1 = min(math.ceil(mapped[:, 0].max() + pad), image.shape[1])
    y1 = min(math.ceil(mapped[:, 1].max() + pad), image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:  # the chip lies outside the image
        return image, m
    factor = scale * 1.25  # leave a little resolution for the bilinear step
    crop = image[y0:y1, x0:x1]
    nw = max(2, round(crop.shape[1] * factor))
    nh = max(2, round(crop.shape[0] * factor))
    src = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    local = (pts - [x0, y0]) * [nw / crop.shape[1], nh / crop.shape[0]]
    return src, similarity_transform(local, tpl)


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray,
    size: int | tuple[int, int],
) -> np.ndarray:
    """Cut an aligned face chip.

    ``image`` is an HxWx3 uint8 BGR image, ``landmarks`` the face's ``(5, 2)`` points in that
    image (YuNet order), ``template`` where those points go on the chip (for example
    :data:`DLIB_TEMPLATE_150`), ``size`` the chip side (or ``(width, height)``). Returns a
    C-contiguous ``size x size x 3`` uint8 BGR chip; parts outside the image are black.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
        raise InvalidImage("align_face expects an HxWx3 uint8 BGR ndarray")
    cw, ch = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    src, m = warp_params(image, landmarks, template, (cw, ch))
    chip = cv2.warpAffine(
        src, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.ascontiguousarray(chip)
