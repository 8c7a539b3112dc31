"""Threshold profiles: a decision threshold together with where it came from.

A face-match threshold only means something with the false-match rate it was calibrated for
and the population it was calibrated on (a threshold set on one population does not hold on
another: measured here, dlib at an FMR-1e-3 threshold from non-East-Asian LFW faces falsely
matched 14.8 % of East-Asian impostor pairs). So thresholds live in *profiles*, shipped in
``kyc/face/profiles.toml`` and measured by ``benchmarks/face_calibrate.py``; every
:class:`~kyc.face.verify.MatchResult` names the profile it used. Calibrate on your own
applicants (``kyc calibrate``) before relying on an FMR.

:func:`resolve_profile` accepts a profile name, a :class:`ThresholdProfile`, a plain number
(a ``"custom"`` profile with no FMR claim) or ``None`` (the default profile of the embedder).

>>> p = ThresholdProfile(name="t", embedder="dlib_resnet_v1", metric="euclidean",
...                      threshold=0.5, fmr_target=1e-3)
>>> p.is_match(0.42), p.is_match(0.61)
(True, False)
>>> resolve_profile(0.45, embedder="dlib_resnet_v1", metric="euclidean").name
'custom'
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from kyc.errors import ConfigError

if sys.version_info >= (3, 11):  # pragma: no cover - version dependent
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ThresholdProfile",
    "default_profile",
    "get_profile",
    "load_profiles",
    "load_toml",
    "resolve_profile",
]


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file raises ``ConfigError`` naming it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {os.fspath(path)}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)}: {exc}") from exc


@dataclass(frozen=True)
class ThresholdProfile:
    """A calibrated decision threshold for one embedder.

    ``metric`` ``"euclidean"``: match when distance <= ``threshold``; ``"cosine"``: match when
    similarity >= ``threshold``. ``fmr_target`` is the false-match rate the threshold was set
    for on ``population`` (``None`` for a custom threshold: no claim), ``ci`` the bootstrap
    95 % interval of the threshold, ``n_genuine`` / ``n_impostor`` the pairs it rests on,
    ``command`` how to reproduce it. ``provisional`` marks a placeholder not yet measured.
    """

    name: str
    embedder: str
    metric: str
    threshold: float
    fmr_target: float | None = None
    ci: tuple[float, float] | None = None
    population: str = ""
    n_genuine: int = 0
    n_impostor: int = 0
    command: str = ""
    default: bool = False
    provisional: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.metric not in ("euclidean", "cosine"):
            raise ConfigError(
                f"profile {self.name!r}: metric must be 'euclidean' or 'cosine', "
                f"got {self.metric!r}"
            )
        try:
            thr = float(self.threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"profile {self.name!r}: threshold must be a number") from None
        if not math.isfinite(thr):
            raise ConfigError(f"profile {self.name!r}: threshold must be finite, got {thr}")
        object.__setattr__(self, "threshold", thr)
        if self.fmr_target is not None:
            fmr = float(self.fmr_target)
            if not 0.0 < fmr < 1.0:
                raise ConfigError(f"profile {self.name!r}: fmr_target must be in (0, 1)")
            object.__setattr__(self, "fmr_target", fmr)
        if self.ci is not None:
            lo, hi = (float(v) for v in self.ci)
            object.__setattr__(self, "ci", (lo, hi))

    @property
    def higher_is_match(self) -> bool:
        """True for similarity scores (cosine), false for distances (Euclidean)."""
        return self.metric == "cosine"

    def is_match(self, score: float) -> bool:
        """Apply the threshold to a distance (Euclidean) or similarity (cosine)."""
        if self.higher_is_match:
            return score >= self.threshold
        return score <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the TOML table's keys)."""
        return {
            "name": self.name,
            "embedder": self.embedder,
            "metric": self.metric,
            "threshold": self.threshold,
            "fmr_target": self.fmr_target,
            "ci": list(self.ci) if self.ci is not None else None,
            "population": self.population,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "command": self.command,
            "default": self.default,
            "provisional": self.provisional,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdProfile:
        """Build a profile from a ``[[profile]]`` table; unknown keys are kept in ``extra``."""
        missing = [k for k in ("name", "embedder", "metric", "threshold") if k not in data]
        if missing:
            raise ConfigError(f"threshold profile is missing {', '.join(missing)}: {dict(data)!r}")
        known = {
            "name", "embedder", "metric", "threshold", "fmr_target", "ci", "population",
            "n_genuine", "n_impostor", "command", "default", "provisional",
        }  # fmt: skip
        ci = data.get("ci")
        return cls(
            name=str(data["name"]),
            embedder=str(data["embedder"]),
            metric=str(data["metric"]),
            threshold=data["threshold"],
            fmr_target=data.get("fmr_target"),
            ci=(float(ci[0]), float(ci[1])) if ci is not None and len(ci) == 2 else None,
            population=str(data.get("population", "")),
            n_genuine=int(data.get("n_genuine", 0)),
            n_impostor=int(data.get("n_impostor", 0)),
            command=str(data.get("command", "")),
            default=bool(data.get("default", False)),
            provisional=bool(data.get("provisional", False)),
            extra={k: v for k, v in data.items() if k not in known},
        )


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> tuple[ThresholdProfile, ...]:
    if path is None:
        ref = resources.files("kyc.face").joinpath("profiles.toml")
        with ref.open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"kyc/face/profiles.toml is not valid TOML: {exc}") from exc
    else:
        data = load_toml(path)
    tables = data.get("profile", [])
    if not isinstance(tables, list):
        raise ConfigError("profiles file must hold [[profile]] tables")
    profiles = tuple(ThresholdProfile.from_dict(t) for t in tables)
    names = [p.name for p in profiles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate profile names: {', '.join(dupes)}")
    return profiles


def load_profiles(path: str | os.PathLike[str] | None = None) -> list[ThresholdProfile]:
    """All profiles from ``path`` (default: the shipped ``kyc/face/profiles.toml``)."""
    return list(_load_cached(os.fspath(Path(path).resolve()) if path is not None else None))


def get_profile(name: str, path: str | os.PathLike[str] | None = None) -> ThresholdProfile:
    """The profile called ``name``; ``ConfigError`` listing the known names otherwise."""
    profiles = load_profiles(path)
    for p in profiles:
        if p.name == name:
            return p
    known = ", ".join(p.name for p in profiles) or "(none)"
    raise ConfigError(f"no threshold profile named {name!r}; known profiles: {known}")


def default_profile(embedder: str, path: str | os.PathLike[str] | None = None) -> ThresholdProfile:
    """The default profile for ``embedder`` (``default = true``, else its only profile).

    Raises ``ConfigError`` when the embedder has no profile (a model you declared yourself:
    pass ``profile=`` a threshold or a profile you calibrated with ``kyc calibrate``).
    """
    mine = [p for p in load_profiles(path) if p.embedder == embedder]
    defaults = [p for p in mine if p.default]
    if len(defaults) == 1:
        return defaults[0]
    if len(defaults) > 1:
        raise ConfigError(
            f"several default profiles for {embedder!r}: {', '.join(p.name for p in defaults)}"
        )
    if len(mine) == 1:
        return mine[0]
    if not mine:
        raise ConfigError(
            f"no threshold profile for embedder {embedder!r}: pass profile= a threshold or a "
            "ThresholdProfile calibrated on your own data (kyc calibrate)"
        )
    raise ConfigError(
        f"embedder {embedder!r} has several profiles and none is the default; choose one of "
        f"{', '.join(p.name for p in mine)}"
    )


def resolve_profile(
    profile: str | float | ThresholdProfile | None,
    *,
    embedder: str,
    metric: str,
    path: str | os.PathLike[str] | None = None,
) -> ThresholdProfile:
    """Turn the user's ``profile=`` argument into a :class:`ThresholdProfile` for ``embedder``.

    ``None`` -> the embedder's default profile; a name -> that profile; a number -> a
    ``"custom"`` profile (``fmr_target`` and ``population`` unknown); a profile -> itself.
    A profile made for another embedder or metric raises ``ConfigError``.
    """
    if profile is None:
        prof = default_profile(embedder, path)
    elif isinstance(profile, ThresholdProfile):
        prof = profile
    elif isinstance(profile, str):
        prof = get_profile(profile, path)
    elif isinstance(profile, (int, float)) and not isinstance(profile, bool):
        return ThresholdProfile(
            name="custom",
            embedder=embedder,
            metric=metric,
            threshold=float(profile),
            fmr_target=None,
            population="unknown (threshold given by the caller)",
        )
    else:
        raise ConfigError(
            f"profile must be a name, a number or a ThresholdProfile; got {profile!r}"
        )
    if prof.metric != metric:
        raise ConfigError(
            f"profile {prof.name!r} is for metric {prof.metric!r}, the embedder uses {metric!r}"
        )
    if prof.embedder != embedder:
        raise ConfigError(
            f"profile {prof.name!r} was calibrated for embedder {prof.embedder!r}, not {embedder!r}"
        )
    return prof
