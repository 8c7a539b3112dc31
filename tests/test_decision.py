"""Tests for kyc.decision and ``kyc decide`` on real results.

Face matches come from the real FaceVerifier on the face_recognition example photos (Obama,
Biden), passive liveness from the real MiniFASNet pair (ONNX built from the shared .pth files
into a temporary folder, as tests/test_liveness_passive.py does) on those photos and on the
Silent-Face PAD samples, graph reports from a real FraudGraph over kyc.graph.synth data, and
duplicate hits from a real FaceIndex.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.cli import main
from kyc.decision import DECISION_CODES, Decision, decide
from kyc.errors import ConfigError, InvalidRecord
from kyc.policy import default_policy, load_policy

SECRET = b"decision-tests-secret-0123456789"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def clock() -> datetime:
    return NOW


# --- real inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ex(data_dir: Path) -> Path:
    path = data_dir / "faces" / "face_recognition_examples" / "examples"
    if not path.is_dir():
        pytest.skip("face_recognition_examples not found")
    return path


@pytest.fixture(scope="module")
def pad_dir(data_dir: Path) -> Path:
    path = data_dir / "pad" / "silent_face_samples" / "images" / "sample"
    if not path.is_dir():
        pytest.skip("silent_face_samples not found")
    return path


@pytest.fixture(scope="module")
def fv(model_dir: Path) -> Any:
    from kyc.face.verify import FaceVerifier

    for name in ("face_detection_yunet_2023mar.onnx", "dlib_face_recognition_resnet_model_v1.onnx"):
        if not (model_dir / name).is_file():
            pytest.skip(f"{name} not found in the model folder")
    return FaceVerifier().load()


@pytest.fixture(scope="module")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both MiniFASNet ONNX files, built from the shared .pth sources into a temp folder."""
    from kyc.liveness.passive import MODEL_SCALES
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("decision_pad_models")
    for name in MODEL_SCALES:
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


@pytest.fixture(scope="module")
def pad(pad_models: Path, fv: Any) -> Any:
    from kyc.liveness.passive import PassiveLiveness

    return PassiveLiveness(model_dir=pad_models).load()


@pytest.fixture(scope="module")
def match_ok(fv: Any, ex: Path) -> Any:
    r = fv.verify(ex / "obama.jpg", ex / "obama2.jpg")
    assert r.status == "match"
    return r


@pytest.fixture(scope="module")
def match_bad(fv: Any, ex: Path) -> Any:
    r = fv.verify(ex / "obama.jpg", ex / "biden.jpg")
    assert r.status == "mismatch"
    return r


@pytest.fixture(scope="module")
def live(pad: Any, ex: Path) -> Any:
    r = pad.check(ex / "obama2.jpg")
    assert r.status == "live"
    return r


@pytest.fixture(scope="module")
def spoof(pad: Any, pad_dir: Path) -> Any:
    r = pad.check(pad_dir / "image_F2.jpg")  # a tablet replay
    assert r.status == "spoof"
    return r


class Graph:
    """A real FraudGraph over 2,000 synthetic applications with planted rings and stackers."""

    def __init__(self) -> None:
        from kyc.graph.fraudgraph import FraudGraph
        from kyc.graph.synth import generate

        self.ds = generate(2000, seed=1)
        self.g = FraudGraph(secret=SECRET)
        res = self.g.add_many(self.ds.applications)
        assert res.added == 2000 and not res.errors
        self.apps_of: dict[str, list[Any]] = {}
        for app in self.ds.applications:
            self.apps_of.setdefault(app.applicant_id, []).append(app)

    def report(self, applicant_id: str) -> Any:
        return self.g.report(applicant_id)

    def clean(self) -> Any:
        for a in self.ds.applicant_ids:
            if a in self.ds.fraud or a in self.ds.stackers:
                continue
            r = self.report(a)
            if not r.reasons and not r.flagged and r.velocity:
                return r
        raise AssertionError("no clean applicant")

    def flagged_member(self) -> tuple[str, Any]:
        for a in sorted(self.ds.fraud):
            r = self.report(a)
            if r.flagged and r.ring is not None:
                return a, r
        raise AssertionError("no flagged ring")

    def stacker(self, lo: int, hi: int) -> Any:
        for a in sorted(self.ds.stackers):
            r = self.report(a)
            if lo <= r.velocity.get("als_m1_id_all_orgnum", 0) <= hi:
                return r
        raise AssertionError(f"no stacker with {lo}..{hi} lenders in a month")


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph()


