"""Decision policies: the rules that turn face and graph evidence into approve / review / reject.

A policy is a small versioned TOML (or JSON; YAML when PyYAML is installed) file. Every field
is documented in ``docs/policy.md``; the shipped default (``kyc/policies/default.toml``) is a
policy for a thin-file consumer lender. A policy of your own may leave fields out: tables
are merged key by key over the default, lists (``codes``, ``velocity.limits``) replace the
default's lists. ``name`` and ``version`` (semver) are always required.

Actions are ``"approve"``, ``"review"``, ``"reject"`` and ``"none"`` (no effect); the outcome
of a decision is the strongest action any reason triggered, with precedence
reject > review > approve (``none`` counts as approve).

Validation is strict: an unknown key, a wrong type, an unknown action or a malformed code
pattern raises :class:`~kyc.errors.ConfigError` naming the key path.

>>> p = load_policy()
>>> p.name, p.face.on_mismatch, p.graph.review_score
('thin-file-consumer', 'reject', 0.5)
>>> rule = CodeRule("DEVICE_SHARED_BY_{n}", "review", min=4)
>>> rule.matches("DEVICE_SHARED_BY_7"), rule.matches("DEVICE_SHARED_BY_2")
(True, False)
>>> try:
...     load_policy({"name": "x", "version": "1.0.0", "face": {"on_mismatch": "deny"}})
... except ConfigError as exc:
...     print(exc.message)
policy <mapping>: face.on_mismatch: expected one of approve, review, reject, none; got 'deny'
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

from kyc.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

__all__ = [
    "ACTIONS",
    "Action",
    "ActivePolicy",
    "CodeRule",
    "DuplicatePolicy",
    "FacePolicy",
    "GraphPolicy",
    "LivenessPolicy",
    "MissingPolicy",
    "Policy",
    "VelocityLimit",
    "VelocityPolicy",
    "default_policy",
    "default_policy_path",
    "load_policy",
    "strongest",
]

Action = Literal["none", "approve", "review", "reject"]

#: Every action, weakest first (the outcome is the strongest one triggered).
ACTIONS: tuple[Action, ...] = ("none", "approve", "review", "reject")
_RANK: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_PATTERN = re.compile(r"[A-Z0-9_*]*(?:\{n\}[A-Z0-9_*]*)?")
_FEATURE = re.compile(r"als_(d7|d15|m1|m3|m6|m12)_(id|cell|device)_[a-z0-9]+_(allnum|orgnum)")

#: The checks a decision knows about (keys of ``[missing]``).
CHECKS: tuple[str, ...] = ("face", "liveness", "active", "graph", "velocity", "duplicates")


def strongest(*actions: str) -> Action:
    """The strongest of ``actions`` (``"none"`` when there are none).

    >>> strongest("approve", "review", "none")
    'review'
    """
    best: Action = "none"
    for a in actions:
        if _RANK[a] > _RANK[best]:
            best = cast(Action, a)
    return best


# --- rule types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeRule:
    """Reason codes that trigger an action: ``code`` is an exact code or a pattern.

    In a pattern ``*`` matches any run of code characters and ``{n}`` (at most once) an
    integer; ``min`` / ``max`` (inclusive, only with ``{n}``) bound that integer. So
    ``CodeRule("DEVICE_SHARED_BY_{n}", "review", min=4)`` fires for ``DEVICE_SHARED_BY_4``
    and up, and ``CodeRule("MULTIPLE_FACES_IN_*", "review")`` for both sides.
    """

    code: str
    action: Action
    min: int | None = None
    max: int | None = None

    @functools.cached_property
    def _regex(self) -> re.Pattern[str]:
        out = []
        for part in re.split(r"(\*|\{n\})", self.code):
            if part == "*":
                out.append(r"[A-Z0-9_]*")
            elif part == "{n}":
                out.append(r"(\d+)")
            else:
                out.append(re.escape(part))
        return re.compile("".join(out))

    def matches(self, code: str) -> bool:
        """Whether reason ``code`` falls under this rule (pattern and integer bounds)."""
        m = self._regex.fullmatch(code)
        if m is None:
            return False
        if m.groups():
            n = int(m.group(1))
            if self.min is not None and n < self.min:
                return False
            if self.max is not None and n > self.max:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (bounds only when set)."""
        out: dict[str, Any] = {"code": self.code, "action": self.action}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        return out


def _rules_action(rules: Sequence[CodeRule], code: str) -> Action:
    return strongest(*(r.action for r in rules if r.matches(code)))


