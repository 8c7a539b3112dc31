"""1:N duplicate search: find one face behind several identities.

:class:`FaceIndex` keeps face embeddings (templates) of enrolled subjects in one contiguous
float32 matrix and answers "which enrolled subjects look most like this face?" by exact
search (one matrix-vector product; 10^5 templates of 128 dimensions take a few
milliseconds on two cores; see ``benchmarks/face_index_bench.py``).

Scores. Every template is L2-normalised when added, and so is every query, so a hit
reports

* ``score``: the cosine similarity of the two embeddings, in [-1, 1] (higher = more alike);
* ``distance``: the Euclidean distance between the two *unit* vectors,
  ``sqrt(2 - 2 * score)``, in [0, 2] (lower = more alike).

Both orderings are the same. For cosine embedders (ArcFace-style) ``score`` is the usual
similarity. The dlib embedder's profiles, however, are Euclidean distances between *raw*
embeddings, and raw dlib embeddings are not unit length (norms 1.18-1.66, mean 1.41 on
7,427 LFW faces), so a dlib profile threshold does not apply to ``distance`` here: unit
distances are roughly the raw ones divided by 1.4, and the ranking can differ slightly
from raw-distance ranking. Thresholds for this index are calibrated on unit-vector
distances by ``benchmarks/face_calibrate.py`` (for dlib on LFW: 0.380 at FMR 1e-3, 0.420
at 1e-2, 0.347 at 1e-4; see ``benchmarks/RESULTS.md``), or on your own data with
:func:`kyc.calibrate.calibrate`.

Privacy. The index holds embeddings (biometric templates) and subject ids, never an image.
Subject ids are stored as given: use opaque ids (for example
``IdentifierHasher.token(IdKind.APPLICANT, applicant_id)``), not names. Protect the saved
file like any biometric data.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> index = FaceIndex()
>>> a, b = rng.normal(size=128), rng.normal(size=128)
>>> index.add("applicant-1", a)
1
>>> index.add("applicant-2", b)
1
>>> index.add("applicant-3", a + 0.05 * rng.normal(size=128))  # same face, new identity
1
>>> [hit.subject_id for hit in index.search(a, k=2)]
['applicant-1', 'applicant-3']
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kyc.errors import ConfigError, StoreError

__all__ = ["FORMAT_VERSION", "FaceIndex", "IndexHit"]

FORMAT_VERSION = 1
_MIN_CAPACITY = 64


@dataclass(frozen=True)
class IndexHit:
    """One enrolled subject found near a query face.

    Attributes:
        subject_id: the id the subject was enrolled under.
        score: cosine similarity between the query and the subject's closest template
            (higher = more alike, in [-1, 1]).
        distance: Euclidean distance between the two unit vectors, ``sqrt(2 - 2 * score)``
            (lower = more alike, in [0, 2]).
    """

    subject_id: str
    score: float
    distance: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"subject_id": self.subject_id, "score": self.score, "distance": self.distance}


def _unit_rows(emb: npt.NDArray[np.float32], what: str) -> npt.NDArray[np.float32]:
    """L2-normalise rows in float32; refuse non-finite or all-zero vectors."""
    if not np.isfinite(emb).all():
        raise ConfigError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    if (norms <= 1e-12).any():
        raise ConfigError(f"{what} contains an all-zero embedding: it has no direction")
    return np.ascontiguousarray(emb / norms[:, None].astype(np.float32), dtype=np.float32)


class FaceIndex:
    """Exact 1:N search over L2-normalised face embeddings, several templates per subject.

    Args:
        dim: embedding dimension (128 for dlib, 192/512 for ArcFace-style models); when
            ``None`` it is fixed by the first :meth:`add`.
        embedder: optional name of the embedder the templates come from (for example
            ``"dlib_resnet_v1"``); stored in the file and checked by :meth:`load` callers
            through :attr:`embedder`, so templates of different models are not mixed.

    Adding, removing and searching are thread-safe. Storage is one contiguous
    ``(capacity, dim)`` float32 matrix that grows by doubling (amortised O(1) per add);
    :meth:`remove` really deletes the subject's vectors (the rows are compacted away).
    """

    def __init__(self, dim: int | None = None, *, embedder: str | None = None) -> None:
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise ConfigError(f"index dimension must be a positive integer, got {dim!r}")
        self._dim: int | None = dim
        self.embedder = embedder
        self._vectors = np.empty((0, dim or 0), dtype=np.float32)
        self._size = 0
        self._rows: list[str] = []  # subject id of each stored row, in row order
        self._counts: dict[str, int] = {}  # subject id -> number of templates
        self._lock = threading.RLock()

    # --- properties --------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        """Embedding dimension, or ``None`` while the index is empty and unsized."""
        return self._dim

    def __len__(self) -> int:
        """Number of stored templates (a subject may have several)."""
        return self._size

    @property
    def n_subjects(self) -> int:
        """Number of distinct enrolled subjects."""
        return len(self._counts)

    def subjects(self) -> list[str]:
        """Enrolled subject ids, in order of first enrolment."""
        with self._lock:
            return list(self._counts)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._counts

    def templates(self, subject_id: str) -> npt.NDArray[np.float32]:
        """Copy of the unit-vector templates stored for ``subject_id`` (``(n, dim)``)."""
        with self._lock:
            mask = np.fromiter((s == subject_id for s in self._rows), bool, self._size)
            out: npt.NDArray[np.float32] = self._vectors[: self._size][mask].copy()
            return out

    # --- input checks --------------------------------------------------------------------------

    @staticmethod
    def _check_id(subject_id: object) -> str:
        if not isinstance(subject_id, str) or not subject_id:
            raise ConfigError(f"subject id must be a non-empty string, got {subject_id!r}")
        return subject_id

    def _as_matrix(self, embedding: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
        """Validate one (D,) vector or an (N, D) stack; return (N, D) float32 unit rows."""
        try:
            arr = np.asarray(embedding, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what} is not a numeric embedding: {exc}") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ConfigError(f"{what} must be a (D,) or (N, D) array, got shape {arr.shape}")
        if self._dim is not None and arr.shape[1] != self._dim:
            model = f" {self.embedder}" if self.embedder else ""
            raise ConfigError(
                f"{what} has {arr.shape[1]} dimensions but the index holds {self._dim}-d"
                f"{model} templates: embeddings from a different model cannot be compared"
            )
        return _unit_rows(arr, what)

    # --- mutation ------------------------------------------------------------------------------

    def _reserve(self, extra: int, dim: int) -> None:
        need = self._size + extra
        if self._vectors.shape[0] >= need:
            return
        capacity = max(_MIN_CAPACITY, self._vectors.shape[0])
        while capacity < need:
            capacity *= 2
        grown = np.empty((capacity, dim), dtype=np.float32)
        grown[: self._size] = self._vectors[: self._size]
        self._vectors = grown

    def add(self, subject_id: str, embedding: npt.ArrayLike) -> int:
        """Enrol one template ``(D,)`` or several ``(N, D)`` for ``subject_id``.

        Templates add to any the subject already has. Returns the number added.
        Raises :class:`~kyc.errors.ConfigError` for a bad id, a wrong dimension, or
        NaN/zero vectors (nothing is added then).
        """
        sid = self._check_id(subject_id)
        with self._lock:
            vecs = self._as_matrix(embedding, f"embedding for {sid!r}")
            if self._dim is None:
                self._dim = int(vecs.shape[1])
                self._vectors = np.empty((0, self._dim), dtype=np.float32)
            self._reserve(vecs.shape[0], self._dim)
            self._vectors[self._size : self._size + vecs.shape[0]] = vecs
            self._size += vecs.shape[0]
            self._rows.extend([sid] * vecs.shape[0])
            self._counts[sid] = self._counts.get(sid, 0) + vecs.shape[0]
            return int(vecs.shape[0])

    def add_many(self, subject_ids: Sequence[str], embeddings: npt.ArrayLike) -> int:
        """Enrol row ``i`` of ``embeddings`` (``(N, D)``) under ``subject_ids[i]``.

        All rows are validated first; on any error nothing is added. Returns N.
        """
        ids = [self._check_id(s) for s in subject_ids]
        with self._lock:
            vecs = self._as_matrix(embeddings, "embeddings")
            if len(ids) != vecs.shape[0]:
                raise ConfigError(f"{len(ids)} subject ids for {vecs.shape[0]} embeddings")
            if self._dim is None:
                self._dim = int(vecs.shape[1])
                self._vectors = np.empty((0, self._dim), dtype=np.float32)
            self._reserve(vecs.shape[0], self._dim)
            self._vectors[self._size : self._size + vecs.shape[0]] = vecs
            self._size += vecs.shape[0]
            self._rows.extend(ids)
            for sid in ids:
                self._counts[sid] = self._counts.get(sid, 0) + 1
            return len(ids)

    def remove(self, subject_id: str) -> int:
        """Delete every template of ``subject_id``; returns how many were removed (0 if none).

        The vectors are removed from storage (rows compacted), not merely hidden.
        """
        sid = self._check_id(subject_id)
        with self._lock:
            if sid not in self._counts:
                return 0
            keep = np.fromiter((s != sid for s in self._rows), bool, self._size)
            kept = int(keep.sum())
            self._vectors[:kept] = self._vectors[: self._size][keep]
            self._vectors[kept : self._size] = 0.0  # overwrite the deleted templates
            removed = self._size - kept
            self._size = kept
            self._rows = [s for s in self._rows if s != sid]
            del self._counts[sid]
            return removed

    # --- search --------------------------------------------------------------------------------

    def _hits(
        self,
        sims: npt.NDArray[np.float32],
        k: int,
        min_score: float | None,
    ) -> list[IndexHit]:
        """Best template per subject, top ``k`` subjects, from one row of similarities."""
        n = sims.shape[0]
        hits: list[IndexHit] = []
        if n == 0:
            return hits
        take = min(n, max(k * 2, k + 8))
        while True:
            top = np.argpartition(sims, n - take)[n - take :] if take < n else np.arange(n)
            top = top[np.argsort(-sims[top], kind="stable")]
            seen: set[str] = set()
            hits = []
            for row in top:
                score = float(sims[row])
                if min_score is not None and score < min_score:
                    break
                sid = self._rows[int(row)]
                if sid in seen:
                    continue
                seen.add(sid)
                distance = float(np.sqrt(max(0.0, 2.0 - 2.0 * score)))
                hits.append(IndexHit(sid, min(1.0, max(-1.0, score)), distance))
                if len(hits) == k:
                    return hits
            # ran out: either all candidates were examined or the cut-off was reached
            if take >= n or (min_score is not None and sims[top[-1]] < min_score):
                return hits
            take = min(n, take * 4)

    def _limits(self, k: int, min_score: float | None, max_distance: float | None) -> float | None:
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if max_distance is not None:
            if not 0.0 <= max_distance <= 2.0:
                raise ConfigError(f"max_distance {max_distance!r} is outside [0, 2]")
            from_distance = 1.0 - max_distance * max_distance / 2.0
            min_score = from_distance if min_score is None else max(min_score, from_distance)
        return min_score

    def search(
        self,
        embedding: npt.ArrayLike,
        k: int = 5,
        *,
        min_score: float | None = None,
        max_distance: float | None = None,
    ) -> list[IndexHit]:
        """Top ``k`` enrolled subjects nearest to one query embedding ``(D,)``, best first.

        Each subject appears once, scored by its closest template. ``min_score`` (cosine)
        and/or ``max_distance`` (unit-vector Euclidean) drop hits beyond a threshold, so a
        search may return fewer than ``k`` hits (an empty list when nobody is close).
        """
        if np.ndim(embedding) != 1:
            raise ConfigError(
                f"search takes one (D,) embedding, got shape {np.shape(embedding)}: "
                "use search_many for several queries"
            )
        return self.search_many(
            np.reshape(embedding, (1, -1)), k, min_score=min_score, max_distance=max_distance
        )[0]

    def search_many(
        self,
        embeddings: npt.ArrayLike,
        k: int = 5,
        *,
        min_score: float | None = None,
        max_distance: float | None = None,
        block: int = 256,
    ) -> list[list[IndexHit]]:
        """:meth:`search` for each row of a ``(Q, D)`` query matrix; one list per query."""
        limit = self._limits(k, min_score, max_distance)
        with self._lock:
            queries = self._as_matrix(embeddings, "query embedding")
            if self._size == 0:
                return [[] for _ in range(queries.shape[0])]
            stored = self._vectors[: self._size]
            out: list[list[IndexHit]] = []
            for start in range(0, queries.shape[0], block):
                sims = queries[start : start + block] @ stored.T
                out.extend(self._hits(row, k, limit) for row in sims)
            return out

    # --- persistence --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to ``path`` (``.npz``, no pickle, atomic replace); returns it.

        The file holds the unit-vector templates, the subject ids (as strings), the
        embedder name and a format version: no image.
        """
        target = Path(path)
        with self._lock:
            subjects = list(self._counts)
            code_of = {s: i for i, s in enumerate(subjects)}
            codes = np.fromiter((code_of[s] for s in self._rows), np.int64, self._size)
            arrays: dict[str, Any] = {
                "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
                "dim": np.array(self._dim or 0, dtype=np.int64),
                "embedder": np.array(self.embedder or "", dtype=np.str_),
                "vectors": np.ascontiguousarray(self._vectors[: self._size]),
                "subjects": np.array(subjects, dtype=np.str_).reshape(-1),
                "rows": codes,
            }
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, **arrays)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaceIndex:
        """Read an index written by :meth:`save` (no pickle is ever loaded).

        Raises :class:`~kyc.errors.StoreError` naming the file when it is missing, not an
        index file, from an unknown format version, or inconsistent.
        """
        src = Path(path)
        try:
            with np.load(src, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise StoreError(f"face index file {src} does not exist") from None
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(f"{src} is not a readable face index file: {exc}") from None
        needed = {"format_version", "dim", "embedder", "vectors", "subjects", "rows"}
        missing = needed - set(arrays)
        if missing:
            raise StoreError(f"{src} is not a face index file (missing {sorted(missing)})")
        version = int(arrays["format_version"])
        if version != FORMAT_VERSION:
            raise StoreError(
                f"{src} has index format {version}; this version reads {FORMAT_VERSION}"
            )
        vectors = arrays["vectors"]
        subjects = arrays["subjects"]
        rows = arrays["rows"]
        dim = int(arrays["dim"])
        ok = (
            vectors.dtype == np.float32
            and vectors.ndim == 2
            and rows.ndim == 1
            and rows.shape[0] == vectors.shape[0]
            and subjects.ndim == 1
            and subjects.dtype.kind == "U"
            and (vectors.shape[0] == 0 or (dim == vectors.shape[1] and dim > 0))
            and (rows.size == 0 or (rows.min() >= 0 and rows.max() < subjects.size))
            and np.isfinite(vectors).all()
        )
        if not ok:
            raise StoreError(f"{src} is an inconsistent face index file (shapes or ids disagree)")
        embedder = str(arrays["embedder"]) or None
        index = cls(dim if dim > 0 else None, embedder=embedder)
        if vectors.shape[0]:
            ids = [str(s) for s in subjects]
            index._vectors = np.ascontiguousarray(vectors)
            index._size = int(vectors.shape[0])
            index._rows = [ids[int(c)] for c in rows]
            counts: dict[str, int] = {}
            for sid in index._rows:
                counts[sid] = counts.get(sid, 0) + 1
            # keep the saved enrolment order of subjects
            index._counts = {s: counts[s] for s in ids if s in counts}
        return index

    # --- convenience ---------------------------------------------------------------------------

    @classmethod
    def from_templates(
        cls,
        items: Iterable[tuple[str, npt.ArrayLike]],
        *,
        dim: int | None = None,
        embedder: str | None = None,
    ) -> FaceIndex:
        """Build an index from ``(subject_id, embedding)`` pairs."""
        index = cls(dim, embedder=embedder)
        for sid, emb in items:
            index.add(sid, emb)
        return index

    def __repr__(self) -> str:
        model = f", embedder={self.embedder!r}" if self.embedder else ""
        return (
            f"FaceIndex(dim={self._dim}, templates={self._size}, subjects={self.n_subjects}{model})"
        )
