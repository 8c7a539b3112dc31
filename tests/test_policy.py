"""Tests for kyc.policy: the shipped default, loading, merging and strict validation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kyc.errors import ConfigError
from kyc.policy import (
    ACTIONS,
    CodeRule,
    Policy,
    VelocityLimit,
    default_policy,
    default_policy_path,
    load_policy,
    strongest,
)

ROOT = Path(__file__).resolve().parents[1]
POLICY_DOC = ROOT / "docs" / "policy.md"
CODES_DOC = ROOT / "docs" / "reason_codes.md"


def _mini(**extra: Any) -> dict[str, Any]:
    return {"name": "test", "version": "1.0.0", **extra}


def _error(source: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy(source)
    return info.value.message


# --- the shipped default ----------------------------------------------------------------------


def test_default_policy_is_the_packaged_file() -> None:
    path = default_policy_path()
    assert path.is_file()
    import kyc

    assert path.parent.parent == Path(str(kyc.__file__)).parent  # inside the package
    p = default_policy()
    assert p is load_policy() is load_policy(None)
    assert (p.name, p.version) == ("thin-file-consumer", "1.0.0")
    assert p.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert p.ref() == {"name": p.name, "version": p.version, "sha256": p.sha256,
                       "effective_sha256": p.effective_sha256}


def test_default_policy_values_for_a_thin_file_lender() -> None:
    p = default_policy()
    assert (p.face.on_match, p.face.on_mismatch, p.face.on_not_checked) == (
        "approve", "reject", "review")
    assert p.face.max_fmr_target == 0.001
    assert (p.liveness.on_spoof, p.liveness.max_apcer_target) == ("reject", 0.05)
    assert p.active.on_failed == "review"
    assert p.active.code_action("REPLAY_SUSPECTED") == "reject"
    assert p.active.code_action("CHALLENGE_TIMEOUT") == "none"
    assert (p.graph.review_score, p.graph.reject_score) == (0.5, 0.9)
    assert p.graph.code_action("CONFIRMED_FRAUD") == "reject"
    assert p.graph.code_action("CONFIRMED_FRAUD_2") == "review"
    assert p.graph.code_action("DEVICE_SHARED_BY_3") == "none"  # a family tablet
    assert p.graph.code_action("DEVICE_SHARED_BY_4") == "review"
    assert p.graph.code_action("CARD_SHARED_BY_3") == "review"
    limits = {lim.feature: lim for lim in p.velocity.limits}
    assert limits["als_m1_id_all_orgnum"] == VelocityLimit("als_m1_id_all_orgnum", 5, 10)
    assert p.duplicates.reject_distance is None and p.duplicates.review_distance == 0.38
    assert p.missing.liveness == "review" and p.missing.active == "approve"


def _documented_codes() -> list[str]:
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_{}a-z]*)`\s*\|", CODES_DOC.read_text(), re.M)
    return rows


def test_every_default_code_rule_matches_a_documented_code() -> None:
    samples: list[str] = []
    for code in _documented_codes():
        if "{" in code:
            samples.extend(re.sub(r"\{[a-z_]+\}", str(n), code) for n in (1, 2, 5, 10, 100))
        else:
            samples.append(code)
    p = default_policy()
    for section in (p.face, p.liveness, p.active, p.graph):
        for rule in section.codes:
            assert any(rule.matches(s) for s in samples), f"{rule.code} matches no known code"


def test_every_policy_field_is_documented() -> None:
    text = POLICY_DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.M)
    doc: dict[str, set[str]] = {}
    for sec in sections:
        head = re.match(r"(?:`\[(\w+)\]`|Top level)", sec)
        if head is None:
            continue
        fields = set(re.findall(r"^\|\s*`(\w+)`\s*\|", sec, re.M))
        doc[head.group(1) or ""] = fields
    d = default_policy().to_dict()
    assert {k for k, v in d.items() if not isinstance(v, dict)} <= doc[""]
    for key, value in d.items():
        if isinstance(value, dict):
            assert key in doc, f"no section for [{key}] in {POLICY_DOC.name}"
            assert set(value) <= doc[key], f"[{key}] fields not documented: {set(value) - doc[key]}"


def test_round_trip_through_to_dict() -> None:
    p = default_policy()
    again = load_policy(p.to_dict())
    assert again.to_dict() == p.to_dict()
    assert again.effective_sha256 == p.effective_sha256
    assert dataclasses.replace(again, sha256="", source="") == dataclasses.replace(
        p, sha256="", source="")


# --- partial policies merge over the default ----------------------------------------------------


def test_tables_merge_and_lists_replace() -> None:
    limits = [{"feature": "als_d7_id_nbank_orgnum", "reject": 3}]
    p = load_policy(_mini(face={"on_mismatch": "review"}, graph={"codes": []},
                          velocity={"limits": limits}))
    d = default_policy()
    assert p.face.on_mismatch == "review"
    assert p.face.on_not_checked == d.face.on_not_checked  # inherited
    assert p.face.codes == d.face.codes
    assert p.graph.codes == () and p.graph.review_score == d.graph.review_score
    assert p.velocity.limits == (VelocityLimit("als_d7_id_nbank_orgnum", None, 3),)
    assert p.name == "test" and p.description == ""
    assert p.effective_sha256 != d.effective_sha256


def test_false_turns_thresholds_off() -> None:
    p = load_policy(_mini(graph={"reject_score": False}, face={"max_fmr_target": False},
                          duplicates={"review_distance": False}))
    assert p.graph.reject_score is None and p.face.max_fmr_target is None
    assert p.duplicates.review_distance is None
    assert p.duplicates.action(0.0) == "none"
    assert p.to_dict()["graph"]["reject_score"] is False


def test_files_in_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('name = "strict"\nversion = "2.1.0-rc.1+build.5"\n\n[active]\n'
                    'on_failed = "reject"\n')
    p = load_policy(toml)
    assert p.active.on_failed == "reject" and p.version == "2.1.0-rc.1+build.5"
    assert p.sha256 == hashlib.sha256(toml.read_bytes()).hexdigest()
    assert p.source == str(toml)
    js = tmp_path / "p.json"
    js.write_text(json.dumps(_mini(missing={"liveness": "reject"})))
    assert load_policy(str(js)).missing.liveness == "reject"


def test_yaml_needs_pyyaml(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("name: y\nversion: 1.0.0\nface:\n  on_mismatch: review\n")
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        assert "PyYAML" in _error(y)
    else:  # pragma: no cover - PyYAML is not a dependency
        assert load_policy(y).face.on_mismatch == "review"


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ("name = [", ".toml", "not valid TOML"),
        ("{", ".json", "not valid JSON"),
        ("[1, 2]", ".json", "top level must be a table"),
        ("name = 'x'", ".ini", "unknown format '.ini'"),
        (b"\xff\xfe", ".toml", "not UTF-8"),
    ],
)
def test_bad_files(tmp_path: Path, content: str | bytes, suffix: str, expected: str) -> None:
    path = tmp_path / f"p{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert expected in _error(path)


def test_missing_file() -> None:
    assert "cannot be read" in _error("/nonexistent/policy.toml")


# --- validation names the key path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "what"),
    [
        ({"version": "1.0.0"}, "name", "missing"),
        ({"name": "x"}, "version", "missing"),
        (_mini(version="1.0"), "version", "semantic version"),
        (_mini(version=1), "version", "expected a string"),
        (_mini(name=""), "name", "must not be empty"),
        (_mini(colour="red"), "colour", "unknown key"),
        (_mini(face={"on_mismtach": "reject"}), "face.on_mismtach", "unknown key"),
        (_mini(face={"on_mismatch": "deny"}), "face.on_mismatch", "expected one of approve"),
        (_mini(face={"on_mismatch": 1}), "face.on_mismatch", "expected one of"),
        (_mini(face=3), "face", "expected a table"),
        (_mini(face={"max_fmr_target": "low"}), "face.max_fmr_target", "expected a number"),
        (_mini(face={"max_fmr_target": 2}), "face.max_fmr_target", "[0, 1]"),
        (_mini(face={"max_fmr_target": True}), "face.max_fmr_target", "expected a number"),
        (_mini(graph={"review_score": "high"}), "graph.review_score", "expected a number"),
        (_mini(graph={"review_score": 0.95}), "graph.review_score", "above graph.reject_score"),
        (_mini(graph={"codes": {"code": "X"}}), "graph.codes", "expected a list"),
        (_mini(graph={"codes": [{"code": "device_shared", "action": "review"}]}),
         "graph.codes[0].code", "not a reason code"),
        (_mini(graph={"codes": [{"code": "A_{n}_{n}", "action": "review"}]}),
         "graph.codes[0].code", "not a reason code"),
        (_mini(graph={"codes": [{"code": "CONFIRMED_FRAUD", "action": "ban"}]}),
         "graph.codes[0].action", "expected one of"),
        (_mini(graph={"codes": [{"code": "CONFIRMED_FRAUD", "action": "review", "min": 2}]}),
         "graph.codes[0].min", "need a {n}"),
        (_mini(graph={"codes": [{"code": "X_{n}", "action": "review", "min": 5, "max": 2}]}),
         "graph.codes[0].min", "greater than max"),
        (_mini(graph={"codes": [{"code": "X_{n}", "action": "review", "min": 0}]}),
         "graph.codes[0].min", "positive integer"),
        (_mini(graph={"codes": [{"code": "X", "action": "review", "why": "?"}]}),
         "graph.codes[0].why", "unknown key"),
        (_mini(graph={"codes": [{"action": "review"}]}), "graph.codes[0].code", "missing"),
        (_mini(velocity={"limits": [{"feature": "als_m1_id_all", "review": 3}]}),
         "velocity.limits[0].feature", "not a velocity counter name"),
        (_mini(velocity={"limits": [{"feature": "als_m1_id_all_orgnum"}]}),
         "velocity.limits[0].review", "set review and/or reject"),
        (_mini(velocity={"limits": [{"feature": "als_m1_id_all_orgnum", "review": 9,
                                     "reject": 3}]}),
         "velocity.limits[0].review", "above reject level"),
        (_mini(velocity={"limits": [{"feature": "als_m1_id_all_orgnum", "review": 2.5}]}),
         "velocity.limits[0].review", "positive integer"),
        (_mini(velocity={"limits": [{"feature": "als_m1_id_all_orgnum", "review": 2},
                                    {"feature": "als_m1_id_all_orgnum", "reject": 9}]}),
         "velocity.limits[1].feature", "limited twice"),
        (_mini(duplicates={"reject_distance": 0.5}), "duplicates.reject_distance",
         "above duplicates.review_distance"),
        (_mini(duplicates={"review_distance": 3}), "duplicates.review_distance", "[0, 2]"),
        (_mini(missing={"selfie": "review"}), "missing.selfie", "unknown key"),
        (_mini(missing={"face": "maybe"}), "missing.face", "expected one of"),
    ],
)
def test_validation_errors_name_the_key_path(data: dict[str, Any], path: str, what: str) -> None:
    msg = _error(data)
    assert msg.startswith("policy <mapping>: ")
    assert f": {path}: " in msg, msg
    assert what in msg, msg


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lender.toml"
    path.write_text('name = "x"\nversion = "1.0.0"\n[liveness]\non_spoof = "allow"\n')
    msg = _error(path)
    assert msg.startswith(f"policy {path}: liveness.on_spoof: ")


def test_not_a_policy_source() -> None:
    with pytest.raises(ConfigError, match="path, a mapping or a Policy"):
        load_policy(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not plain data"):
        load_policy(_mini(face={"on_mismatch": object()}))


def test_a_policy_object_is_returned_as_is() -> None:
    p = load_policy(_mini())
    assert isinstance(p, Policy) and load_policy(p) is p


# --- rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "code", "hit"),
    [
        (CodeRule("CONFIRMED_FRAUD", "reject"), "CONFIRMED_FRAUD", True),
        (CodeRule("CONFIRMED_FRAUD", "reject"), "CONFIRMED_FRAUD_2", False),
        (CodeRule("CONFIRMED_FRAUD_{n}", "review"), "CONFIRMED_FRAUD_2", True),
        (CodeRule("CONFIRMED_FRAUD_{n}", "review"), "CONFIRMED_FRAUD", False),
        (CodeRule("CONFIRMED_FRAUD_{n}", "review"), "CONFIRMED_FRAUD_X", False),
        (CodeRule("NEAR_CONFIRMED_FRAUD_{n}_HOPS", "review"), "NEAR_CONFIRMED_FRAUD_2_HOPS", True),
        (CodeRule("DEVICE_SHARED_BY_{n}", "review", min=4), "DEVICE_SHARED_BY_4", True),
        (CodeRule("DEVICE_SHARED_BY_{n}", "review", min=4), "DEVICE_SHARED_BY_3", False),
        (CodeRule("DEVICE_SHARED_BY_{n}", "review", min=4, max=9), "DEVICE_SHARED_BY_10", False),
        (CodeRule("DENSE_BLOCK_TOP_{n}PCT", "review", max=1), "DENSE_BLOCK_TOP_1PCT", True),
        (CodeRule("DENSE_BLOCK_TOP_{n}PCT", "review", max=1), "DENSE_BLOCK_TOP_5PCT", False),
        (CodeRule("MULTIPLE_FACES_IN_*", "review"), "MULTIPLE_FACES_IN_SELFIE", True),
        (CodeRule("MULTIPLE_FACES_IN_*", "review"), "MULTIPLE_FACES", False),
        (CodeRule("*_SHARED_BY_{n}", "review", min=3), "CARD_SHARED_BY_3", True),
        (CodeRule("PAD_*_NOT_CHECKED", "review"), "PAD_LOW_LIGHT_NOT_CHECKED", True),
        (CodeRule("PAD_*_NOT_CHECKED", "review"), "PAD_LIVE", False),
    ],
)
def test_code_rules(rule: CodeRule, code: str, hit: bool) -> None:
    assert rule.matches(code) is hit


def test_strongest_and_velocity_levels() -> None:
    assert ACTIONS == ("none", "approve", "review", "reject")
    assert strongest() == "none"
    assert strongest("approve", "none") == "approve"
    assert strongest("review", "reject", "approve") == "reject"
    lim = VelocityLimit("als_m1_id_all_orgnum", review=5, reject=10)
    assert [lim.action(v) for v in (0, 4, 5, 9, 10, 50)] == [
        "none", "none", "review", "review", "reject", "reject"]
    assert VelocityLimit("als_m1_id_all_orgnum", reject=3).action(2) == "none"