def _approved(match_ok: Any, live: Any, graph: Graph, **kw: Any) -> Decision:
    return decide(match=match_ok, liveness=live, graph=graph.clean(), duplicates=[],
                  clock=clock, **kw)


# --- outcomes from real results -------------------------------------------------------------------


def test_match_live_and_clean_graph_approve(match_ok: Any, live: Any, graph: Graph) -> None:
    d = _approved(match_ok, live, graph)
    assert d.outcome == "approve" and d.approved
    assert d.triggered() == ()
    by_code = {r.code: r for r in d.reasons}
    assert by_code["FACE_MATCH"].action == "approve" and by_code["FACE_MATCH"].source == "face"
    ev = by_code["FACE_MATCH"].evidence
    assert ev["distance"] <= ev["threshold"] and ev["fmr_target"] == 0.001
    assert by_code["PAD_LIVE"].action == "approve"
    assert by_code["PAD_LIVE"].evidence["apcer_target"] == 0.05
    assert by_code["ACTIVE_NOT_RUN"].source == "policy"
    assert by_code["ACTIVE_NOT_RUN"].action == "approve"
    checks = {c.name: (c.ran, c.status, c.action) for c in d.checks}
    assert checks == {
        "face": (True, "match", "approve"),
        "liveness": (True, "live", "approve"),
        "active": (False, "not_run", "approve"),
        "graph": (True, "clear", "none"),
        "velocity": (True, "clear", "none"),
        "duplicates": (True, "clear", "none"),
    }
    assert d.check("face").summary["threshold"] == match_ok.threshold
    assert d.subject == graph.clean().applicant
    assert d.decided_at == "2024-05-01T12:00:00Z"
    import kyc

    assert d.kyc_version == kyc.__version__
    p = default_policy()
    assert d.policy == {"name": p.name, "version": p.version, "sha256": p.sha256,
                        "effective_sha256": p.effective_sha256}


def test_models_are_named_with_their_hashes(match_ok: Any, live: Any, graph: Graph) -> None:
    d = _approved(match_ok, live, graph)
    names = {(m["check"], m["name"]) for m in d.models}
    assert {("face", "yunet_2023mar"), ("face", "dlib_resnet_v1"),
            ("liveness", "minifasnet_v2"), ("liveness", "minifasnet_v1se")} <= names
    for m in d.models:
        assert re.fullmatch(r"[0-9a-f]{64}", m["sha256"]), m
        assert "path" not in m


def test_mismatch_rejects(match_bad: Any, live: Any, graph: Graph) -> None:
    d = decide(match=match_bad, liveness=live, graph=graph.clean(), clock=clock)
    assert d.outcome == "reject"
    (r,) = [x for x in d.reasons if x.code == "FACE_MISMATCH"]
    assert r.action == "reject" and r.source == "face"
    assert r.evidence["distance"] > r.evidence["threshold"]
    assert d.check("face").status == "mismatch"
    assert [x.code for x in d.triggered("reject")] == ["FACE_MISMATCH"]


def test_spoof_rejects(match_ok: Any, spoof: Any, graph: Graph) -> None:
    d = decide(match=match_ok, liveness=spoof, graph=graph.clean(), clock=clock)
    assert d.outcome == "reject"
    (r,) = [x for x in d.reasons if x.code == "PAD_SPOOF_SUSPECTED"]
    assert r.action == "reject" and r.evidence["score"] < r.evidence["threshold"]
    assert d.check("liveness").status == "spoof"