@dataclass(frozen=True)
class FacePolicy:
    """Rules for the 1:1 face match (:class:`~kyc.face.verify.MatchResult`).

    ``on_match`` / ``on_mismatch`` / ``on_not_checked``: action per status.
    ``on_low_quality``: action of ``LOW_QUALITY_ID`` / ``LOW_QUALITY_SELFIE``.
    ``max_fmr_target``: a *match* from a threshold set for a higher false-match rate (or a
    custom threshold with no FMR claim) triggers ``on_fmr_target_too_high``
    (``None`` = no limit). ``on_provisional_profile``: a match from an unmeasured
    placeholder profile. ``codes``: extra code rules over the match's reasons.
    """

    on_match: Action
    on_mismatch: Action
    on_not_checked: Action
    on_low_quality: Action
    max_fmr_target: float | None
    on_fmr_target_too_high: Action
    on_provisional_profile: Action
    codes: tuple[CodeRule, ...]

    def code_action(self, code: str) -> Action:
        """The strongest action of the code rules matching ``code``."""
        return _rules_action(self.codes, code)


@dataclass(frozen=True)
class LivenessPolicy:
    """Rules for passive liveness (:class:`~kyc.liveness.passive.LivenessResult`).

    ``on_live`` / ``on_spoof`` / ``on_not_checked``: action per status. ``max_apcer_target``:
    a *live* verdict from an operating point set for a higher attack acceptance rate (or a
    custom threshold) triggers ``on_apcer_target_too_high`` (``None`` = no limit).
    ``codes``: extra code rules.
    """

    on_live: Action
    on_spoof: Action
    on_not_checked: Action
    max_apcer_target: float | None
    on_apcer_target_too_high: Action
    codes: tuple[CodeRule, ...]

    def code_action(self, code: str) -> Action:
        """The strongest action of the code rules matching ``code``."""
        return _rules_action(self.codes, code)


@dataclass(frozen=True)
class ActivePolicy:
    """Rules for active liveness (:class:`~kyc.liveness.active.ActiveLivenessResult`).

    ``on_passed`` / ``on_failed`` / ``on_not_checked``: action per status; ``codes``: code
    rules (the default escalates attack failures such as ``REPLAY_SUSPECTED`` to reject).
    """

    on_passed: Action
    on_failed: Action
    on_not_checked: Action
    codes: tuple[CodeRule, ...]

    def code_action(self, code: str) -> Action:
        """The strongest action of the code rules matching ``code``."""
        return _rules_action(self.codes, code)


@dataclass(frozen=True)
class GraphPolicy:
    """Rules for the applicant's :class:`~kyc.graph.rings.RingReport`.

    ``review_score`` / ``reject_score``: the report's graph score at or above which the
    decision is review / reject (``None`` = off). ``codes``: code rules over the report's
    reasons (ring evidence and the applicant's own, e.g. ``CONFIRMED_FRAUD``).
    """

    review_score: float | None
    reject_score: float | None
    codes: tuple[CodeRule, ...]

    def code_action(self, code: str) -> Action:
        """The strongest action of the code rules matching ``code``."""
        return _rules_action(self.codes, code)


