"""Tests for kyc.face.index.FaceIndex (1:N duplicate search)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from kyc.errors import ConfigError, StoreError
from kyc.face.index import FaceIndex, IndexHit


def _random_index(n_subjects: int, dim: int = 128, seed: int = 0) -> tuple[FaceIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_subjects, dim)).astype(np.float32)
    index = FaceIndex(embedder="test")
    index.add_many([f"s{i}" for i in range(n_subjects)], emb)
    return index, emb


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_search_matches_brute_force_cosine_ranking() -> None:
    index, emb = _random_index(500)
    rng = np.random.default_rng(1)
    query = rng.normal(size=128)
    hits = index.search(query, k=10)
    sims = _unit(emb.astype(np.float64)) @ _unit(query)
    expected = [f"s{i}" for i in np.argsort(-sims)[:10]]
    assert [h.subject_id for h in hits] == expected
    for h in hits:
        i = int(h.subject_id[1:])
        assert h.score == pytest.approx(sims[i], abs=1e-5)
        # distance is the Euclidean distance between the unit vectors
        d = np.linalg.norm(_unit(emb[i].astype(np.float64)) - _unit(query))
        assert h.distance == pytest.approx(d, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_several_templates_per_subject_report_the_closest_once() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=64)
    index = FaceIndex()
    index.add("alice", np.stack([rng.normal(size=64), a, rng.normal(size=64)]))
    index.add("bob", rng.normal(size=64))
    assert len(index) == 4 and index.n_subjects == 2
    hits = index.search(a, k=5)
    assert [h.subject_id for h in hits] == ["alice", "bob"]  # each subject once
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0].distance == pytest.approx(0.0, abs=1e-3)


def test_threshold_filters_hits() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=128)
    index = FaceIndex()
    index.add("near", a + 0.1 * rng.normal(size=128))
    index.add("far", rng.normal(size=128))
    assert [h.subject_id for h in index.search(a, k=5, min_score=0.9)] == ["near"]
    assert [h.subject_id for h in index.search(a, k=5, max_distance=0.4)] == ["near"]
    assert index.search(-a, k=5, min_score=0.9) == []


def test_planted_duplicates_are_the_top_hits_among_many() -> None:
    # 20,000 random subjects plus 5 faces each enrolled again, noisily, under a new id
    index, emb = _random_index(20_000, seed=4)
    rng = np.random.default_rng(5)
    planted = rng.choice(20_000, 5, replace=False)
    for i in planted:
        index.add(f"dup-of-s{i}", emb[i] + 0.3 * rng.normal(size=128))
    results = index.search_many(emb[planted], k=2)
    for i, hits in zip(planted, results, strict=True):
        assert {h.subject_id for h in hits} == {f"s{i}", f"dup-of-s{i}"}


def test_remove_deletes_the_vectors() -> None:
    index, emb = _random_index(100, dim=16)
    index.add("s5", emb[7])  # a second template for s5
    assert index.remove("s5") == 2
    assert "s5" not in index and len(index) == 99 and index.n_subjects == 99
    assert index.remove("s5") == 0
    hits = index.search(emb[5], k=100)
    assert "s5" not in {h.subject_id for h in hits} and len(hits) == 99
    # s7's own template is still there and still found first
    assert index.search(emb[7], k=1)[0].subject_id == "s7"
    # the stored matrix holds no row equal to s5's template any more
    stored = np.concatenate([index.templates(s) for s in index.subjects()])
    assert stored.shape == (99, 16)
    assert not np.any(np.all(np.isclose(stored, _unit(emb[5])), axis=1))


def test_growth_keeps_contents_and_search() -> None:
    index = FaceIndex(8)
    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(1000, 8))
    for i, v in enumerate(vecs):  # one by one: many reallocations
        index.add(f"x{i}", v)
    assert len(index) == 1000
    for i in (0, 499, 999):
        assert index.search(vecs[i], k=1)[0].subject_id == f"x{i}"


def test_save_load_round_trip(tmp_path: Path) -> None:
    index, emb = _random_index(300, seed=7)
    index.add("s3", emb[4])
    index.remove("s10")
    path = index.save(tmp_path / "faces.npz")
    loaded = FaceIndex.load(path)
    assert len(loaded) == len(index) and loaded.subjects() == index.subjects()
    assert loaded.dim == 128 and loaded.embedder == "test"
    q = np.random.default_rng(8).normal(size=(5, 128))
    assert loaded.search_many(q, k=7) == index.search_many(q, k=7)
    np.testing.assert_array_equal(loaded.templates("s3"), index.templates("s3"))
    # the file holds plain arrays only: loadable without pickle, no image inside
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {
            "format_version",
            "dim",
            "embedder",
            "vectors",
            "subjects",
            "rows",
        }
        assert data["vectors"].dtype == np.float32 and data["subjects"].dtype.kind == "U"
    # the loaded index keeps working
    loaded.add("new", emb[0])
    assert loaded.search(emb[0], k=2)[0].subject_id in {"s0", "new"}


def test_empty_index_round_trip_and_search(tmp_path: Path) -> None:
    index = FaceIndex()
    assert index.search(np.ones(128), k=3) == []
    loaded = FaceIndex.load(index.save(tmp_path / "empty.npz"))
    assert len(loaded) == 0 and loaded.dim is None


def test_wrong_dimension_is_a_typed_error() -> None:
    index, _ = _random_index(10)
    with pytest.raises(ConfigError, match="192 dimensions but the index holds 128-d"):
        index.add("x", np.ones(192))
    with pytest.raises(ConfigError, match="dimensions"):
        index.search(np.ones(64))
    with pytest.raises(ConfigError, match="dimensions"):
        FaceIndex(dim=128).add("x", np.ones(127))
    assert len(index) == 10  # nothing was added


@pytest.mark.parametrize(
    ("subject", "embedding", "message"),
    [
        ("a", np.zeros(128), "all-zero"),
        ("a", np.full(128, np.nan), "NaN"),
        ("a", np.ones((2, 2, 128)), "shape"),
        ("a", "not numbers", "not a numeric"),
        ("", np.ones(128), "non-empty string"),
        (7, np.ones(128), "non-empty string"),
    ],
)
def test_bad_input_is_a_typed_error(subject: object, embedding: object, message: str) -> None:
    index = FaceIndex()
    with pytest.raises(ConfigError, match=message):
        index.add(subject, embedding)  # type: ignore[arg-type]
    assert len(index) == 0


def test_bad_search_arguments() -> None:
    index, emb = _random_index(5)
    with pytest.raises(ConfigError, match="k must be"):
        index.search(emb[0], k=0)
    with pytest.raises(ConfigError, match="max_distance"):
        index.search(emb[0], max_distance=3.0)
    with pytest.raises(ConfigError, match="search_many"):
        index.search(emb[:2])
    with pytest.raises(ConfigError, match="subject ids for"):
        index.add_many(["a"], emb[:2])


def test_unreadable_files_raise_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        FaceIndex.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(StoreError, match="not a readable face index"):
        FaceIndex.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(StoreError, match="missing"):
        FaceIndex.load(other)
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        format_version=np.array(1),
        dim=np.array(4),
        embedder=np.array(""),
        vectors=np.ones((2, 4), np.float32),
        subjects=np.array(["a"]),
        rows=np.array([0, 5]),  # row code out of range
    )
    with pytest.raises(StoreError, match="inconsistent"):
        FaceIndex.load(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(
        pickled,
        format_version=np.array(1),
        dim=np.array(4),
        embedder=np.array(""),
        vectors=np.ones((1, 4), np.float32),
        subjects=np.array([{"evil": 1}], dtype=object),
        rows=np.array([0]),
    )
    with pytest.raises(StoreError):
        FaceIndex.load(pickled)


def test_concurrent_adds_and_searches_are_consistent() -> None:
    index = FaceIndex(32)
    rng = np.random.default_rng(9)
    vecs = rng.normal(size=(800, 32))
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(offset, 800, 4):
                index.add(f"w{i}", vecs[i])
                index.search(vecs[i], k=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(index) == 800
    for i in (0, 401, 799):
        assert index.search(vecs[i], k=1)[0].subject_id == f"w{i}"


def test_hit_to_dict_is_plain_json() -> None:
    hit = IndexHit("a", 0.9, 0.447)
    assert hit.to_dict() == {"subject_id": "a", "score": 0.9, "distance": 0.447}


# --- real faces ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_planted_duplicates_of_real_faces_are_the_top_hits(
    model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """One person enrolled under two applicant ids among 40 other people is found twice."""
    from kyc.face.verify import FaceVerifier

    verifier = FaceVerifier(multi_face="centre")
    examples = data_dir / "faces" / "face_recognition_examples" / "examples"
    lfw = data_dir / "faces" / "lfw" / "images"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and not p.name.startswith("Barack"))
    index = FaceIndex(embedder=verifier.embedder.name)
    for person in people[:: max(1, len(people) // 40)][:40]:
        first = sorted(person.glob("*.jpg"))[0]
        index.add(f"lfw-{person.name}", verifier.represent(first).embedding)
    index.add("applicant-17", verifier.represent(examples / "obama.jpg").embedding)
    index.add("applicant-52", verifier.represent(examples / "obama2.jpg").embedding)
    index.add("applicant-90", verifier.represent(examples / "biden.jpg").embedding)
    assert index.n_subjects == 43

    query = verifier.represent(examples / "obama-720p.jpg").embedding
    hits = index.search(query, k=3)
    assert {h.subject_id for h in hits[:2]} == {"applicant-17", "applicant-52"}
    assert hits[2].distance > hits[1].distance

    # each planted template's nearest other subject is its duplicate
    for own, dup in (("applicant-17", "applicant-52"), ("applicant-52", "applicant-17")):
        others = [h for h in index.search(index.templates(own)[0], k=2) if h.subject_id != own]
        assert others[0].subject_id == dup

    # the saved index finds them too, and removing one identity leaves the other
    loaded = FaceIndex.load(index.save(tmp_path / "idx.npz"))
    assert loaded.remove("applicant-17") == 1
    assert loaded.search(query, k=1)[0].subject_id == "applicant-52"