def test_liveness_not_run_follows_the_policy(match_ok: Any, graph: Graph) -> None:
    d = decide(match=match_ok, graph=graph.clean(), clock=clock)
    assert d.outcome == "review"  # the default policy: missing liveness -> review
    assert d.check("liveness") .status == "not_run"
    (r,) = d.triggered()
    assert (r.code, r.source, r.action) == ("LIVENESS_NOT_RUN", "policy", "review")
    lenient = {"name": "lenient", "version": "0.1.0", "missing": {"liveness": "approve"}}
    assert decide(match=match_ok, graph=graph.clean(), policy=lenient).outcome == "approve"
    strict = {"name": "strict", "version": "0.1.0", "missing": {"liveness": "reject"}}
    assert decide(match=match_ok, graph=graph.clean(), policy=strict).outcome == "reject"


def test_nothing_given_is_review_under_the_default() -> None:
    d = decide(clock=clock)
    assert d.outcome == "review"
    assert {r.code for r in d.reasons} == {c for c in DECISION_CODES if c.endswith("_NOT_RUN")}
    assert all(not c.ran for c in d.checks) and d.subject is None


def test_face_not_checked_is_review(fv: Any, ex: Path, live: Any, graph: Graph) -> None:
    m = fv.verify(np.zeros((240, 320, 3), np.uint8), ex / "obama.jpg")
    assert m.status == "not_checked"
    d = decide(match=m, liveness=live, graph=graph.clean(), clock=clock)
    assert d.outcome == "review"
    (r,) = [x for x in d.reasons if x.code == "FACE_NOT_CHECKED"]
    assert r.action == "review" and r.evidence["codes"] == ["NO_FACE_IN_ID"]


def test_a_custom_face_threshold_is_review(ex: Path, live: Any, graph: Graph, fv: Any) -> None:
    from kyc.face.verify import FaceVerifier

    m = FaceVerifier(profile=0.6).verify(ex / "obama.jpg", ex / "obama2.jpg")
    assert m.status == "match" and m.fmr_target is None
    d = decide(match=m, liveness=live, graph=graph.clean(), clock=clock)
    assert d.outcome == "review"
    (r,) = d.triggered()
    assert r.code == "FACE_FMR_TARGET_TOO_HIGH"
    assert r.evidence["fmr_target"] is None and r.evidence["max_fmr_target"] == 0.001
    off = {"name": "x", "version": "1.0.0", "face": {"max_fmr_target": False}}
    assert decide(match=m, liveness=live, graph=graph.clean(), policy=off).outcome == "approve"


def test_a_custom_liveness_threshold_is_review(pad_models: Path, ex: Path, match_ok: Any,
                                                graph: Graph) -> None:
    from kyc.liveness.passive import PassiveLiveness

    lv = PassiveLiveness(model_dir=pad_models, threshold=0.3).check(ex / "obama2.jpg")
    assert lv.status == "live" and lv.apcer_target is None
    d = decide(match=match_ok, liveness=lv, graph=graph.clean(), clock=clock)
    assert [r.code for r in d.triggered()] == ["LIVENESS_APCER_TARGET_TOO_HIGH"]


def test_flagged_ring_is_review_and_reject_per_policy(match_ok: Any, live: Any,
                                                       graph: Graph) -> None:
    _, rep = graph.flagged_member()
    d = decide(match=match_ok, liveness=live, graph=rep, duplicates=[], clock=clock)
    assert d.outcome == "review"
    assert d.check("graph").status == "flagged" and d.check("graph").action == "review"
    (high,) = [r for r in d.reasons if r.code == "GRAPH_SCORE_HIGH"]
    assert high.action == "review" and high.source == "graph"
    assert high.evidence["ring_id"] == rep.ring.ring_id
    assert high.evidence["score"] == pytest.approx(rep.score, abs=1e-6)
    assert {s["token"] for s in high.evidence["shared"]} == {s.token for s in rep.ring.shared}
    ring_codes = {r.code for r in rep.ring.reasons}
    for r in d.reasons:
        if r.source == "graph" and r.code in ring_codes:
            assert r.evidence["ring_id"] == rep.ring.ring_id
    # every reason of the report is carried over
    assert {r.code for r in rep.reasons} <= {r.code for r in d.reasons if r.source == "graph"}
    harsh = {"name": "harsh", "version": "1.0.0",
             "graph": {"review_score": 0.2, "reject_score": round(rep.score - 0.01, 3)}}
    d2 = decide(match=match_ok, liveness=live, graph=rep, policy=harsh)
    assert d2.outcome == "reject"
    assert [r.code for r in d2.triggered("reject")] == ["GRAPH_SCORE_HIGH"]
    blind = {"name": "blind", "version": "1.0.0", "velocity": {"limits": []},
             "graph": {"review_score": False, "reject_score": False, "codes": []}}
    assert decide(match=match_ok, liveness=live, graph=rep, policy=blind,
                  duplicates=[]).outcome == "approve"


