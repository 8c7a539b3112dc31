"""1:1 face verification: is the selfie the person on the ID?

:class:`FaceVerifier` chains the pieces: safe decoding (:func:`kyc.image.load_image`),
YuNet detection with the multi-face policy (:mod:`kyc.face.detect`), the quality gate
(:mod:`kyc.face.quality`), alignment to the embedder's template (:mod:`kyc.face.align`),
embedding (:mod:`kyc.face.embed`) and a calibrated threshold profile
(:mod:`kyc.face.profiles`). It returns a frozen :class:`MatchResult`.

Outcomes, and what is an exception:

* ``status="match"`` / ``"mismatch"``: both faces were compared; reason ``FACE_MATCH`` or
  ``FACE_MISMATCH`` carries the score, the threshold and the profile.
* ``status="not_checked"``: no comparison was possible: ``NO_FACE_IN_ID`` /
  ``NO_FACE_IN_SELFIE``, ``MULTIPLE_FACES_IN_ID`` / ``_SELFIE`` under ``multi_face="reject"``,
  or ``LOW_QUALITY_ID`` / ``_SELFIE`` under ``quality="require"``. ``score`` is ``None``.
* Input that is not a decodable image (empty, truncated, not an image, too large) raises the
  typed :class:`~kyc.errors.InvalidImage` subclass from :func:`~kyc.image.load_image`, with
  ``id_image:`` or ``selfie:`` prefixed to its message: that is bad input, not a result.
  :meth:`FaceVerifier.verify_many` returns such errors in place of that pair's result and
  finishes the rest. A missing or corrupt model raises :class:`~kyc.errors.ModelError`.

Quality never blocks a comparison by default (``quality="report"``): a failing component
adds ``LOW_QUALITY_ID`` / ``LOW_QUALITY_SELFIE`` next to the decision. With
``quality="require"`` it makes the result ``not_checked``. Under the default multi-face policy
(``"largest"``) a second face that matters adds ``MULTIPLE_FACES_IN_ID`` / ``_SELFIE``.

One :class:`FaceVerifier` may be shared by threads: the onnxruntime session is shared and
thread-safe, and every thread gets its own detector.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Union

import numpy as np

from kyc.errors import ConfigError, InvalidImage, KycError, ModelError, MultipleFaces, NoFace
from kyc.face.align import align_face
from kyc.face.detect import Face, FaceDetector, FaceSelection, select_face
from kyc.face.embed import Embedder, EmbedderConfig, compare, make_embedder
from kyc.face.profiles import ThresholdProfile, resolve_profile
from kyc.face.quality import QualityLimits, QualityReport, assess_quality
from kyc.reasons import Reason

if TYPE_CHECKING:  # pragma: no cover
    from kyc.image import ImageLimits

__all__ = [
    "FaceTemplate",
    "FaceVerifier",
    "ImageSource",
    "MatchResult",
]

#: Anything :func:`kyc.image.load_image` accepts.
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, np.ndarray]
QualityPolicy = Literal["report", "require"]


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class MatchResult:
    """The outcome of one ID-vs-selfie comparison.

    ``status`` is ``"match"``, ``"mismatch"`` or ``"not_checked"``; ``is_match`` is true only
    for ``"match"``. ``score`` is the Euclidean distance (``metric="euclidean"``: match when
    ``score <= threshold``) or the cosine similarity (``"cosine"``: match when
    ``score >= threshold``), ``None`` when not checked. ``threshold``, ``fmr_target``,
    ``profile``, ``population`` and ``profile_provisional`` say which calibrated profile
    decided (``fmr_target`` is ``None`` for a caller's own threshold). ``quality_id`` /
    ``quality_selfie`` are the quality reports (``None`` when no face was found), ``face_id``
    / ``face_selfie`` the faces compared, ``models`` the detector and embedder used
    (``{"role", "name", "sha256"}``), ``reasons`` the reason codes with their evidence.
    """

    status: Literal["match", "mismatch", "not_checked"]
    is_match: bool
    score: float | None
    metric: str
    threshold: float
    fmr_target: float | None
    profile: str
    population: str
    quality_id: QualityReport | None
    quality_selfie: QualityReport | None
    models: tuple[dict[str, str], ...]
    reasons: tuple[Reason, ...]
    face_id: Face | None = None
    face_selfie: Face | None = None
    profile_provisional: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the whole result."""
        return {
            "status": self.status,
            "is_match": self.is_match,
            "score": _round(self.score),
            "metric": self.metric,
            "threshold": self.threshold,
            "fmr_target": self.fmr_target,
            "profile": self.profile,
            "population": self.population,
            "profile_provisional": self.profile_provisional,
            "quality_id": self.quality_id.to_dict() if self.quality_id else None,
            "quality_selfie": self.quality_selfie.to_dict() if self.quality_selfie else None,
            "face_id": self.face_id.to_dict() if self.face_id else None,
            "face_selfie": self.face_selfie.to_dict() if self.face_selfie else None,
            "models": [dict(m) for m in self.models],
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """One face's embedding with what it came from (for :class:`~kyc.face.index.FaceIndex`).

    ``embedding`` is a read-only ``(D,)`` float32 vector from ``model`` (``{"role", "name",
    "sha256"}``) compared with ``metric``; ``face`` and ``quality`` describe the face it was
    taken from; ``reasons`` holds ``MULTIPLE_FACES`` and the quality components that failed.
    Contains no pixels.
    """

    embedding: np.ndarray
    face: Face
    quality: QualityReport
    model: dict[str, str]
    metric: str
    reasons: tuple[Reason, ...] = ()

    def __post_init__(self) -> None:
        emb = np.array(self.embedding, dtype=np.float32).reshape(-1)
        emb.setflags(write=False)
        object.__setattr__(self, "embedding", emb)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the embedding as a list of floats)."""
        return {
            "embedding": [float(v) for v in self.embedding],
            "face": self.face.to_dict(),
            "quality": self.quality.to_dict(),
            "model": dict(self.model),
            "metric": self.metric,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass
class _Side:
    """One image's way through detection, selection, quality and alignment."""

    label: str  # "ID" or "SELFIE"
    selection: FaceSelection
    quality: QualityReport | None = None
    chip: np.ndarray | None = None
    reasons: list[Reason] = field(default_factory=list)
    blocked: bool = False  # no comparison possible for this side


class FaceVerifier:
    """Verify that two photos show the same person (ID photo vs selfie).

    Parameters:
        embedder: ``"dlib"`` (default; ``dlib_resnet_v1``), ``"mobilefacenet_eval_only"``
            (evaluation only), a TOML config path, a dict / :class:`EmbedderConfig`, or any
            object following the :class:`~kyc.face.embed.Embedder` protocol.
        profile: threshold profile name, :class:`ThresholdProfile`, or a plain threshold
            (reported as profile ``"custom"`` with no FMR claim); ``None`` = the embedder's
            default profile from ``kyc/face/profiles.toml``.
        multi_face: ``"largest"`` (default), ``"centre"`` or ``"reject"``.
        multi_face_ratio: a second face matters (``MULTIPLE_FACES_*``) when its area is at
            least this share of the largest face's (default 0.25).
        quality: ``"report"`` (default: failures add ``LOW_QUALITY_*`` reasons) or
            ``"require"`` (failures make the result ``not_checked``).
        quality_limits: :class:`QualityLimits` (defaults documented there).
        detector: a :class:`FaceDetector` to use; else one is built with ``max_side`` and
            ``detector_score``.
        image_limits: :class:`kyc.image.ImageLimits` for decoding.
        intra_op_num_threads: onnxruntime threads for the embedder session.

    Nothing is loaded until the first call (or :meth:`load`). Threshold profiles are
    resolved immediately, so an embedder without a profile fails here with ``ConfigError``.

    >>> fv = FaceVerifier(profile=0.5)                # doctest: +SKIP
    >>> r = fv.verify("id_card.jpg", "selfie.jpg")    # doctest: +SKIP
    >>> r.status, r.score, r.threshold, r.codes       # doctest: +SKIP
    ('match', 0.38, 0.5, ('FACE_MATCH',))
    """

    def __init__(
        self,
        embedder: str | os.PathLike[str] | dict[str, Any] | EmbedderConfig | Embedder = "dlib",
        *,
        profile: str | float | ThresholdProfile | None = None,
        multi_face: str = "largest",
        multi_face_ratio: float = 0.25,
        quality: QualityPolicy = "report",
        quality_limits: QualityLimits | None = None,
        detector: FaceDetector | None = None,
        max_side: int = 1280,
        detector_score: float = 0.6,
        image_limits: ImageLimits | None = None,
        intra_op_num_threads: int | None = None,
    ) -> None:
        if quality not in ("report", "require"):
            raise ConfigError(f"quality must be 'report' or 'require'; got {quality!r}")
        # validate the policy and ratio now rather than on the first image
        select_face([], (1, 1), policy=multi_face, significant_ratio=multi_face_ratio)
        self.embedder: Embedder = make_embedder(embedder, intra_op_num_threads=intra_op_num_threads)
        self.profile: ThresholdProfile = resolve_profile(
            profile, embedder=self.embedder.name, metric=self.embedder.metric
        )
        self.detector = detector or FaceDetector(max_side=max_side, score_threshold=detector_score)
        self.multi_face = "centre" if multi_face == "center" else multi_face
        self.multi_face_ratio = float(multi_face_ratio)
        self.quality_policy: QualityPolicy = quality
        self.quality_limits = quality_limits or QualityLimits()
        self.image_limits = image_limits
        self._models: tuple[dict[str, str], ...] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FaceVerifier(embedder={self.embedder.name!r}, profile={self.profile.name!r}, "
            f"multi_face={self.multi_face!r}, quality={self.quality_policy!r})"
        )

    # -- models -----------------------------------------------------------------------------

    def load(self) -> FaceVerifier:
        """Resolve and check both models now (instead of on first use); returns ``self``."""
        _ = self.models
        return self

    @property
    def models(self) -> tuple[dict[str, str], ...]:
        """``({"role": "detector", ...}, {"role": "embedder", ...})`` with names and sha256."""
        if self._models is None:
            with self._lock:
                if self._models is None:
                    det = self.detector.model
                    self._models = (
                        {"role": "detector", "name": det["name"], "sha256": det["sha256"]},
                        {
                            "role": "embedder",
                            "name": self.embedder.name,
                            "sha256": self.embedder.sha256,
                        },
                    )
        return self._models

    # -- pipeline pieces --------------------------------------------------------------------

    def _load(self, source: ImageSource, what: str) -> np.ndarray:
        from kyc.image import load_image

        try:
            return load_image(source, limits=self.image_limits)
        except InvalidImage as exc:
            try:  # same type, message naming the side
                err = type(exc)(f"{what}: {exc.message}")
            except TypeError:  # pragma: no cover - a subclass with another signature
                raise exc from None
            raise err from exc

    def _side(self, image: np.ndarray, label: str) -> _Side:
        faces = self.detector.detect(image)
        sel = select_face(
            faces, image.shape, policy=self.multi_face, significant_ratio=self.multi_face_ratio
        )
        side = _Side(label, sel)
        where = "the ID image" if label == "ID" else "the selfie"
        if sel.count == 0:
            side.reasons.append(
                Reason(f"NO_FACE_IN_{label}", f"no face found in {where}", {"faces": 0})
            )
            side.blocked = True
            return side
        if sel.multiple:
            msg = f"{sel.significant} faces of similar size in {where}" + (
                ": refused to choose" if sel.rejected else f"; used the {sel.policy} one"
            )
            side.reasons.append(Reason(f"MULTIPLE_FACES_IN_{label}", msg, sel.evidence()))
        if sel.face is None:
            side.blocked = True
            return side
        side.quality = assess_quality(image, sel.face, self.quality_limits)
        if not side.quality.passed:
            failed = side.quality.codes
            side.reasons.append(
                Reason(
                    f"LOW_QUALITY_{label}",
                    f"{where} fails the quality gate: "
                    + "; ".join(r.message for r in side.quality.reasons),
                    {"failed": list(failed), "policy": self.quality_policy},
                )
            )
            if self.quality_policy == "require":
                side.blocked = True
                return side
        side.chip = align_face(
            image, sel.face.landmarks, self.embedder.template, self.embedder.chip_size
        )
        return side

    def _prepare(self, source: ImageSource, what: str, label: str) -> _Side:
        return self._side(self._load(source, what), label)

    def _result(
        self,
        id_side: _Side,
        selfie_side: _Side,
        emb_id: np.ndarray | None,
        emb_selfie: np.ndarray | None,
    ) -> MatchResult:
        prof = self.profile
        reasons = [*id_side.reasons, *selfie_side.reasons]
        score: float | None = None
        status: Literal["match", "mismatch", "not_checked"] = "not_checked"
        if emb_id is not None and emb_selfie is not None:
            score = float(compare(emb_id, emb_selfie, self.embedder.metric))
            matched = prof.is_match(score)
            status = "match" if matched else "mismatch"
            what = "distance" if prof.metric == "euclidean" else "similarity"
            op = (
                ("<=" if matched else ">")
                if prof.metric == "euclidean"
                else (">=" if matched else "<")
            )
            fmr = f"FMR {prof.fmr_target:g}" if prof.fmr_target is not None else "no FMR claim"
            reasons.append(
                Reason(
                    "FACE_MATCH" if matched else "FACE_MISMATCH",
                    f"{what} {score:.4f} {op} threshold {prof.threshold:g} "
                    f"(profile {prof.name}, {fmr})",
                    {
                        what: round(score, 6),
                        "threshold": prof.threshold,
                        "metric": prof.metric,
                        "fmr_target": prof.fmr_target,
                        "profile": prof.name,
                        "provisional": prof.provisional,
                    },
                )
            )
        return MatchResult(
            status=status,
            is_match=status == "match",
            score=score,
            metric=prof.metric,
            threshold=prof.threshold,
            fmr_target=prof.fmr_target,
            profile=prof.name,
            population=prof.population,
            quality_id=id_side.quality,
            quality_selfie=selfie_side.quality,
            models=self.models,
            reasons=tuple(reasons),
            face_id=id_side.selection.face,
            face_selfie=selfie_side.selection.face,
            profile_provisional=prof.provisional,
        )

    def _embed_sides(self, sides: Sequence[_Side]) -> list[np.ndarray | None]:
        """Embed every unblocked side's chip in one batch; ``None`` for blocked sides."""
        chips = [s.chip for s in sides if not s.blocked and s.chip is not None]
        emb = self.embedder.embed(np.stack(chips)) if chips else np.zeros((0, 0), np.float32)
        out: list[np.ndarray | None] = []
        k = 0
        for s in sides:
            if not s.blocked and s.chip is not None:
                out.append(emb[k])
                k += 1
            else:
                out.append(None)
        return out

    def _finish(self, pairs: Sequence[tuple[_Side, _Side]]) -> list[MatchResult]:
        sides: list[_Side] = []
        for a, b in pairs:
            both = not a.blocked and not b.blocked
            # a side whose partner cannot be compared is not embedded
            sides.append(a if both else _blocked(a))
            sides.append(b if both else _blocked(b))
        embs = self._embed_sides(sides)
        return [
            self._result(pairs[i][0], pairs[i][1], embs[2 * i], embs[2 * i + 1])
            for i in range(len(pairs))
        ]

    # -- public API -------------------------------------------------------------------------

    def verify(self, id_image: ImageSource, selfie: ImageSource) -> MatchResult:
        """Compare the face on ``id_image`` with the face on ``selfie``.

        Each argument is a path, bytes, a binary file object or an ndarray (anything
        :func:`kyc.image.load_image` takes). Returns a :class:`MatchResult`; raises an
        :class:`~kyc.errors.InvalidImage` subclass (message prefixed ``id_image:`` or
        ``selfie:``) when an input is not a decodable image.
        """
        id_side = self._prepare(id_image, "id_image", "ID")
        selfie_side = self._prepare(selfie, "selfie", "SELFIE")
        return self._finish([(id_side, selfie_side)])[0]

    def verify_many(
        self,
        pairs: Iterable[tuple[ImageSource, ImageSource]],
        *,
        workers: int = 1,
        batch_size: int = 16,
    ) -> list[MatchResult | KycError]:
        """Verify many ``(id_image, selfie)`` pairs; one entry per pair, in order.

        A pair whose input is bad gets its :class:`~kyc.errors.KycError` (for example
        ``TruncatedImage``) in place of a result and the rest are still verified. Model
        problems (:class:`~kyc.errors.ModelError`) concern every pair and are raised.
        ``workers`` > 1 decodes and detects in a thread pool; faces are embedded in batches
        of ``batch_size`` pairs.
        """
        items = list(pairs)
        if workers < 1 or batch_size < 1:
            raise ConfigError("workers and batch_size must be >= 1")
        out: list[MatchResult | KycError] = []

        def prep(item: tuple[ImageSource, ImageSource]) -> tuple[_Side, _Side] | KycError:
            try:
                a, b = item
            except (TypeError, ValueError):
                return InvalidImage("each item must be an (id_image, selfie) pair")
            try:
                return (self._prepare(a, "id_image", "ID"), self._prepare(b, "selfie", "SELFIE"))
            except ModelError:
                raise
            except KycError as exc:
                return exc

        pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                prepared = list(pool.map(prep, chunk)) if pool else [prep(it) for it in chunk]
                ok = [p for p in prepared if not isinstance(p, KycError)]
                done = iter(self._finish(ok))
                for p in prepared:
                    out.append(p if isinstance(p, KycError) else next(done))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return out

    def represent(self, image: ImageSource) -> FaceTemplate:
        """Embed the face in ``image`` for 1:N search (:class:`~kyc.face.index.FaceIndex`).

        Returns a :class:`FaceTemplate`. Raises :class:`~kyc.errors.NoFace` when no face is
        found, :class:`~kyc.errors.MultipleFaces` when ``multi_face="reject"`` refuses to
        choose, ``InvalidImage`` for bad input. Quality failures are reported in the
        template (``reasons``) and never raise, whatever the ``quality`` policy.
        """
        img = self._load(image, "image")
        faces = self.detector.detect(img)
        sel = select_face(
            faces, img.shape, policy=self.multi_face, significant_ratio=self.multi_face_ratio
        )
        if sel.count == 0:
            raise NoFace("no face found in the image")
        if sel.face is None:
            raise MultipleFaces(
                f"{sel.significant} faces of similar size in the image and multi_face='reject'"
            )
        reasons: list[Reason] = []
        if sel.multiple:
            reasons.append(
                Reason("MULTIPLE_FACES", f"{sel.significant} faces of similar size", sel.evidence())
            )
        quality = assess_quality(img, sel.face, self.quality_limits)
        reasons.extend(quality.reasons)
        chip = align_face(img, sel.face.landmarks, self.embedder.template, self.embedder.chip_size)
        emb = self.embedder.embed(chip[None])[0]
        return FaceTemplate(
            embedding=emb,
            face=sel.face,
            quality=quality,
            model=dict(self.models[1]),
            metric=self.embedder.metric,
            reasons=tuple(reasons),
        )

    def compare(self, a: FaceTemplate, b: FaceTemplate) -> MatchResult:
        """Decide on two templates made by :meth:`represent` with the same embedder.

        The result carries the templates' quality reports; ``MULTIPLE_FACES`` and quality
        reasons of the templates are not repeated. Templates from another model raise
        ``ConfigError``.
        """
        mine = self.models[1]["sha256"]
        for t in (a, b):
            if t.model.get("sha256") != mine:
                raise ConfigError(
                    f"template made with {t.model.get('name')!r} ({t.model.get('sha256')}); "
                    f"this verifier uses {self.embedder.name!r} ({mine})"
                )
        sa = _Side("ID", _selection_of(a.face), quality=a.quality)
        sb = _Side("SELFIE", _selection_of(b.face), quality=b.quality)
        return self._result(sa, sb, a.embedding, b.embedding)


def _blocked(side: _Side) -> _Side:
    return _Side(side.label, side.selection, side.quality, None, side.reasons, True)


def _selection_of(face: Face) -> FaceSelection:
    return FaceSelection(face, 1, 1, 0.0, "given", False, faces=(face,))
