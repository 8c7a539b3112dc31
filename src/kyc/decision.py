"""One explainable onboarding decision from face and graph evidence.

:func:`decide` takes whatever checks ran for an applicant (the 1:1 face match, passive and
active liveness, the applicant's graph report, multi-lender velocity counters, face-duplicate
hits from the :class:`~kyc.face.index.FaceIndex`), applies a :class:`~kyc.policy.Policy`
(the shipped default unless one is given) and returns a frozen :class:`Decision`:

* ``outcome``: ``"approve"``, ``"review"`` or ``"reject"``, the strongest action any reason
  triggered (reject > review > approve);
* ``reasons``: every reason code of the inputs plus the decision's own (``FACE_NOT_RUN``,
  ``GRAPH_SCORE_HIGH``, ``VELOCITY_LIMIT_EXCEEDED``, ``DUPLICATE_FACE``, ...), each with its
  source, the action it triggered and its evidence (values, thresholds, FMR / APCER targets,
  hashed identifiers, ring id). ``docs/reason_codes.md`` documents every code;
* ``checks``: which checks ran, their status and the action each led to (for a check that
  did not run, what the policy says about that);
* ``models`` (names and sha256 of every model behind the evidence), ``policy`` (name,
  version, sha256), ``decided_at`` and the ``kyc_version``.

Every input may be the result object (:class:`~kyc.face.verify.MatchResult`,
:class:`~kyc.liveness.passive.LivenessResult`, the active-liveness result,
:class:`~kyc.graph.rings.RingReport`, :class:`~kyc.face.index.IndexHit`) or its ``to_dict()``
mapping (what a CLI or HTTP client holds); both give the same decision.

Privacy: a decision holds no image, no embedding and no raw identifier. Identifiers appear
only as the hashed tokens the graph already uses (``applicant:<hex>``, ``device:<hex>``);
the decision's ``subject`` must be such a token, and a duplicate hit whose subject id is not
a token is reported without it. Model file paths are left out too.

>>> d = decide(policy=load_policy(), clock=lambda: datetime(2024, 5, 1, tzinfo=timezone.utc))
>>> d.outcome, d.codes[:2]
('review', ('FACE_NOT_RUN', 'LIVENESS_NOT_RUN'))
>>> d.to_json()[:40]
'{"checks":[{"action":"review","name":"fa'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, cast

from kyc.errors import InvalidRecord
from kyc.policy import CHECKS, Action, Policy, load_policy, strongest

__all__ = [
    "DECISION_CODES",
    "CheckSummary",
    "Decision",
    "DecisionReason",
    "Outcome",
    "decide",
]

Outcome = Literal["approve", "review", "reject"]

#: Reason codes :func:`decide` itself emits (the inputs' codes are passed through).
DECISION_CODES: tuple[str, ...] = (
    "FACE_NOT_RUN",
    "LIVENESS_NOT_RUN",
    "ACTIVE_NOT_RUN",
    "GRAPH_NOT_RUN",
    "VELOCITY_NOT_RUN",
    "DUPLICATES_NOT_RUN",
    "FACE_NOT_CHECKED",
    "LIVENESS_NOT_CHECKED",
    "ACTIVE_NOT_CHECKED",
    "ACTIVE_FAILED",
    "FACE_FMR_TARGET_TOO_HIGH",
    "FACE_PROFILE_PROVISIONAL",
    "LIVENESS_APCER_TARGET_TOO_HIGH",
    "GRAPH_SCORE_HIGH",
    "VELOCITY_LIMIT_EXCEEDED",
    "DUPLICATE_FACE",
)

_NOT_RUN: Mapping[str, str] = {
    "face": "FACE_NOT_RUN",
    "liveness": "LIVENESS_NOT_RUN",
    "active": "ACTIVE_NOT_RUN",
    "graph": "GRAPH_NOT_RUN",
    "velocity": "VELOCITY_NOT_RUN",
    "duplicates": "DUPLICATES_NOT_RUN",
}
_CHECK_TEXT: Mapping[str, str] = {
    "face": "face match",
    "liveness": "passive liveness",
    "active": "active liveness",
    "graph": "graph (rings)",
    "velocity": "multi-lender velocity",
    "duplicates": "face duplicates",
}

_TOKEN = re.compile(r"[a-z][a-z_]*:[0-9a-f]{8,64}")
_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
_FEATURE = re.compile(r"als_[a-z0-9_]+")


# --- result types -----------------------------------------------------------------------------


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    out = round(float(value), digits)
    return 0.0 if out == 0 else out


def _plain(value: Any, where: str) -> Any:
    """JSON-plain copy: floats rounded to 6 decimals, tuples to lists, no arrays."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _r(value)
    if isinstance(value, Enum):
        return _plain(value.value, where)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v, where) for v in value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:  # a numpy scalar
        return _plain(item(), where)
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict(), where)
    raise InvalidRecord(
        f"{where}: {type(value).__name__} is not plain data (arrays, images and embeddings "
        "never go into a decision)",
        field=where,
    )