def test_confirmed_fraud_rejects(match_ok: Any, live: Any) -> None:
    from kyc.graph.fraudgraph import FraudGraph

    g = FraudGraph(secret=SECRET)
    t = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    for i in range(3):
        g.add({"application_id": f"a{i}", "applicant_id": f"P{i}", "lender_id": "L1",
               "timestamp": t, "device_id": "shared-phone", "card": "4111111111111111"})
    g.mark_fraud(["P0"])
    d = decide(match=match_ok, liveness=live, graph=g.report("P0"), clock=clock)
    assert d.outcome == "reject"
    assert "CONFIRMED_FRAUD" in [r.code for r in d.triggered("reject")]


def test_velocity_over_the_limits(match_ok: Any, live: Any, graph: Graph) -> None:
    # the synthetic stackers apply at 6-14 lenders within days: the default rejects them
    rep = graph.stacker(5, 9)
    d = decide(match=match_ok, liveness=live, graph=rep, duplicates=[], clock=clock)
    assert d.outcome == "reject"
    assert d.check("velocity").status == "over_limit"
    hits = {r.evidence["feature"]: r for r in d.reasons if r.code == "VELOCITY_LIMIT_EXCEEDED"}
    week, month = hits["als_d7_id_all_orgnum"], hits["als_m1_id_all_orgnum"]
    assert week.action == "reject" and week.evidence["value"] >= 6
    assert month.action == "review" and month.evidence["value"] == rep.velocity[
        "als_m1_id_all_orgnum"]
    assert (month.evidence["review"], month.evidence["reject"]) == (5, 10)
    assert month.evidence["present"] is True
    # a policy limiting the monthly count only: over the review level -> review
    monthly = {"name": "m1", "version": "1.0.0", "velocity": {"limits": [
        {"feature": "als_m1_id_all_orgnum", "review": 5, "reject": 10}]}}
    d2 = decide(match=match_ok, liveness=live, graph=rep, duplicates=[], policy=monthly)
    assert d2.outcome == "review"
    assert [(r.code, r.action) for r in d2.triggered()] == [("VELOCITY_LIMIT_EXCEEDED",
                                                             "review")]
    heavy = graph.stacker(10, 1000)
    assert decide(match=match_ok, liveness=live, graph=heavy, duplicates=[],
                  policy=monthly).outcome == "reject"
    # counters given directly win over the report's
    d3 = decide(match=match_ok, liveness=live, graph=graph.clean(), duplicates=[],
                velocity={"als_d7_id_all_orgnum": 3})
    assert [(r.code, r.action) for r in d3.triggered()] == [("VELOCITY_LIMIT_EXCEEDED",
                                                             "review")]
    d4 = decide(match=match_ok, liveness=live, graph=heavy, duplicates=[],
                velocity={k: 0 for k in heavy.velocity})
    assert d4.check("velocity").status == "clear" and d4.outcome == "approve"


def test_no_velocity_counters_is_not_run(match_ok: Any, live: Any) -> None:
    d = decide(match=match_ok, liveness=live, velocity={})
    assert d.check("velocity").status == "not_run"
    assert "VELOCITY_NOT_RUN" in d.codes