@dataclass(frozen=True)
class VelocityLimit:
    """A limit on one multi-lender counter (``als_{window}_{key}_{type}_{allnum|orgnum}``).

    The counter at or above ``review`` / ``reject`` triggers that action (``None`` = off).
    """

    feature: str
    review: int | None = None
    reject: int | None = None

    def action(self, value: int) -> Action:
        """The action a counter value triggers."""
        if self.reject is not None and value >= self.reject:
            return "reject"
        if self.review is not None and value >= self.review:
            return "review"
        return "none"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``false`` for an unset level)."""
        return {
            "feature": self.feature,
            "review": False if self.review is None else self.review,
            "reject": False if self.reject is None else self.reject,
        }


@dataclass(frozen=True)
class VelocityPolicy:
    """Limits on multi-lender counters (from the RingReport or given directly)."""

    limits: tuple[VelocityLimit, ...]


@dataclass(frozen=True)
class DuplicatePolicy:
    """Rules for FaceIndex hits of *other* subjects (one face behind several identities).

    A hit at unit-vector distance at or below ``reject_distance`` / ``review_distance``
    triggers that action (``None`` = off). ``fmr_target``: the per-comparison false-match
    rate ``review_distance`` was calibrated for (reported in the evidence).
    """

    review_distance: float | None
    reject_distance: float | None
    fmr_target: float | None

    def action(self, distance: float) -> Action:
        """The action a hit at ``distance`` triggers."""
        if self.reject_distance is not None and distance <= self.reject_distance:
            return "reject"
        if self.review_distance is not None and distance <= self.review_distance:
            return "review"
        return "none"


@dataclass(frozen=True)
class MissingPolicy:
    """The action when a check was not run at all (its input was not given to ``decide``)."""

    face: Action
    liveness: Action
    active: Action
    graph: Action
    velocity: Action
    duplicates: Action

    def action(self, check: str) -> Action:
        """The action for check ``check`` (one of :data:`CHECKS`) not run."""
        return cast(Action, getattr(self, check))


@dataclass(frozen=True)
class Policy:
    """A validated, versioned decision policy.

    ``sha256`` is the digest of the policy file's bytes (of the canonical JSON for a policy
    built from a mapping), ``effective_sha256`` the digest of the effective rules after
    merging over the default (what actually decided: the identity of the rules, also for a
    policy derived with :func:`dataclasses.replace`), ``source`` where it came from. Build
    one with :func:`load_policy`; the shipped default file is the one source of default
    values (the dataclasses have none).
    """

    name: str
    version: str
    face: FacePolicy
    liveness: LivenessPolicy
    active: ActivePolicy
    graph: GraphPolicy
    velocity: VelocityPolicy
    duplicates: DuplicatePolicy
    missing: MissingPolicy
    description: str = ""
    sha256: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The effective rules as a plain mapping (``false`` for thresholds that are off);
        loading it back gives an equal policy."""

        def off(v: float | None) -> float | bool:
            return False if v is None else v

        def rules(rs: Sequence[CodeRule]) -> list[dict[str, Any]]:
            return [r.to_dict() for r in rs]

        f, lv, ac, g, d, m = (
            self.face, self.liveness, self.active, self.graph, self.duplicates, self.missing,
        )
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "face": {
                "on_match": f.on_match,
                "on_mismatch": f.on_mismatch,
                "on_not_checked": f.on_not_checked,
                "on_low_quality": f.on_low_quality,
                "max_fmr_target": off(f.max_fmr_target),
                "on_fmr_target_too_high": f.on_fmr_target_too_high,
                "on_provisional_profile": f.on_provisional_profile,
                "codes": rules(f.codes),
            },
            "liveness": {
                "on_live": lv.on_live,
                "on_spoof": lv.on_spoof,
                "on_not_checked": lv.on_not_checked,
                "max_apcer_target": off(lv.max_apcer_target),
                "on_apcer_target_too_high": lv.on_apcer_target_too_high,
                "codes": rules(lv.codes),
            },
            "active": {
                "on_passed": ac.on_passed,
                "on_failed": ac.on_failed,
                "on_not_checked": ac.on_not_checked,
                "codes": rules(ac.codes),
            },
            "graph": {
                "review_score": off(g.review_score),
                "reject_score": off(g.reject_score),
                "codes": rules(g.codes),
            },
            "velocity": {"limits": [lim.to_dict() for lim in self.velocity.limits]},
            "duplicates": {
                "review_distance": off(d.review_distance),
                "reject_distance": off(d.reject_distance),
                "fmr_target": off(d.fmr_target),
            },
            "missing": {c: m.action(c) for c in CHECKS},
        }

    @property
    def effective_sha256(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict` (the rules that decide)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def ref(self) -> dict[str, str]:
        """``{"name", "version", "sha256", "effective_sha256"}`` for a decision record."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "effective_sha256": self.effective_sha256,
        }


# --- validation -------------------------------------------------------------------------------


class _Reader:
    """Typed access to one table of the raw policy, with key paths in every error."""

    def __init__(self, data: Any, path: str, where: str) -> None:
        self.where = where
        self.path = path
        if not isinstance(data, Mapping):
            self.fail(path, f"expected a table, got {_typename(data)}")
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"policy {self.where}: {key}: {message}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str) -> Any:
        self.used.add(name)
        if name not in self.data:
            self.fail(self.key(name), "missing")
        return self.data[name]

    def action(self, name: str) -> Action:
        return _as_action(self.get(name), self.key(name), self)

    def rate(self, name: str, *, allow_off: bool = True) -> float | None:
        value = self.get(name)
        if value is False and allow_off:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), f"expected a number{' or false' if allow_off else ''}, "
                                      f"got {_typename(value)} {value!r}")
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            self.fail(self.key(name), f"expected a number in [0, 1], got {value!r}")
        return v

    def distance(self, name: str) -> float | None:
        value = self.get(name)
        if value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), f"expected a number or false, got {_typename(value)} "
                                      f"{value!r}")
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 2.0):
            self.fail(self.key(name), f"expected a unit-vector distance in [0, 2], got {value!r}")
        return v

    def count(self, name: str) -> int | None:
        value = self.get(name)
        if value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(self.key(name), f"expected a positive integer or false, got {value!r}")
        return int(value)

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            self.fail(self.key(name), f"expected a string, got {_typename(value)}")
        return str(value)

    def rules(self, name: str) -> tuple[CodeRule, ...]:
        value = self.get(name)
        key = self.key(name)
        if not isinstance(value, list):
            self.fail(key, f"expected a list of {{code, action}} tables, got {_typename(value)}")
        out = []
        for i, item in enumerate(value):
            r = _Reader(item, f"{key}[{i}]", self.where)
            code = r.text("code")
            if not code or not _PATTERN.fullmatch(code) or not re.search(r"[A-Z]", code):
                r.fail(r.key("code"), f"not a reason code or pattern: {code!r} (upper-case "
                                      "letters, digits and _, with * and at most one {n})")
            action = r.action("action")
            lo = r.count("min") if "min" in r.data else None
            hi = r.count("max") if "max" in r.data else None
            if (lo is not None or hi is not None) and "{n}" not in code:
                r.fail(r.key("min" if lo is not None else "max"),
                       f"min/max need a {{n}} in the code pattern {code!r}")
            if lo is not None and hi is not None and lo > hi:
                r.fail(r.key("min"), f"min {lo} is greater than max {hi}")
            r.done()
            out.append(CodeRule(code, action, lo, hi))
        return tuple(out)

    def limits(self, name: str) -> tuple[VelocityLimit, ...]:
        value = self.get(name)
        key = self.key(name)
        if not isinstance(value, list):
            self.fail(key, f"expected a list of {{feature, review, reject}} tables, "
                           f"got {_typename(value)}")
        out = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            r = _Reader(item, f"{key}[{i}]", self.where)
            feature = r.text("feature")
            if not _FEATURE.fullmatch(feature):
                r.fail(r.key("feature"), f"not a velocity counter name: {feature!r} (expected "
                                         "als_{d7|d15|m1|m3|m6|m12}_{id|cell|device}_{type}_"
                                         "{allnum|orgnum})")
            if feature in seen:
                r.fail(r.key("feature"), f"{feature} is limited twice")
            seen.add(feature)
            review = r.count("review") if "review" in r.data else None
            reject = r.count("reject") if "reject" in r.data else None
            if review is None and reject is None:
                r.fail(r.key("review"), "set review and/or reject")
            if review is not None and reject is not None and review > reject:
                r.fail(r.key("review"), f"review level {review} is above reject level {reject}")
            r.done()
            out.append(VelocityLimit(feature, review, reject))
        return tuple(out)

    def table(self, name: str) -> _Reader:
        return _Reader(self.get(name), self.key(name), self.where)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            self.fail(self.key(unknown[0]), f"unknown key (known keys here: {known})")


def _typename(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _as_action(value: Any, key: str, reader: _Reader) -> Action:
    if not isinstance(value, str) or value not in _RANK:
        reader.fail(key, f"expected one of approve, review, reject, none; got {value!r}")
    return cast(Action, value)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the base's."""
    out = dict(copy.deepcopy(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _build(data: Mapping[str, Any], *, where: str, sha256: str) -> Policy:
    top = _Reader(data, "", where)
    name = top.text("name")
    if not name.strip():
        top.fail("name", "must not be empty")
    version = top.text("version")
    if not _SEMVER.fullmatch(version):
        top.fail("version", f"expected a semantic version like 1.2.0, got {version!r}")
    description = top.text("description") if "description" in top.data else ""

    f = top.table("face")
    face = FacePolicy(
        on_match=f.action("on_match"),
        on_mismatch=f.action("on_mismatch"),
        on_not_checked=f.action("on_not_checked"),
        on_low_quality=f.action("on_low_quality"),
        max_fmr_target=f.rate("max_fmr_target"),
        on_fmr_target_too_high=f.action("on_fmr_target_too_high"),
        on_provisional_profile=f.action("on_provisional_profile"),
        codes=f.rules("codes"),
    )
    f.done()
    lv = top.table("liveness")
    liveness = LivenessPolicy(
        on_live=lv.action("on_live"),
        on_spoof=lv.action("on_spoof"),
        on_not_checked=lv.action("on_not_checked"),
        max_apcer_target=lv.rate("max_apcer_target"),
        on_apcer_target_too_high=lv.action("on_apcer_target_too_high"),
        codes=lv.rules("codes"),
    )
    lv.done()
    ac = top.table("active")
    active = ActivePolicy(
        on_passed=ac.action("on_passed"),
        on_failed=ac.action("on_failed"),
        on_not_checked=ac.action("on_not_checked"),
        codes=ac.rules("codes"),
    )
    ac.done()
    g = top.table("graph")
    graph = GraphPolicy(
        review_score=g.rate("review_score"),
        reject_score=g.rate("reject_score"),
        codes=g.rules("codes"),
    )
    if (graph.review_score is not None and graph.reject_score is not None
            and graph.review_score > graph.reject_score):
        g.fail("graph.review_score",
               f"{graph.review_score} is above graph.reject_score {graph.reject_score}")
    g.done()
    v = top.table("velocity")
    velocity = VelocityPolicy(limits=v.limits("limits"))
    v.done()
    d = top.table("duplicates")
    duplicates = DuplicatePolicy(
        review_distance=d.distance("review_distance"),
        reject_distance=d.distance("reject_distance"),
        fmr_target=d.rate("fmr_target"),
    )
    if (duplicates.review_distance is not None and duplicates.reject_distance is not None
            and duplicates.reject_distance > duplicates.review_distance):
        d.fail("duplicates.reject_distance",
               f"{duplicates.reject_distance} is above duplicates.review_distance "
               f"{duplicates.review_distance} (reject must be the stricter, smaller distance)")
    d.done()
    m = top.table("missing")
    missing = MissingPolicy(**{c: m.action(c) for c in CHECKS})
    m.done()
    top.done()
    return Policy(
        name=name,
        version=version,
        description=description,
        face=face,
        liveness=liveness,
        active=active,
        graph=graph,
        velocity=velocity,
        duplicates=duplicates,
        missing=missing,
        sha256=sha256,
        source=where,
    )


# --- loading ----------------------------------------------------------------------------------


def default_policy_path() -> Path:
    """Path of the shipped default policy file (``kyc/policies/default.toml``)."""
    return Path(str(resources.files("kyc").joinpath("policies", "default.toml")))


@functools.lru_cache(maxsize=1)
def _default_raw() -> tuple[dict[str, Any], str]:
    path = default_policy_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:  # pragma: no cover - a broken installation
        raise ConfigError(f"the default policy {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # pragma: no cover
        raise ConfigError(f"the default policy {path} is not valid TOML: {exc}") from None
    return data, hashlib.sha256(raw).hexdigest()


@functools.lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The shipped default policy (a thin-file consumer lender), loaded once."""
    data, digest = _default_raw()
    return _build(data, where="default", sha256=digest)


def _parse_file(path: Path) -> tuple[Mapping[str, Any], str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"policy file {path} cannot be read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    suffix = path.suffix.lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy file {path} is not UTF-8 text") from None
    data: Any
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"policy file {path} is not valid JSON: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            raise ConfigError(
                f"policy file {path} is YAML, which needs PyYAML (pip install pyyaml); "
                "or write the policy as TOML"
            ) from None
        try:
            data = yaml.safe_load(text)
        except Exception as exc:  # yaml.YAMLError; PyYAML is optional, so no import here
            raise ConfigError(f"policy file {path} is not valid YAML: {exc}") from None
    else:
        raise ConfigError(
            f"policy file {path}: unknown format {suffix or '(no suffix)'!r}; "
            "use .toml, .json, or .yaml/.yml"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"policy file {path}: the top level must be a table")
    return data, digest


def load_policy(
    source: str | os.PathLike[str] | Mapping[str, Any] | Policy | None = None,
) -> Policy:
    """Load and validate a policy.

    ``source`` is ``None`` (the shipped default), a :class:`Policy` (returned as is), a path
    to a ``.toml`` / ``.json`` / ``.yaml`` file, or a mapping with the same structure.
    Fields left out take the default policy's values (tables merge key by key, lists
    replace). Raises :class:`~kyc.errors.ConfigError` naming the key path of the first
    problem (unknown key, wrong type, unknown action, bad pattern, missing version).
    """
    if source is None:
        return default_policy()
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        where = "<mapping>"
        data: Mapping[str, Any] = source
        try:
            canon = json.dumps(source, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"policy {where}: not plain data ({exc})") from None
        digest = hashlib.sha256(canon.encode()).hexdigest()
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        where = str(path)
        data, digest = _parse_file(path)
    else:
        raise ConfigError(
            f"policy must be a path, a mapping or a Policy, not {type(source).__name__}"
        )
    for required in ("name", "version"):
        if required not in data:
            raise ConfigError(f"policy {where}: {required}: missing (a policy must name itself "
                              "and carry a semantic version)")
    base, _ = _default_raw()
    base = {k: v for k, v in base.items() if k not in ("name", "version", "description")}
    return _build(_merge(base, data), where=where, sha256=digest)