@dataclass(frozen=True)
class DecisionReason:
    """One reason behind a decision.

    ``code``: the reason code (see ``docs/reason_codes.md``); ``source``: the check it comes
    from (``"face"``, ``"liveness"``, ``"active"``, ``"graph"``, ``"velocity"``,
    ``"duplicates"``) or ``"policy"`` (a check that did not run); ``action``: what it
    triggered under the policy (``"approve"``, ``"review"``, ``"reject"`` or ``"none"``);
    ``message``: a sentence for people; ``evidence``: plain values (measured values,
    thresholds, targets, hashed identifiers, ring id).
    """

    code: str
    source: str
    action: Action
    message: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "code": self.code,
            "source": self.source,
            "action": self.action,
            "message": self.message,
            "evidence": _plain(self.evidence, "evidence"),
        }


@dataclass(frozen=True)
class CheckSummary:
    """One check as the decision saw it.

    ``name``: ``"face"``, ``"liveness"``, ``"active"``, ``"graph"``, ``"velocity"`` or
    ``"duplicates"``; ``ran``: whether its input was given; ``status``: the input's status
    (``"match"``, ``"live"``, ``"passed"``, ``"flagged"``, ``"clear"``, ``"over_limit"``,
    ``"found"``, ``"not_checked"``, ... or ``"not_run"``); ``action``: the strongest action
    its reasons triggered (for a check not run: the policy's ``missing`` action);
    ``summary``: the key numbers (score, threshold, targets, ring id, counters).
    """

    name: str
    ran: bool
    status: str
    action: Action
    summary: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "name": self.name,
            "ran": self.ran,
            "status": self.status,
            "action": self.action,
            "summary": _plain(self.summary, "summary"),
        }