def test_duplicate_face_under_another_identity(fv: Any, ex: Path, match_ok: Any,
                                               live: Any) -> None:
    from kyc.face.index import FaceIndex
    from kyc.graph.identifiers import IdentifierHasher, IdKind

    hasher = IdentifierHasher(SECRET)
    me = hasher.token(IdKind.APPLICANT, "new-applicant-1")
    other = hasher.token(IdKind.APPLICANT, "earlier-applicant-7")
    index = FaceIndex()
    index.add(other, fv.represent(ex / "obama.jpg").embedding)
    index.add("Joe Biden", fv.represent(ex / "biden.jpg").embedding)  # a raw (bad) subject id
    index.add(me, fv.represent(ex / "obama-480p.jpg").embedding)  # the applicant's own face
    hits = index.search(fv.represent(ex / "obama2.jpg").embedding, k=5)
    assert {h.subject_id for h in hits} == {me, other, "Joe Biden"}
    d = decide(match=match_ok, liveness=live, duplicates=hits, subject=me, clock=clock,
               policy={"name": "x", "version": "1.0.0", "missing": {"graph": "approve"}})
    dups = [r for r in d.reasons if r.code == "DUPLICATE_FACE"]
    assert len(dups) == 1  # the applicant's own enrolment is not a duplicate; Biden is far
    assert dups[0].evidence["subject"] == other and dups[0].action == "review"
    assert dups[0].evidence["distance"] <= 0.38
    assert d.outcome == "review" and d.check("duplicates").status == "found"
    assert [r.code for r in d.triggered()] == ["DUPLICATE_FACE"]
    assert d.check("duplicates").summary["hits"] == 2
    # a non-token subject id is never copied into the decision
    raw = FaceIndex()
    raw.add("Barack Obama", fv.represent(ex / "obama.jpg").embedding)
    d2 = decide(duplicates=raw.search(fv.represent(ex / "obama2.jpg").embedding), clock=clock)
    (r,) = [x for x in d2.reasons if x.code == "DUPLICATE_FACE"]
    assert r.evidence["subject"] is None and r.evidence["subject_redacted"] is True
    assert "Barack" not in d2.to_json()
    # pairs work too, and the reject level applies when the policy sets one
    pol = {"name": "x", "version": "1.0.0", "duplicates": {"reject_distance": 0.38}}
    d3 = decide(duplicates=[(other, hits[0].score)], policy=pol)
    assert d3.outcome == "reject"


def test_active_liveness_failures(match_ok: Any, live: Any, graph: Graph) -> None:
    from kyc.liveness.active import ActiveLivenessSession
    from kyc.liveness.challenge import ChallengeIssuer

    issuer = ChallengeIssuer(SECRET, ttl=600.0)
    forged = ChallengeIssuer(b"an attacker's own secret value!!").issue(moves=["blink"])
    res = ActiveLivenessSession(forged.token, issuer=issuer, check_pad=False).finish()
    assert res.status == "failed"
    d = decide(match=match_ok, liveness=live, active=res, graph=graph.clean(), clock=clock)
    assert d.outcome == "reject"  # an attack code, escalated by the default's active.codes
    codes = {r.code: r.action for r in d.reasons if r.source == "active"}
    assert codes == {"CHALLENGE_INVALID": "reject", "ACTIVE_FAILED": "review"}
    # an expired challenge is a failure but not an attack: review
    now = [1000.0]
    slow = ChallengeIssuer(SECRET, ttl=30.0, clock=lambda: now[0])
    ch = slow.issue(moves=["turn_left"])
    now[0] = 1031.0
    res2 = ActiveLivenessSession(ch.token, issuer=slow, check_pad=False).finish()
    d2 = decide(match=match_ok, liveness=live, active=res2.to_dict(), graph=graph.clean(),
                duplicates=[])
    assert d2.outcome == "review" and d2.check("active").status == "failed"
    assert [r.code for r in d2.triggered()] == ["ACTIVE_FAILED"]
    assert "nonce" not in d2.to_json()


@pytest.mark.slow
def test_active_liveness_passed_on_a_real_video(data_dir: Path, fv: Any, match_ok: Any,
                                                 live: Any, graph: Graph) -> None:
    import cv2

    from kyc.liveness.active import ActiveLivenessSession, frames_from_sequence
    from kyc.liveness.challenge import ChallengeIssuer

    cap = cv2.VideoCapture(str(data_dir / "pad" / "video" / "live_person_moving.webm"))
    frames: list[np.ndarray] = []
    while len(frames) < 46:  # frames 23-43: the head turns to the subject's left
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if len(frames) < 46:
        pytest.skip("the live video is missing or this OpenCV cannot decode it")
    issuer = ChallengeIssuer(SECRET, ttl=600.0)
    session = ActiveLivenessSession(issuer.issue(moves=["turn_left"]).token, issuer=issuer,
                                    verifier=fv, check_pad=False)
    for frame, ts in frames_from_sequence(frames, 30.0):
        if session.feed(frame, ts).done:
            break
    res = session.finish()
    assert res.status == "passed"
    d = decide(match=match_ok, liveness=live, active=res, graph=graph.clean(), duplicates=[],
               clock=clock)
    assert d.outcome == "approve"
    assert (d.check("active").status, d.check("active").action) == ("passed", "approve")
    assert d.check("active").summary["steps_passed"] == 1
    assert [r.action for r in d.reasons if r.code == "CHALLENGE_PASSED"] == ["approve"]
    assert any(m["check"] == "active" for m in d.models)


