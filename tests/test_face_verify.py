"""Tests for kyc.face.verify, kyc.face.embed and kyc.face.profiles on real models and photos."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from kyc.errors import (
    ConfigError,
    EmptyImage,
    InvalidImage,
    KycError,
    ModelCorrupt,
    ModelUnavailable,
    MultipleFaces,
    NoFace,
    TruncatedImage,
    UnsupportedImage,
)
from kyc.face.align import ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150, align_face
from kyc.face.detect import FaceDetector
from kyc.face.embed import (
    ArcFaceEmbedder,
    DlibEmbedder,
    EmbedderConfig,
    compare,
    make_embedder,
)
from kyc.face.profiles import (
    ThresholdProfile,
    default_profile,
    get_profile,
    load_profiles,
    resolve_profile,
)
from kyc.face.quality import QualityLimits
from kyc.face.verify import FaceTemplate, FaceVerifier, MatchResult
from kyc.image import load_image

MOBILEFACENET_SHA = "d14f9d2f226d16f5fd340215813852f5ac005973769cf686faf97a781a96bd47"
LADDER = ("obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg",
          "obama_small.jpg", "obama2.jpg")  # fmt: skip


@pytest.fixture(scope="module")
def ex(data_dir: Path) -> Path:
    return data_dir / "faces/face_recognition_examples/examples"


@pytest.fixture(scope="module")
def fv(model_dir: Path) -> FaceVerifier:
    return FaceVerifier()


@pytest.fixture(scope="module")
def mobile(model_dir: Path) -> FaceVerifier:
    # eval-only model through the ArcFace family; no shipped profile, so a caller's threshold
    return FaceVerifier("mobilefacenet_eval_only", profile=0.45)


@pytest.fixture(scope="module")
def noise_jpeg() -> bytes:
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 2)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


# --- 1:1 decisions -------------------------------------------------------------------------


@pytest.mark.parametrize("name", LADDER)
def test_obama_matches_across_the_resolution_ladder(fv: FaceVerifier, ex: Path, name: str) -> None:
    r = fv.verify(ex / name, ex / "obama.jpg")
    assert r.status == "match" and r.is_match
    assert r.score is not None and r.score <= r.threshold
    assert r.codes[-1] == "FACE_MATCH"
    assert r.reasons[-1].evidence["distance"] == pytest.approx(r.score, abs=1e-6)


def test_obama_vs_biden_is_a_mismatch(fv: FaceVerifier, ex: Path) -> None:
    for name in ("obama.jpg", "obama-240p.jpg", "obama2.jpg"):
        r = fv.verify(ex / name, ex / "biden.jpg")
        assert r.status == "mismatch" and not r.is_match
        assert r.score is not None and r.score > r.threshold
        assert r.codes == ("FACE_MISMATCH",)


def test_result_names_profile_population_models_and_quality(fv: FaceVerifier, ex: Path) -> None:
    r = fv.verify(ex / "obama-480p.jpg", ex / "obama2.jpg")
    prof = default_profile("dlib_resnet_v1")
    assert r.profile == prof.name and r.population == prof.population
    assert r.threshold == prof.threshold and r.fmr_target == prof.fmr_target
    assert r.metric == "euclidean" and r.profile_provisional == prof.provisional
    roles = {m["role"]: m for m in r.models}
    assert roles["detector"]["name"] == "yunet_2023mar"
    assert roles["embedder"]["name"] == "dlib_resnet_v1"
    assert all(len(m["sha256"]) == 64 for m in r.models)
    assert r.quality_id is not None and r.quality_selfie is not None
    assert r.face_id is not None and r.face_selfie is not None
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["reasons"][-1]["code"] == "FACE_MATCH"


def test_result_is_frozen(fv: FaceVerifier, ex: Path) -> None:
    r = fv.verify(ex / "obama.jpg", ex / "obama2.jpg")
    with pytest.raises(AttributeError):
        r.status = "mismatch"  # type: ignore[misc]


def test_no_face_gives_not_checked_with_the_side_named(
    fv: FaceVerifier, ex: Path, noise_jpeg: bytes
) -> None:
    r = fv.verify(ex / "obama.jpg", noise_jpeg)
    assert r.status == "not_checked" and not r.is_match and r.score is None
    assert r.codes == ("NO_FACE_IN_SELFIE",)
    assert r.quality_selfie is None and r.quality_id is not None
    r2 = fv.verify(np.zeros((200, 300, 3), np.uint8), ex / "obama.jpg")
    assert r2.status == "not_checked" and r2.codes == ("NO_FACE_IN_ID",)
    background = np.ascontiguousarray(load_image(ex / "obama-1080p.jpg")[:400, :500])
    r3 = fv.verify(background, noise_jpeg)
    assert r3.codes == ("NO_FACE_IN_ID", "NO_FACE_IN_SELFIE")


def test_multiple_faces_are_reported_under_largest(fv: FaceVerifier, ex: Path) -> None:
    r = fv.verify(ex / "two_people.jpg", ex / "biden.jpg")
    assert r.status in ("match", "mismatch")
    assert "MULTIPLE_FACES_IN_ID" in r.codes
    ev = r.reasons[r.codes.index("MULTIPLE_FACES_IN_ID")].evidence
    assert ev["count"] >= 2 and ev["second_ratio"] >= 0.25 and ev["policy"] == "largest"


def test_multiple_faces_reject_policy_gives_not_checked(model_dir: Path, ex: Path) -> None:
    strict = FaceVerifier(multi_face="reject")
    r = strict.verify(ex / "obama.jpg", ex / "two_people.jpg")
    assert r.status == "not_checked" and r.score is None
    assert r.codes == ("MULTIPLE_FACES_IN_SELFIE",)
    # a single-face pair is unaffected by the policy
    assert strict.verify(ex / "obama-480p.jpg", ex / "obama.jpg").status == "match"


def test_centre_policy_changes_the_chosen_face(model_dir: Path, ex: Path) -> None:
    img = load_image(ex / "two_people.jpg")
    faces = FaceDetector().detect(img)
    assert len(faces) == 2
    largest = FaceVerifier(multi_face="largest").represent(img)
    centre = FaceVerifier(multi_face="centre").represent(img)
    cx = img.shape[1] / 2
    nearest = min(faces, key=lambda f: abs(f.centre[0] - cx) + abs(f.centre[1] - img.shape[0] / 2))
    assert centre.face.box == nearest.box and largest.face.box == faces[0].box


def test_low_quality_is_reported_without_blocking_by_default(fv: FaceVerifier, ex: Path) -> None:
    img = load_image(ex / "obama.jpg")
    face = FaceDetector().detect(img)[0]
    blurred = cv2.GaussianBlur(img, (0, 0), 0.12 * face.inter_eye)
    r = fv.verify(ex / "obama2.jpg", blurred)
    assert r.status in ("match", "mismatch") and r.score is not None
    assert "LOW_QUALITY_SELFIE" in r.codes
    ev = r.reasons[r.codes.index("LOW_QUALITY_SELFIE")].evidence
    assert ev["failed"] == ["LOW_QUALITY_BLUR"] and ev["policy"] == "report"
    assert r.quality_selfie is not None and not r.quality_selfie.passed


def test_quality_require_blocks_the_comparison(model_dir: Path, ex: Path) -> None:
    strict = FaceVerifier(quality="require", quality_limits=QualityLimits(min_inter_eye=40))
    small = load_image(ex / "obama-240p.jpg")  # about 27 px between the eyes
    r = strict.verify(small, ex / "obama.jpg")
    assert r.status == "not_checked" and r.score is None
    assert r.codes == ("LOW_QUALITY_ID",)
    assert r.quality_id is not None and "LOW_QUALITY_FACE_TOO_SMALL" in r.quality_id.codes


# --- bad input -----------------------------------------------------------------------------


def test_bad_bytes_raise_typed_errors_naming_the_side(fv: FaceVerifier, ex: Path) -> None:
    good = (ex / "obama.jpg").read_bytes()
    with pytest.raises(TruncatedImage, match=r"^selfie: "):
        fv.verify(ex / "obama.jpg", good[: len(good) // 3])
    with pytest.raises(UnsupportedImage, match=r"^id_image: "):
        fv.verify(b"this is not an image at all", good)
    with pytest.raises(EmptyImage):
        fv.verify(b"", good)
    with pytest.raises(InvalidImage):
        fv.verify(np.full((10, 10, 3), np.nan), good)


def test_verify_many_reports_the_bad_item_and_finishes_the_rest(
    fv: FaceVerifier, ex: Path, noise_jpeg: bytes
) -> None:
    good = (ex / "obama.jpg").read_bytes()
    pairs = [
        (ex / "obama-480p.jpg", ex / "obama.jpg"),
        (good[:5000], ex / "obama.jpg"),  # truncated
        (ex / "obama.jpg", ex / "biden.jpg"),
        (ex / "obama.jpg", noise_jpeg),
    ]
    # decoded and detected by 2 worker threads, embedded in batches of 2 pairs
    out = fv.verify_many(pairs, workers=2, batch_size=2)
    assert len(out) == 4
    assert isinstance(out[1], TruncatedImage) and isinstance(out[1], KycError)
    statuses = [o.status if isinstance(o, MatchResult) else "error" for o in out]
    assert statuses == ["match", "error", "mismatch", "not_checked"]
    # batched results equal one-by-one results
    single = fv.verify(*pairs[2])
    assert isinstance(out[2], MatchResult) and out[2].score == pytest.approx(single.score, abs=1e-5)
    assert fv.verify_many([]) == []


def test_missing_model_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYC_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("KYC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelUnavailable):
        FaceVerifier().verify(np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50, 3), np.uint8))


# --- 1:N templates -------------------------------------------------------------------------


def test_represent_gives_a_template_and_compare_decides(fv: FaceVerifier, ex: Path) -> None:
    a = fv.represent(ex / "obama-720p.jpg")
    b = fv.represent(ex / "obama.jpg")
    c = fv.represent(ex / "biden.jpg")
    assert isinstance(a, FaceTemplate) and a.embedding.shape == (128,)
    assert a.embedding.dtype == np.float32 and not a.embedding.flags.writeable
    assert a.model["name"] == "dlib_resnet_v1" and a.metric == "euclidean"
    assert fv.compare(a, b).status == "match" and fv.compare(a, c).status == "mismatch"
    direct = fv.verify(ex / "obama-720p.jpg", ex / "obama.jpg")
    assert fv.compare(a, b).score == pytest.approx(direct.score, abs=1e-5)
    d = a.to_dict()
    assert json.loads(json.dumps(d)) == d and len(d["embedding"]) == 128


def test_represent_raises_for_no_face_and_for_rejected_multiple_faces(
    fv: FaceVerifier, ex: Path, noise_jpeg: bytes
) -> None:
    with pytest.raises(NoFace):
        fv.represent(noise_jpeg)
    with pytest.raises(MultipleFaces):
        FaceVerifier(multi_face="reject").represent(ex / "two_people.jpg")
    t = fv.represent(ex / "two_people.jpg")
    assert "MULTIPLE_FACES" in [r.code for r in t.reasons]


def test_compare_refuses_templates_from_another_model(
    fv: FaceVerifier, mobile: FaceVerifier, ex: Path
) -> None:
    with pytest.raises(ConfigError):
        fv.compare(fv.represent(ex / "obama.jpg"), mobile.represent(ex / "obama.jpg"))


# --- thread safety -------------------------------------------------------------------------


def test_one_verifier_shared_by_threads(fv: FaceVerifier, ex: Path) -> None:
    pairs = [(ex / "obama-240p.jpg", ex / "obama.jpg"), (ex / "obama2.jpg", ex / "biden.jpg")]
    expected = [fv.verify(*p).score for p in pairs]
    got: list[tuple[int, float | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for i, p in enumerate(pairs):
                s = fv.verify(*p).score
                with lock:
                    got.append((i, s))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 6
    for i, s in got:
        assert s == pytest.approx(expected[i], abs=1e-5)


# --- embedders -----------------------------------------------------------------------------


def test_dlib_batched_embedding_equals_one_by_one(model_dir: Path, ex: Path) -> None:
    det = FaceDetector()
    emb = DlibEmbedder()
    chips = []
    for name in ("obama.jpg", "biden.jpg", "obama-480p.jpg"):
        img = load_image(ex / name)
        chips.append(align_face(img, det.detect(img)[0].landmarks, DLIB_TEMPLATE_150, 150))
    batch = emb.embed(np.stack(chips))
    assert batch.shape == (3, 128) and batch.dtype == np.float32
    for i, chip in enumerate(chips):
        np.testing.assert_allclose(emb.embed(chip), batch[i : i + 1], atol=1e-5)
    assert emb.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError):
        emb.embed(np.zeros((1, 112, 112, 3), np.uint8))


def test_mobilefacenet_through_arcface_embedder_separates_obama_and_biden(
    mobile: FaceVerifier, ex: Path
) -> None:
    emb = mobile.embedder
    assert isinstance(emb, ArcFaceEmbedder)
    assert emb.metric == "cosine" and emb.chip_size == 112 and emb.sha256 == MOBILEFACENET_SHA
    ref = mobile.represent(ex / "obama.jpg").embedding
    biden = mobile.represent(ex / "biden.jpg").embedding
    assert ref.shape == (192,) and np.linalg.norm(ref) == pytest.approx(1.0, abs=1e-5)
    genuine = [float(compare(mobile.represent(ex / n).embedding, ref, "cosine")) for n in LADDER]
    impostor = [float(compare(mobile.represent(ex / n).embedding, biden, "cosine")) for n in LADDER]
    assert min(genuine) > max(impostor) + 0.3
    r = mobile.verify(ex / "obama-480p.jpg", ex / "obama.jpg")
    assert r.status == "match" and r.metric == "cosine" and r.profile == "custom"
    assert r.fmr_target is None
    assert mobile.verify(ex / "obama.jpg", ex / "biden.jpg").status == "mismatch"


def test_mobilefacenet_fixed_batch_is_fed_in_a_loop(mobile: FaceVerifier, ex: Path) -> None:
    det = FaceDetector()
    chips = []
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        img = load_image(ex / name)
        chips.append(align_face(img, det.detect(img)[0].landmarks, ARCFACE_TEMPLATE_112, 112))
    emb = mobile.embedder
    batch = emb.embed(np.stack(chips))  # the model's batch dimension is fixed at 1
    assert batch.shape == (3, 192)
    for i, chip in enumerate(chips):
        np.testing.assert_allclose(emb.embed(chip)[0], batch[i], atol=1e-5)


def test_user_declared_model_from_toml_is_checked_by_sha256(
    model_dir: Path, tmp_path: Path, ex: Path
) -> None:
    cfg_file = tmp_path / "lender_model.toml"
    cfg_file.write_text(
        "[embedder]\n"
        'name = "lender_mobilefacenet"\n'
        f'path = "{model_dir / "mobilefacenet_eval_only.onnx"}"\n'
        f'sha256 = "{MOBILEFACENET_SHA}"\n'
        'family = "arcface"\n'
        'layout = "NHWC"\n'
        'color = "RGB"\n'
        "mean = 127.5\n"
        "std = 128.0\n"
    )
    cfg = EmbedderConfig.from_toml(cfg_file)
    assert cfg.metric == "cosine" and cfg.input_size == 112 and cfg.std == (128.0,) * 3
    fv = FaceVerifier(cfg_file, profile=0.45)
    assert fv.embedder.name == "lender_mobilefacenet"
    r = fv.verify(ex / "obama2.jpg", ex / "obama.jpg")
    assert r.status == "match"
    assert {m["role"]: m["sha256"] for m in r.models}["embedder"] == MOBILEFACENET_SHA
    # the same file under a wrong digest is refused
    bad = EmbedderConfig.from_dict({**cfg.__dict__, "name": "bad", "sha256": "0" * 64})
    with pytest.raises(ModelCorrupt):
        FaceVerifier(bad, profile=0.45).verify(ex / "obama.jpg", ex / "obama2.jpg")
    # a user file must come with its digest
    with pytest.raises(ConfigError):
        EmbedderConfig.from_dict({"name": "x", "path": str(cfg_file)})


def test_wrong_input_spec_is_refused(model_dir: Path) -> None:
    cfg = EmbedderConfig.from_dict(
        {"name": "mfn_wrong", "model": "mobilefacenet_eval_only", "layout": "NCHW"}
    )
    with pytest.raises(KycError, match="input"):
        make_embedder(cfg).embed(np.zeros((1, 112, 112, 3), np.uint8))


def test_embedder_config_validation() -> None:
    with pytest.raises(ConfigError):
        EmbedderConfig.from_dict({"name": "x", "model": "m", "layout": "HWC"})
    with pytest.raises(ConfigError):
        EmbedderConfig.from_dict({"name": "x", "model": "m", "std": 0})
    with pytest.raises(ConfigError):
        EmbedderConfig.from_dict({"name": "x", "model": "m", "colour": "RGB"})  # unknown key
    with pytest.raises(ConfigError):
        make_embedder("no_such_model")
    dl = EmbedderConfig.from_dict({"name": "d", "family": "dlib", "model": "dlib_resnet_v1"})
    assert (dl.input_size, dl.metric, dl.mean, dl.std) == (150, "euclidean", (0.0,) * 3, (1.0,) * 3)


# --- profiles ------------------------------------------------------------------------------


def test_shipped_profiles_load_and_dlib_has_a_default() -> None:
    profiles = load_profiles()
    assert profiles and all(p.population for p in profiles)
    p = default_profile("dlib_resnet_v1")
    assert p.embedder == "dlib_resnet_v1" and p.metric == "euclidean" and p.default
    assert p.fmr_target is not None and 0 < p.threshold < 0.6  # stricter than native dlib
    assert get_profile(p.name) == p


def test_profile_arguments_resolve_as_documented(model_dir: Path) -> None:
    custom = resolve_profile(0.42, embedder="dlib_resnet_v1", metric="euclidean")
    assert custom.name == "custom" and custom.fmr_target is None and custom.threshold == 0.42
    mine = ThresholdProfile("mine", "dlib_resnet_v1", "euclidean", 0.47, 1e-4, population="ours")
    fv = FaceVerifier(profile=mine)
    assert fv.profile is mine
    with pytest.raises(ConfigError):
        resolve_profile("no-such-profile", embedder="dlib_resnet_v1", metric="euclidean")
    with pytest.raises(ConfigError):  # dlib profile on a cosine embedder
        FaceVerifier("mobilefacenet_eval_only", profile=default_profile("dlib_resnet_v1").name)
    lender = EmbedderConfig.from_dict(
        {"name": "lender_model", "path": "/models/lender.onnx", "sha256": "ab" * 32}
    )
    with pytest.raises(ConfigError, match="no threshold profile"):  # a model of one's own
        FaceVerifier(lender)


def test_threshold_direction_follows_the_metric() -> None:
    d = ThresholdProfile("d", "e", "euclidean", 0.5)
    c = ThresholdProfile("c", "e", "cosine", 0.5)
    assert d.is_match(0.5) and not d.is_match(0.51)
    assert c.is_match(0.5) and not c.is_match(0.49)
    with pytest.raises(ConfigError):
        ThresholdProfile("x", "e", "manhattan", 0.5)


def test_profiles_file_of_ones_own(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(
        "[[profile]]\n"
        'name = "bank-a"\nembedder = "dlib_resnet_v1"\nmetric = "euclidean"\n'
        "threshold = 0.44\nfmr_target = 1e-4\nci = [0.42, 0.46]\n"
        'population = "bank A applicants 2024"\nn_genuine = 900\nn_impostor = 400000\n'
        "default = true\n"
    )
    p = default_profile("dlib_resnet_v1", path=f)
    assert p.name == "bank-a" and p.ci == (0.42, 0.46) and p.n_impostor == 400000
    assert p.to_dict()["threshold"] == 0.44
    bad = tmp_path / "bad.toml"
    bad.write_text("[[profile]]\nname = 'x'\n")
    with pytest.raises(ConfigError):
        load_profiles(bad)