@dataclass(frozen=True)
class Decision:
    """An onboarding decision with everything needed to explain and audit it.

    See the module docs. :meth:`to_json` is stable: sorted keys, rounded floats, no
    machine-dependent values (no paths), so equal inputs under an equal clock give
    byte-identical JSON.
    """

    outcome: Outcome
    reasons: tuple[DecisionReason, ...]
    checks: tuple[CheckSummary, ...]
    models: tuple[Mapping[str, str], ...]
    policy: Mapping[str, str]
    subject: str | None
    decided_at: str
    kyc_version: str

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)

    @property
    def approved(self) -> bool:
        """True only for ``outcome == "approve"``."""
        return self.outcome == "approve"

    def check(self, name: str) -> CheckSummary:
        """The :class:`CheckSummary` of check ``name`` (``KeyError`` if unknown)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def triggered(self, action: str | None = None) -> tuple[DecisionReason, ...]:
        """Reasons that triggered ``action`` (default: review or reject), in order."""
        wanted = ("review", "reject") if action is None else (action,)
        return tuple(r for r in self.reasons if r.action in wanted)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "outcome": self.outcome,
            "reasons": [r.to_dict() for r in self.reasons],
            "checks": [c.to_dict() for c in self.checks],
            "models": [dict(m) for m in self.models],
            "policy": dict(self.policy),
            "subject": self.subject,
            "decided_at": self.decided_at,
            "kyc_version": self.kyc_version,
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """Stable JSON: sorted keys, ASCII, compact unless ``indent`` is given."""
        seps = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True, indent=indent,
                          separators=seps, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from :meth:`to_dict` output (``InvalidRecord`` if malformed)."""
        try:
            outcome = data["outcome"]
            if outcome not in ("approve", "review", "reject"):
                raise ValueError(f"unknown outcome {outcome!r}")
            return cls(
                outcome=outcome,
                reasons=tuple(
                    DecisionReason(str(r["code"]), str(r["source"]), _action(r["action"]),
                                   str(r.get("message", "")), dict(r.get("evidence", {})))
                    for r in data["reasons"]
                ),
                checks=tuple(
                    CheckSummary(str(c["name"]), bool(c["ran"]), str(c["status"]),
                                 _action(c["action"]), dict(c.get("summary", {})))
                    for c in data["checks"]
                ),
                models=tuple({str(k): str(v) for k, v in m.items()} for m in data["models"]),
                policy={str(k): str(v) for k, v in data["policy"].items()},
                subject=data.get("subject"),
                decided_at=str(data["decided_at"]),
                kyc_version=str(data["kyc_version"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidRecord(f"not a decision mapping: {exc!r}", field="decision") from None

    def explain(self) -> str:
        """A few lines for people: outcome, checks, and the reasons that triggered it."""
        pol = self.policy
        lines = [f"decision: {self.outcome.upper()}  (policy {pol.get('name')} "
                 f"{pol.get('version')})"]
        if self.subject:
            lines.append(f"subject:  {self.subject}")
        lines.append("checks:")
        for c in self.checks:
            lines.append(f"  {_CHECK_TEXT.get(c.name, c.name):<22} {c.status:<12} -> {c.action}")
        shown = [r for r in self.reasons if r.action != "none"]
        if shown:
            lines.append("reasons:")
            order = {"reject": 0, "review": 1, "approve": 2}
            for r in sorted(shown, key=lambda x: order.get(x.action, 3)):
                lines.append(f"  {r.action:<7} {r.source:<10} {r.code}: {r.message}")
        return "\n".join(lines)


def _action(value: Any) -> Action:
    if value not in ("none", "approve", "review", "reject"):
        raise ValueError(f"unknown action {value!r}")
    return cast(Action, value)


# --- input normalisation ----------------------------------------------------------------------


def _bad(where: str, message: str) -> InvalidRecord:
    return InvalidRecord(f"{where}: {message}", field=where)


def _as_mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        out = to_dict()
        if isinstance(out, Mapping):
            return dict(out)
    raise _bad(where, f"expected a {what} or its to_dict() mapping, got {type(value).__name__}")


def _status(m: Mapping[str, Any], where: str, allowed: Sequence[str]) -> str:
    status = m.get("status")
    if status not in allowed:
        raise _bad(f"{where}.status", f"expected one of {', '.join(allowed)}; got {status!r}")
    return str(status)


def _number(m: Mapping[str, Any], key: str, where: str) -> float | None:
    value = m.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{where}.{key}", f"expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _InReason:
    code: str
    message: str
    evidence: Mapping[str, Any]


def _reasons(m: Mapping[str, Any], where: str) -> list[_InReason]:
    raw = m.get("reasons", [])
    if not isinstance(raw, list | tuple):
        raise _bad(f"{where}.reasons", f"expected a list, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        w = f"{where}.reasons[{i}]"
        r = _as_mapping(item, w, "Reason")
        code = r.get("code")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise _bad(f"{w}.code", f"expected an upper-case reason code, got {code!r}")
        message = r.get("message", "")
        evidence = r.get("evidence", {})
        if not isinstance(message, str):
            raise _bad(f"{w}.message", "expected a string")
        if not isinstance(evidence, Mapping):
            raise _bad(f"{w}.evidence", "expected a mapping")
        out.append(_InReason(code, message, _plain(evidence, f"{w}.evidence")))
    return out


def _models(m: Mapping[str, Any], check: str, where: str) -> list[dict[str, str]]:
    raw = m.get("models", [])
    if not isinstance(raw, list | tuple):
        raise _bad(f"{where}.models", "expected a list")
    out = []
    for i, item in enumerate(raw):
        mm = _as_mapping(item, f"{where}.models[{i}]", "model reference")
        name = mm.get("name")
        if not isinstance(name, str):
            raise _bad(f"{where}.models[{i}].name", "expected a string")
        out.append({
            "check": check,
            "role": str(mm.get("role", "")),
            "name": name,
            "sha256": str(mm.get("sha256", "")),
        })
    return out


class _Builder:
    """Collects reasons, checks and models while the inputs are judged."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.reasons: list[DecisionReason] = []
        self.checks: list[CheckSummary] = []
        self.models: list[dict[str, str]] = []

    def add(self, code: str, source: str, action: Action, message: str,
            evidence: Mapping[str, Any]) -> None:
        self.reasons.append(DecisionReason(code, source, action, message,
                                           _plain(dict(evidence), code)))

    def finish_check(self, name: str, status: str, summary: Mapping[str, Any],
                     start: int) -> None:
        action = strongest(*(r.action for r in self.reasons[start:]))
        self.checks.append(CheckSummary(name, True, status, action, _plain(dict(summary), name)))

    def not_run(self, name: str) -> None:
        action = self.policy.missing.action(name)
        self.add(_NOT_RUN[name], "policy", action,
                 f"{_CHECK_TEXT[name]} was not run; the policy says {action}",
                 {"check": name})
        self.checks.append(CheckSummary(name, False, "not_run", action, {}))


# --- the checks -------------------------------------------------------------------------------


def _face(b: _Builder, value: Any) -> None:
    where = "match"
    m = _as_mapping(value, where, "MatchResult")
    pol = b.policy.face
    status = _status(m, where, ("match", "mismatch", "not_checked"))
    reasons = _reasons(m, where)
    start = len(b.reasons)
    b.models.extend(_models(m, "face", where))
    carrier = {"match": "FACE_MATCH", "mismatch": "FACE_MISMATCH"}.get(status)
    carrier_action = {"match": pol.on_match, "mismatch": pol.on_mismatch}.get(status, "none")
    score = _number(m, "score", where)
    threshold = _number(m, "threshold", where)
    fmr = _number(m, "fmr_target", where)
    summary = {
        "status": status,
        "score": score,
        "metric": m.get("metric"),
        "threshold": threshold,
        "fmr_target": fmr,
        "profile": m.get("profile"),
        "profile_provisional": bool(m.get("profile_provisional", False)),
        "quality_id_passed": _quality_passed(m.get("quality_id")),
        "quality_selfie_passed": _quality_passed(m.get("quality_selfie")),
    }
    seen_carrier = False
    for r in reasons:
        action = pol.code_action(r.code)
        if r.code in ("LOW_QUALITY_ID", "LOW_QUALITY_SELFIE"):
            action = strongest(action, pol.on_low_quality)
        if r.code == carrier:
            action = strongest(action, carrier_action)
            seen_carrier = True
        b.add(r.code, "face", action, r.message, r.evidence)
    if carrier is not None and not seen_carrier:
        b.add(carrier, "face", strongest(carrier_action, pol.code_action(carrier)),
              f"face {status} (score {score}, threshold {threshold})",
              {"score": score, "threshold": threshold, "fmr_target": fmr,
               "profile": m.get("profile")})
    if status == "not_checked":
        b.add("FACE_NOT_CHECKED", "face", pol.on_not_checked,
              "the faces could not be compared: " + (", ".join(r.code for r in reasons)
                                                      or "no reason given"),
              {"codes": [r.code for r in reasons]})
    if status == "match":
        limit = pol.max_fmr_target
        if limit is not None and (fmr is None or fmr > limit):
            b.add("FACE_FMR_TARGET_TOO_HIGH", "face", pol.on_fmr_target_too_high,
                  "the match threshold was not set for a false-match rate the policy accepts "
                  f"(FMR target {fmr if fmr is not None else 'none'}, policy limit {limit:g})",
                  {"fmr_target": fmr, "max_fmr_target": limit, "profile": m.get("profile"),
                   "threshold": threshold})
        if m.get("profile_provisional"):
            b.add("FACE_PROFILE_PROVISIONAL", "face", pol.on_provisional_profile,
                  f"the threshold profile {m.get('profile')} is a provisional placeholder, "
                  "never measured",
                  {"profile": m.get("profile"), "threshold": threshold})
    b.finish_check("face", status, summary, start)


def _quality_passed(q: Any) -> bool | None:
    if isinstance(q, Mapping) and isinstance(q.get("passed"), bool):
        return bool(q["passed"])
    passed = getattr(q, "passed", None)
    return passed if isinstance(passed, bool) else None


def _liveness(b: _Builder, value: Any) -> None:
    where = "liveness"
    m = _as_mapping(value, where, "LivenessResult")
    pol = b.policy.liveness
    status = _status(m, where, ("live", "spoof", "not_checked"))
    reasons = _reasons(m, where)
    start = len(b.reasons)
    b.models.extend(_models(m, "liveness", where))
    carrier = {"live": "PAD_LIVE", "spoof": "PAD_SPOOF_SUSPECTED"}.get(status)
    carrier_action = {"live": pol.on_live, "spoof": pol.on_spoof}.get(status, "none")
    score = _number(m, "score", where)
    threshold = _number(m, "threshold", where)
    apcer = _number(m, "apcer_target", where)
    summary = {
        "status": status,
        "score": score,
        "threshold": threshold,
        "apcer_target": apcer,
        "operating_point": m.get("operating_point"),
    }
    seen_carrier = False
    for r in reasons:
        action = pol.code_action(r.code)
        if r.code == carrier:
            action = strongest(action, carrier_action)
            seen_carrier = True
        b.add(r.code, "liveness", action, r.message, r.evidence)
    if carrier is not None and not seen_carrier:
        b.add(carrier, "liveness", strongest(carrier_action, pol.code_action(carrier)),
              f"liveness {status} (score {score}, threshold {threshold})",
              {"score": score, "threshold": threshold, "apcer_target": apcer})
    if status == "not_checked":
        b.add("LIVENESS_NOT_CHECKED", "liveness", pol.on_not_checked,
              "liveness could not be assessed: " + (", ".join(r.code for r in reasons)
                                                    or "no reason given"),
              {"codes": [r.code for r in reasons]})
    if status == "live":
        limit = pol.max_apcer_target
        if limit is not None and (apcer is None or apcer > limit):
            b.add("LIVENESS_APCER_TARGET_TOO_HIGH", "liveness", pol.on_apcer_target_too_high,
                  "the liveness threshold was not set for an attack acceptance rate the policy "
                  f"accepts (APCER target {apcer if apcer is not None else 'none'}, policy "
                  f"limit {limit:g})",
                  {"apcer_target": apcer, "max_apcer_target": limit,
                   "operating_point": m.get("operating_point"), "threshold": threshold})
    b.finish_check("liveness", status, summary, start)


def _active(b: _Builder, value: Any) -> None:
    where = "active"
    m = _as_mapping(value, where, "ActiveLivenessResult")
    pol = b.policy.active
    status = _status(m, where, ("passed", "failed", "not_checked"))
    reasons = _reasons(m, where)
    start = len(b.reasons)
    b.models.extend(_models(m, "active", where))
    steps = m.get("steps", [])
    step_status = [s.get("status") for s in steps if isinstance(s, Mapping)] \
        if isinstance(steps, list | tuple) else []
    summary = {
        "status": status,
        "steps": len(step_status),
        "steps_passed": sum(1 for s in step_status if s == "passed"),
        "frames": m.get("frames"),
        "duration_ms": m.get("duration_ms"),
    }
    seen_carrier = False
    for r in reasons:
        action = pol.code_action(r.code)
        if status == "passed" and r.code == "CHALLENGE_PASSED":
            action = strongest(action, pol.on_passed)
            seen_carrier = True
        b.add(r.code, "active", action, r.message, r.evidence)
    if status == "passed" and not seen_carrier:
        b.add("CHALLENGE_PASSED", "active", pol.on_passed,
              "every move was performed in the issued order", {})
    elif status == "failed":
        codes = [r.code for r in reasons]
        b.add("ACTIVE_FAILED", "active", pol.on_failed,
              "the active-liveness challenge failed: " + (", ".join(codes) or "no reason given"),
              {"codes": codes})
    elif status == "not_checked":
        codes = [r.code for r in reasons]
        b.add("ACTIVE_NOT_CHECKED", "active", pol.on_not_checked,
              "active liveness could not be assessed: " + (", ".join(codes)
                                                           or "no reason given"),
              {"codes": codes})
    b.finish_check("active", status, summary, start)


def _graph(b: _Builder, m: Mapping[str, Any]) -> None:
    where = "graph"
    pol = b.policy.graph
    reasons = _reasons(m, where)
    score = _number(m, "score", where)
    if score is None:
        raise _bad(f"{where}.score", "missing: a RingReport always carries its graph score")
    flagged = m.get("flagged")
    if not isinstance(flagged, bool):
        raise _bad(f"{where}.flagged", f"expected true or false, got {flagged!r}")
    ring_raw = m.get("ring")
    ring: dict[str, Any] | None = None
    ring_codes: set[str] = set()
    if ring_raw is not None:
        ring_map = _as_mapping(ring_raw, f"{where}.ring", "Ring")
        ring_id = ring_map.get("ring_id")
        if not isinstance(ring_id, str):
            raise _bad(f"{where}.ring.ring_id", "expected a string")
        shared = []
        for i, s in enumerate(ring_map.get("shared", []) or []):
            sm = _as_mapping(s, f"{where}.ring.shared[{i}]", "SharedIdentifier")
            shared.append({"token": sm.get("token"), "kind": sm.get("kind"),
                           "members": sm.get("members"), "hub": sm.get("hub")})
        ring = {
            "ring_id": ring_id,
            "size": ring_map.get("size"),
            "score": _number(ring_map, "score", f"{where}.ring"),
            "flagged": ring_map.get("flagged"),
            "shared": shared,
        }
        ring_codes = {r.code for r in _reasons(ring_map, f"{where}.ring")}
    start = len(b.reasons)
    for r in reasons:
        ev = dict(r.evidence)
        if ring is not None and r.code in ring_codes:
            ev["ring_id"] = ring["ring_id"]
        b.add(r.code, "graph", pol.code_action(r.code), r.message, ev)
    level: Action = "none"
    if pol.reject_score is not None and score >= pol.reject_score:
        level = "reject"
    elif pol.review_score is not None and score >= pol.review_score:
        level = "review"
    if level != "none":
        limit = pol.reject_score if level == "reject" else pol.review_score
        b.add("GRAPH_SCORE_HIGH", "graph", level,
              f"graph score {score:.3f} reaches the policy's {level} level {limit:g}"
              + (f" (ring {ring['ring_id']}, {ring['size']} members)" if ring else ""),
              {"score": score, "review_score": pol.review_score,
               "reject_score": pol.reject_score, "flagged": flagged,
               "ring_id": ring["ring_id"] if ring else None,
               "ring_size": ring["size"] if ring else None,
               "ring_score": ring["score"] if ring else None,
               "shared": ring["shared"] if ring else []})
    links = m.get("links", [])
    summary = {
        "score": score,
        "flagged": flagged,
        "component_size": m.get("component_size"),
        "fraud_hops": m.get("fraud_hops"),
        "links": len(links) if isinstance(links, list | tuple) else None,
        "ring": ring,
    }
    b.finish_check("graph", "flagged" if flagged else "clear", summary, start)


def _counters(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise _bad(where, f"expected a mapping of als_* counters, got {type(value).__name__}")
    out: dict[str, int] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _FEATURE.fullmatch(k):
            raise _bad(where, f"not a velocity counter name: {k!r}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            n = getattr(v, "item", None)
            v = n() if callable(n) else v
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _bad(f"{where}.{k}", f"expected a count (integer >= 0), got {v!r}")
        out[k] = int(v)
    return out


def _velocity(b: _Builder, counters: Mapping[str, int]) -> None:
    start = len(b.reasons)
    values: dict[str, int] = {}
    for lim in b.policy.velocity.limits:
        value = counters.get(lim.feature, 0)
        values[lim.feature] = value
        action = lim.action(value)
        if action != "none":
            level = lim.reject if action == "reject" else lim.review
            b.add("VELOCITY_LIMIT_EXCEEDED", "velocity", action,
                  f"{lim.feature} = {value} reaches the policy's {action} level {level}",
                  {"feature": lim.feature, "value": value, "review": lim.review,
                   "reject": lim.reject, "present": lim.feature in counters})
    over = any(r.action in ("review", "reject") for r in b.reasons[start:])
    b.finish_check("velocity", "over_limit" if over else "clear",
                   {"limited": values, "counters": len(counters)}, start)


def _hits(value: Any) -> list[tuple[str, float, float]]:
    if isinstance(value, Mapping | str | bytes) or not isinstance(value, Iterable):
        raise _bad("duplicates", "expected a list of IndexHit, (subject_id, score) pairs or "
                                 "{subject_id, score[, distance]} mappings")
    out = []
    for i, h in enumerate(value):
        w = f"duplicates[{i}]"
        if isinstance(h, tuple | list):
            if len(h) != 2:
                raise _bad(w, "expected a (subject_id, score) pair")
            hm: dict[str, Any] = {"subject_id": h[0], "score": h[1]}
        else:
            hm = _as_mapping(h, w, "IndexHit")
        subject = hm.get("subject_id")
        if not isinstance(subject, str):
            raise _bad(f"{w}.subject_id", "expected a string")
        score = _number(hm, "score", w)
        if score is None or not -1.0 <= score <= 1.0:
            raise _bad(f"{w}.score", f"expected a cosine similarity in [-1, 1], got {score!r}")
        distance = _number(hm, "distance", w)
        if distance is None:
            distance = math.sqrt(max(0.0, 2.0 - 2.0 * score))
        out.append((subject, score, distance))
    return out


def _duplicates(b: _Builder, hits: list[tuple[str, float, float]], subject: str | None) -> None:
    pol = b.policy.duplicates
    start = len(b.reasons)
    others = [h for h in hits if h[0] != subject]
    for sid, score, distance in sorted(others, key=lambda h: (h[2], h[0])):
        action = pol.action(distance)
        if action == "none":
            continue
        is_token = bool(_TOKEN.fullmatch(sid))
        level = pol.reject_distance if action == "reject" else pol.review_distance
        b.add("DUPLICATE_FACE", "duplicates", action,
              f"the face matches another enrolled subject (distance {distance:.3f} <= "
              f"{level:g}{f', FMR {pol.fmr_target:g} per comparison' if pol.fmr_target else ''})",
              {"subject": sid if is_token else None, "subject_redacted": not is_token,
               "similarity": score, "distance": distance,
               "review_distance": pol.review_distance, "reject_distance": pol.reject_distance,
               "fmr_target": pol.fmr_target})
    found = len(b.reasons) > start
    closest = min((h[2] for h in others), default=None)
    b.finish_check("duplicates", "found" if found else "clear",
                   {"hits": len(others), "closest_distance": closest}, start)


# --- decide -----------------------------------------------------------------------------------


def _utc_text(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def decide(
    *,
    match: Any = None,
    liveness: Any = None,
    active: Any = None,
    graph: Any = None,
    velocity: Mapping[str, int] | None = None,
    duplicates: Iterable[Any] | None = None,
    policy: Policy | str | Mapping[str, Any] | None = None,
    subject: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Decision:
    """Decide approve / review / reject for one applicant from the checks that ran.

    Args:
        match: :class:`~kyc.face.verify.MatchResult` (or its ``to_dict()``) of ID vs selfie.
        liveness: passive :class:`~kyc.liveness.passive.LivenessResult` (or dict).
        active: active-liveness result (``ActiveLivenessResult`` or dict).
        graph: the applicant's :class:`~kyc.graph.rings.RingReport` (or dict); its
            ``velocity`` counters are used unless ``velocity`` overrides them.
        velocity: ``als_*`` multi-lender counters (merged over the report's, winning).
        duplicates: FaceIndex hits: :class:`~kyc.face.index.IndexHit` objects,
            ``(subject_id, score)`` pairs or mappings; hits of ``subject`` itself are
            ignored. ``[]`` means the search ran and found nobody; ``None`` that it did not run.
        policy: a :class:`~kyc.policy.Policy`, a policy file path or mapping (see
            :func:`~kyc.policy.load_policy`); ``None`` = the shipped default.
        subject: the applicant's hashed token (``applicant:<hex>``); defaults to the
            graph report's applicant (and must equal it when both are given). A raw
            identifier is refused.
        clock: returns the decision time (default: now, UTC).

    Returns a :class:`Decision`. Raises :class:`~kyc.errors.InvalidRecord` (``field`` names
    the offending input path) for malformed input and :class:`~kyc.errors.ConfigError` for a
    bad policy. A mismatch, a spoof or a ring is an outcome, never an exception.
    """
    from kyc import __version__

    pol = load_policy(policy)
    graph_map = _as_mapping(graph, "graph", "RingReport") if graph is not None else None
    applicant = graph_map.get("applicant") if graph_map is not None else None
    if applicant is not None:
        if not isinstance(applicant, str) or not _TOKEN.fullmatch(applicant):
            raise _bad("graph.applicant", "expected a hashed applicant token")
        if subject is None:
            subject = applicant
        elif subject != applicant:
            raise _bad("subject", "differs from graph.applicant: the graph report is about "
                                  "another applicant")
    if subject is not None and (not isinstance(subject, str) or not _TOKEN.fullmatch(subject)):
        raise _bad("subject", "expected a hashed token like 'applicant:<hex>' "
                              "(IdentifierHasher.token), never a raw identifier")
    counters: dict[str, int] | None = None
    if graph_map is not None and graph_map.get("velocity"):
        counters = _counters(graph_map["velocity"], "graph.velocity")
    if velocity is not None:
        counters = {**(counters or {}), **_counters(velocity, "velocity")}
    hits = _hits(duplicates) if duplicates is not None else None

    b = _Builder(pol)
    steps: dict[str, Callable[[], None]] = {
        "face": lambda: _face(b, match),
        "liveness": lambda: _liveness(b, liveness),
        "active": lambda: _active(b, active),
        "graph": lambda: _graph(b, cast(Mapping[str, Any], graph_map)),
        "velocity": lambda: _velocity(b, cast(Mapping[str, int], counters)),
        "duplicates": lambda: _duplicates(b, cast(list[tuple[str, float, float]], hits),
                                          subject),
    }
    given = {
        "face": match is not None,
        "liveness": liveness is not None,
        "active": active is not None,
        "graph": graph_map is not None,
        "velocity": bool(counters),
        "duplicates": hits is not None,
    }
    for name in CHECKS:
        if given[name]:
            steps[name]()
        else:
            b.not_run(name)

    top = strongest(*(r.action for r in b.reasons))
    outcome: Outcome = "approve" if top in ("none", "approve") else cast(Outcome, top)
    models = sorted({tuple(sorted(m.items())) for m in b.models})
    when = clock() if clock is not None else datetime.now(timezone.utc)
    return Decision(
        outcome=outcome,
        reasons=tuple(b.reasons),
        checks=tuple(b.checks),
        models=tuple(dict(m) for m in models),
        policy=pol.ref(),
        subject=subject,
        decided_at=_utc_text(when),
        kyc_version=__version__,
    )