# --- dicts, stable JSON, privacy ------------------------------------------------------------------


def test_dict_inputs_give_the_same_decision(match_ok: Any, live: Any, graph: Graph) -> None:
    _, rep = graph.flagged_member()
    a = decide(match=match_ok, liveness=live, graph=rep, duplicates=[], clock=clock)
    b = decide(match=match_ok.to_dict(), liveness=live.to_dict(), graph=rep.to_dict(),
               duplicates=[], clock=clock)
    c = decide(**json.loads(json.dumps({"match": match_ok.to_dict(), "liveness": live.to_dict(),
                                        "graph": rep.to_dict(), "duplicates": []})), clock=clock)
    assert a == b == c
    assert a.to_json() == b.to_json() == c.to_json()


def test_json_is_stable_and_sorted(match_ok: Any, live: Any, graph: Graph) -> None:
    _, rep = graph.flagged_member()

    def make() -> str:
        return decide(match=match_ok, liveness=live, graph=rep, clock=clock).to_json()

    first = make()
    assert first == make()
    data = json.loads(first)
    assert json.dumps(data, sort_keys=True, separators=(",", ":")) == first
    assert first.isascii()

    def floats(x: Any) -> list[float]:
        if isinstance(x, float):
            return [x]
        if isinstance(x, dict):
            return [f for v in x.values() for f in floats(v)]
        if isinstance(x, list):
            return [f for v in x for f in floats(v)]
        return []

    for f in floats(data):
        assert f == round(f, 6) and len(repr(f)) <= 24
    d = Decision.from_dict(data)
    assert d.to_json() == first
    pretty = d.to_json(indent=2)
    assert json.loads(pretty) == data


def test_no_raw_identifier_or_path_in_a_decision(match_ok: Any, live: Any, graph: Graph,
                                                 model_dir: Path, pad_models: Path) -> None:
    applicant, rep = graph.flagged_member()
    d = decide(match=match_ok, liveness=live, graph=rep, duplicates=[], clock=clock)
    text = d.to_json()
    ring_members = {a for a, rid in graph.ds.ring_of.items()
                    if rid == graph.ds.ring_of.get(applicant)} | {applicant}
    raw: set[str] = set()
    for a in ring_members:
        for app in graph.apps_of[a]:
            raw.add(app.applicant_id)
            raw.update(v for v in (app.device_id, app.ip, app.address, app.card, app.email)
                       if v)
            raw.update(app.phones)
            raw.update(app.contact_phones)
    assert len(raw) > 20
    leaked = sorted(v for v in raw if v in text)
    assert not leaked
    assert str(model_dir) not in text and str(pad_models) not in text
    assert "/" not in json.dumps([m for m in json.loads(text)["models"]])
    # and the report itself did carry tokens for these identifiers
    assert rep.applicant in text and "device:" in text


def test_decision_time_comes_from_the_clock(match_ok: Any) -> None:
    naive = decide(match=match_ok, clock=lambda: datetime(2024, 1, 2, 3, 4, 5))
    assert naive.decided_at == "2024-01-02T03:04:05Z"
    assert decide(match=match_ok).decided_at.endswith("Z")


def test_policy_can_be_a_file(tmp_path: Path, match_bad: Any) -> None:
    path = tmp_path / "soft.toml"
    path.write_text('name = "soft"\nversion = "3.0.0"\n[face]\non_mismatch = "review"\n')
    d = decide(match=match_bad, policy=str(path))
    assert d.outcome == "review"
    assert (d.policy["name"], d.policy["version"]) == ("soft", "3.0.0")
    assert d.policy["sha256"] == load_policy(path).sha256


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "alice@example.com"}, "subject"),
        ({"subject": "applicant:00ff00ff00ff", "graph": {
            "applicant": "applicant:11ee11ee11ee", "score": 0.0, "flagged": False}}, "subject"),
        ({"match": {"status": "maybe", "reasons": []}}, "match.status"),
        ({"match": {"status": "match", "reasons": [{"code": "face match"}]}},
         "match.reasons[0].code"),
        ({"match": {"status": "match", "reasons": "FACE_MATCH"}}, "match.reasons"),
        ({"match": {"status": "match", "score": "0.3"}}, "match.score"),
        ({"match": 42}, "match"),
        ({"liveness": {"status": "live", "reasons": [{"code": "PAD_LIVE",
                                                      "evidence": {"img": np.zeros((2, 2))}}]}},
         "liveness.reasons[0].evidence.img"),
        ({"active": {"status": "done"}}, "active.status"),
        ({"graph": {"applicant": "P7", "score": 0.1, "flagged": False}}, "graph.applicant"),
        ({"graph": {"reasons": [], "flagged": False}}, "graph.score"),
        ({"graph": {"score": 0.1, "flagged": "no"}}, "graph.flagged"),
        ({"velocity": {"als_m1_id_all_orgnum": -1}}, "velocity.als_m1_id_all_orgnum"),
        ({"velocity": {"lenders": 3}}, "velocity"),
        ({"duplicates": [("applicant:00ff00ff00ff", 3.0)]}, "duplicates[0].score"),
        ({"duplicates": [("applicant:00ff00ff00ff",)]}, "duplicates[0]"),
        ({"duplicates": {"subject_id": "x"}}, "duplicates"),
    ],
)
def test_malformed_inputs_raise_invalid_record(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decide(**kwargs)
    assert info.value.field == field, info.value.message
    assert info.value.message.startswith(field)


def test_bad_policy_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"face\.on_match"):
        decide(policy={"name": "x", "version": "1.0.0", "face": {"on_match": "yes"}})


def test_decision_from_dict_refuses_garbage() -> None:
    with pytest.raises(InvalidRecord):
        Decision.from_dict({"outcome": "maybe"})


# --- the CLI --------------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_decides_from_a_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         match_ok: Any, match_bad: Any, live: Any,
                                         graph: Graph) -> None:
    inputs = {"match": match_ok.to_dict(), "liveness": live.to_dict(),
              "graph": graph.clean().to_dict(), "duplicates": []}
    ok = _write(tmp_path, "ok.json", inputs)
    code, out, _ = _run(["decide", ok], capsys)
    assert code == 0 and out.startswith("decision: APPROVE")
    code, out, _ = _run(["decide", ok, "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    expected = decide(**inputs).to_dict()
    data.pop("decided_at"), expected.pop("decided_at")
    assert data == expected
    bad = _write(tmp_path, "bad.json", {**inputs, "match": match_bad.to_dict()})
    code, out, _ = _run(["decide", bad], capsys)
    assert code == 1 and "FACE_MISMATCH" in out and out.startswith("decision: REJECT")
    review = _write(tmp_path, "review.json", {"match": match_ok.to_dict()})
    code, out, _ = _run(["decide", review], capsys)
    assert code == 4 and "LIVENESS_NOT_RUN" in out
    soft = tmp_path / "soft.toml"
    soft.write_text('name = "soft"\nversion = "1.0.0"\n[missing]\nliveness = "approve"\n'
                    'graph = "approve"\n')
    code, out, _ = _run(["decide", review, "--policy", str(soft)], capsys)
    assert code == 0 and "policy soft 1.0.0" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: ["decide", _write(p, "x.json", [1, 2])], "expected a JSON object"),
        (lambda p: ["decide", _write(p, "x.json", {"matcher": {}})], "unknown key 'matcher'"),
        (lambda p: ["decide", _write(p, "x.json", {"match": {"status": "?"}})], "match.status"),
        (lambda p: ["decide", str(p / "missing.json")], "cannot read"),
        (lambda p: ["decide"], "nothing to decide on"),
        (lambda p: ["decide", "--id", "a.jpg"], "--id needs --selfie"),
        (lambda p: ["decide", "--application", "a.json"], "--application needs --graph-store"),
        (lambda p: ["decide", _write(p, "x.json", {}), "--policy",
                    _write(p, "p.json", {"name": "x"})], "version: missing"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               setup: Callable[[Path], list[str]], message: str) -> None:
    code, _, err = _run(setup(tmp_path), capsys)
    assert code == 2
    assert message in err


def test_cli_bad_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    code, _, err = _run(["decide", str(path)], capsys)
    assert code == 2 and "not valid JSON" in err


@pytest.mark.slow
def test_cli_from_images_and_an_application(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, ex: Path,
                                            pad_models: Path, fv: Any) -> None:
    monkeypatch.setenv("DECIDE_TEST_SECRET", SECRET.decode())
    app = {"application_id": "app-1", "applicant_id": "PASSPORT-X1234567", "lender_id": "L1",
           "lender_type": "nbank", "timestamp": "2024-05-01T12:00:00Z",
           "device_id": "device-imei-356938035643809", "phones": "+14155550123",
           "email": "barack@example.com", "address": "1600 Pennsylvania Ave NW, Washington"}
    app_path = _write(tmp_path, "app.json", app)
    store = tmp_path / "graph.sqlite"
    argv = ["decide", "--id", str(ex / "obama.jpg"), "--selfie", str(ex / "obama2.jpg"),
            "--application", app_path, "--graph-store", str(store),
            "--secret-env", "DECIDE_TEST_SECRET", "--pad-models", str(pad_models), "--json"]
    code, out, _ = _run(argv, capsys)
    assert code == 0, out
    data = json.loads(out)
    assert data["outcome"] == "approve"
    assert {c["name"]: c["status"] for c in data["checks"]} == {
        "face": "match", "liveness": "live", "active": "not_run", "graph": "clear",
        "velocity": "clear", "duplicates": "not_run"}
    for raw in ("PASSPORT-X1234567", "356938035643809", "4155550123", "barack", "Pennsylvania"):
        assert raw not in out
    assert data["subject"].startswith("applicant:")
    assert store.is_file()  # the application was stored (hashed) for later checks
    # the same face under a different ID photo: a mismatch rejects, exit 1
    argv[2] = str(ex / "biden.jpg")
    code, out, _ = _run(argv[:-1], capsys)
    assert code == 1 and "FACE_MISMATCH" in out


def test_cli_missing_liveness_models_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            ex: Path, fv: Any) -> None:
    empty = tmp_path / "no_models"
    empty.mkdir()
    code, _, err = _run(["decide", "--selfie", str(ex / "obama2.jpg"), "--pad-models",
                         str(empty)], capsys)
    assert code == 3 and "MODEL_UNAVAILABLE" in err


@pytest.mark.slow
def test_cli_face_index_finds_a_duplicate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          ex: Path, pad_models: Path, fv: Any) -> None:
    from kyc.face.index import FaceIndex
    from kyc.graph.identifiers import IdentifierHasher, IdKind

    earlier = IdentifierHasher(SECRET).token(IdKind.APPLICANT, "earlier-applicant")
    index = FaceIndex(embedder="dlib_resnet_v1")
    index.add(earlier, fv.represent(ex / "obama-720p.jpg").embedding)
    index.add(IdentifierHasher(SECRET).token(IdKind.APPLICANT, "someone-else"),
              fv.represent(ex / "biden.jpg").embedding)
    path = index.save(tmp_path / "faces.npz")
    code, out, _ = _run(["decide", "--id", str(ex / "obama.jpg"), "--selfie",
                         str(ex / "obama2.jpg"), "--face-index", str(path), "--pad-models",
                         str(pad_models), "--json"], capsys)
    data = json.loads(out)
    assert code == 4 and data["outcome"] == "review"
    dups = [r for r in data["reasons"] if r["code"] == "DUPLICATE_FACE"]
    assert [r["evidence"]["subject"] for r in dups] == [earlier]
    assert {c["name"]: c["status"] for c in data["checks"]}["duplicates"] == "found"
