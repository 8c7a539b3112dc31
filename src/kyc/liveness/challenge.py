"""The server side of active-liveness challenge-response: challenges, nonces, attempt limits.

A :class:`ChallengeIssuer` draws a random sequence of moves (:class:`Move`: blink, turn the
head left or right, open the mouth, read four random digits aloud), gives it a single-use
nonce and an expiry, and signs the whole with HMAC-SHA256 under a deployment secret. The
signed :attr:`Challenge.token` is what the client gets (with the prompts) and sends back with
its frames, so a stateless server can check that it issued exactly this challenge:

* :meth:`ChallengeIssuer.redeem` checks the signature (``CHALLENGE_INVALID``), the expiry
  (``CHALLENGE_TIMEOUT``), the subject the challenge was issued to
  (``CHALLENGE_SUBJECT_MISMATCH``) and finally consumes the nonce: a second redemption of the
  same challenge gives ``NONCE_REUSED``. Each outcome is a :class:`Redemption` (a result, not
  an exception: a replayed or forged challenge is an attack signal, not bad input).
* Used nonces live in a :class:`NonceRegistry` until their challenge expires (after that the
  expiry check rejects the challenge anyway, so forgetting the nonce is safe).
  :class:`MemoryNonceRegistry` is the in-process default; a deployment with several server
  processes plugs in a shared one (for example a Redis ``SET key NX EX ttl`` behind the same
  one-method protocol).

The token is signed, not encrypted: the client can read the moves and digits (it has to show
them anyway). The subject is never put in the token in clear: only a keyed hash of it.

:class:`AttemptLimiter` is the abuse-control primitive: per subject, ``max_failures``
failures within ``window`` seconds lock the subject for ``lockout`` seconds (default 5 in 3
minutes lock for 30 minutes). Subjects are kept as keyed hashes, never raw.

>>> import random
>>> issuer = ChallengeIssuer(b"a deployment secret of 32 bytes!", ttl=60.0,
...                          rng=random.Random(7), clock=lambda: 1_000.0)
>>> ch = issuer.issue(moves=["turn_left", "read_digits"])
>>> [s.move.value for s in ch.steps], len(ch.steps[1].digits or "")
(['turn_left', 'read_digits'], 4)
>>> issuer.redeem(ch.token).ok, issuer.redeem(ch.token).codes
(True, ('NONCE_REUSED',))
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from kyc.errors import ConfigError
from kyc.reasons import Reason

__all__ = [
    "DEFAULT_STEP_TIMEOUT_MS",
    "AttemptLimiter",
    "Challenge",
    "ChallengeIssuer",
    "ChallengeStep",
    "LimitStatus",
    "MemoryNonceRegistry",
    "Move",
    "NonceRegistry",
    "Redemption",
]

Clock = Callable[[], float]


class Move(str, Enum):
    """One move a challenge can ask for."""

    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"
    READ_DIGITS = "read_digits"

    @property
    def prompt(self) -> str:
        """The instruction shown to the user (English; clients localise by ``value``)."""
        return _PROMPTS[self]


_PROMPTS: dict[Move, str] = {
    Move.BLINK: "Blink",
    Move.TURN_LEFT: "Turn your head to your left",
    Move.TURN_RIGHT: "Turn your head to your right",
    Move.OPEN_MOUTH: "Open your mouth",
    Move.READ_DIGITS: "Read these digits aloud",
}

#: Time allowed for each move once its step starts, in frame-timestamp milliseconds.
DEFAULT_STEP_TIMEOUT_MS: Mapping[Move, int] = {
    Move.BLINK: 5000,
    Move.TURN_LEFT: 5000,
    Move.TURN_RIGHT: 5000,
    Move.OPEN_MOUTH: 5000,
    Move.READ_DIGITS: 8000,
}

_DIGITS = 4
_MIN_SECRET = 16
_TOKEN_VERSION = 1


def _as_move(value: Move | str) -> Move:
    try:
        return value if isinstance(value, Move) else Move(str(value))
    except ValueError:
        known = ", ".join(m.value for m in Move)
        raise ConfigError(f"unknown move {value!r}; known moves: {known}") from None


@dataclass(frozen=True)
class ChallengeStep:
    """One step of a challenge: the move, its digits (``read_digits`` only), its time limit."""

    move: Move
    timeout_ms: int
    digits: str | None = None

    @property
    def prompt(self) -> str:
        """The instruction for this step, digits included."""
        return f"{self.move.prompt}: {self.digits}" if self.digits else self.move.prompt

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"move", "timeout_ms", "digits", "prompt"}``."""
        return {
            "move": self.move.value,
            "timeout_ms": self.timeout_ms,
            "digits": self.digits,
            "prompt": self.prompt,
        }


@dataclass(frozen=True)
class Challenge:
    """An issued challenge: the steps, a single-use nonce, issue and expiry times, the token.

    ``issued_at`` and ``expires_at`` are seconds on the issuer's clock (epoch seconds with the
    default clock). ``subject_tag`` is a keyed hash of the subject it was issued to (or
    ``None``). ``token`` is the signed form the client sends back.
    """

    nonce: str
    steps: tuple[ChallengeStep, ...]
    issued_at: float
    expires_at: float
    token: str
    subject_tag: str | None = None

    @property
    def moves(self) -> tuple[Move, ...]:
        """The moves, in the order they must be performed."""
        return tuple(s.move for s in self.steps)

    def expired(self, now: float) -> bool:
        """True when ``now`` (same clock as ``expires_at``) is at or past the expiry."""
        return now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what a client needs: steps with prompts, expiry, token)."""
        return {
            "nonce": self.nonce,
            "steps": [s.to_dict() for s in self.steps],
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "subject_tag": self.subject_tag,
            "token": self.token,
        }


@runtime_checkable
class NonceRegistry(Protocol):
    """Remembers used nonces until their challenge expires (pluggable; must be atomic)."""

    def consume(self, nonce: str, expires_at: float) -> bool:
        """Mark ``nonce`` used; True the first time, False when it was already used."""
        ...


class MemoryNonceRegistry:
    """In-process :class:`NonceRegistry`: a dict plus an expiry heap, thread-safe.

    Entries whose ``expires_at`` has passed (on ``clock``, the issuer's clock) are purged on
    every :meth:`consume`, so memory stays proportional to the challenges redeemed within one
    TTL. Only HMAC-checked challenges reach the registry, so outsiders cannot fill it.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._used)

    def purge(self, now: float | None = None) -> int:
        """Forget nonces whose challenge expired before ``now``; returns how many."""
        t = self._clock() if now is None else now
        with self._lock:
            return self._purge(t)

    def _purge(self, now: float) -> int:
        dropped = 0
        while self._heap and self._heap[0][0] < now:
            exp, nonce = heapq.heappop(self._heap)
            if self._used.get(nonce) == exp:
                del self._used[nonce]
                dropped += 1
        return dropped

    def consume(self, nonce: str, expires_at: float) -> bool:
        """Mark ``nonce`` used until ``expires_at``; False when it was already used."""
        with self._lock:
            self._purge(self._clock())
            if nonce in self._used:
                return False
            self._used[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))
            return True


@dataclass(frozen=True)
class Redemption:
    """The outcome of :meth:`ChallengeIssuer.redeem`.

    ``ok`` is true when the challenge may be used now (its nonce is consumed by this call).
    ``challenge`` is the verified challenge (``None`` when the token could not be read or its
    signature is wrong); ``reasons`` holds ``CHALLENGE_INVALID``, ``CHALLENGE_TIMEOUT``,
    ``CHALLENGE_SUBJECT_MISMATCH`` or ``NONCE_REUSED`` with evidence.
    """

    ok: bool
    challenge: Challenge | None
    reasons: tuple[Reason, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "ok": self.ok,
            "challenge": self.challenge.to_dict() if self.challenge else None,
            "reasons": [r.to_dict() for r in self.reasons],
        }


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret_bytes(secret: bytes | bytearray | str, what: str) -> bytes:
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    else:
        raise ConfigError(f"{what} must be bytes or str, got {type(secret).__name__}")
    if len(key) < _MIN_SECRET:
        raise ConfigError(f"{what} must be at least {_MIN_SECRET} bytes long, got {len(key)}")
    return key


def _positive(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{what} must be a positive finite number, got {value!r}")
    return v


class ChallengeIssuer:
    """Issue, sign and redeem active-liveness challenges.

    Parameters:
        secret: the deployment secret (bytes or str, at least 16 bytes); the token MAC key
            and the subject-hash key are derived from it.
        ttl: seconds a challenge stays valid (default 60).
        rng: a :class:`random.Random` for drawing moves and digits (default
            :class:`random.SystemRandom`; seed one only in tests). Nonces always come from
            :func:`secrets.token_urlsafe`, whatever ``rng`` is.
        n_steps: how many moves a random challenge has (default 2).
        moves: the moves random challenges are drawn from (default: all five).
        step_timeout_ms: per-move time limits (defaults :data:`DEFAULT_STEP_TIMEOUT_MS`).
        registry: where used nonces are kept (default a new :class:`MemoryNonceRegistry`).
        clock: seconds now (default :func:`time.time`); injectable for tests.

    A random challenge never repeats a move back to back and holds ``read_digits`` at most
    once (unless a pool of only ``read_digits`` and one other move leaves no other choice).
    Raises :class:`~kyc.errors.ConfigError` for a short secret or invalid settings.
    """

    def __init__(
        self,
        secret: bytes | bytearray | str,
        ttl: float = 60.0,
        rng: random.Random | None = None,
        *,
        n_steps: int = 2,
        moves: Sequence[Move | str] | None = None,
        step_timeout_ms: Mapping[Move | str, int] | None = None,
        registry: NonceRegistry | None = None,
        clock: Clock = time.time,
    ) -> None:
        key = _secret_bytes(secret, "secret")
        self._mac_key = hmac.new(key, b"kyc/liveness/challenge-mac", hashlib.sha256).digest()
        self._subject_key = hmac.new(key, b"kyc/liveness/subject", hashlib.sha256).digest()
        self.ttl = _positive(ttl, "ttl")
        self.rng: random.Random = rng if rng is not None else random.SystemRandom()
        pool = tuple(dict.fromkeys(_as_move(m) for m in (moves if moves is not None else Move)))
        if not pool:
            raise ConfigError("moves must name at least one move")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ConfigError(f"n_steps must be a positive integer, got {n_steps!r}")
        if n_steps > 1 and len(pool) < 2:
            raise ConfigError("a challenge of several steps needs at least two moves to draw")
        self.n_steps = n_steps
        self.moves: tuple[Move, ...] = pool
        timeouts = dict(DEFAULT_STEP_TIMEOUT_MS)
        for k, v in (step_timeout_ms or {}).items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"step_timeout_ms[{k!r}] must be a positive integer, got {v!r}")
            timeouts[_as_move(k)] = v
        self.step_timeout_ms: Mapping[Move, int] = timeouts
        self.registry: NonceRegistry = (
            registry if registry is not None else MemoryNonceRegistry(clock=clock)
        )
        self.clock = clock

    def __repr__(self) -> str:
        return (
            f"ChallengeIssuer(ttl={self.ttl}, n_steps={self.n_steps}, "
            f"moves={[m.value for m in self.moves]})"
        )

    # -- issuing -------------------------------------------------------------------------------

    def subject_tag(self, subject: str) -> str:
        """Keyed hash (32 hex) of a subject identifier, as carried in tokens."""
        if not isinstance(subject, str) or not subject.strip():
            raise ConfigError("subject must be a non-empty string")
        norm = subject.strip().encode("utf-8")
        return hmac.new(self._subject_key, norm, hashlib.sha256).hexdigest()[:32]

    def _draw(self) -> list[Move]:
        out: list[Move] = []
        for _ in range(self.n_steps):
            choices = [
                m
                for m in self.moves
                if (not out or m != out[-1]) and not (m is Move.READ_DIGITS and m in out)
            ]
            if not choices:  # only read_digits left in the pool and already used
                choices = [m for m in self.moves if not out or m != out[-1]]
            out.append(self.rng.choice(choices))
        return out

    def _digits(self) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(_DIGITS))

    def issue(
        self, subject: str | None = None, *, moves: Sequence[Move | str] | None = None
    ) -> Challenge:
        """Issue a new challenge (random moves unless ``moves`` fixes them, in that order).

        ``subject`` (an applicant or session id) binds the challenge to that subject; only
        its keyed hash goes into the token. Returns a :class:`Challenge` whose ``token`` is
        signed; digits for ``read_digits`` steps are always random.
        """
        seq = [_as_move(m) for m in moves] if moves is not None else self._draw()
        if not seq:
            raise ConfigError("a challenge needs at least one move")
        steps = tuple(
            ChallengeStep(
                move=m,
                timeout_ms=int(self.step_timeout_ms[m]),
                digits=self._digits() if m is Move.READ_DIGITS else None,
            )
            for m in seq
        )
        now = float(self.clock())
        issued = round(now, 3)
        expires = round(now + self.ttl, 3)
        nonce = secrets.token_urlsafe(16)
        tag = self.subject_tag(subject) if subject is not None else None
        payload = {
            "v": _TOKEN_VERSION,
            "n": nonce,
            "iat": issued,
            "exp": expires,
            "sub": tag,
            "s": [[s.move.value, s.timeout_ms, s.digits] for s in steps],
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        mac = hmac.new(self._mac_key, body, hashlib.sha256).digest()
        token = f"{_b64e(body)}.{_b64e(mac)}"
        return Challenge(nonce, steps, issued, expires, token, tag)

    # -- verifying -----------------------------------------------------------------------------

    def _parse(self, token: str) -> tuple[Challenge | None, str]:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 8192:
            return None, "the token is not of the form <payload>.<signature>"
        body_txt, mac_txt = token.split(".")
        try:
            body = _b64d(body_txt)
            mac = _b64d(mac_txt)
        except (ValueError, TypeError):
            return None, "the token is not valid base64url"
        expected = hmac.new(self._mac_key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None, "the token's signature does not verify under this deployment's secret"
        try:
            data = json.loads(body)
            if data.get("v") != _TOKEN_VERSION:
                return None, f"unsupported token version {data.get('v')!r}"
            steps = tuple(
                ChallengeStep(_as_move(m), int(t), None if d is None else str(d))
                for m, t, d in data["s"]
            )
            ch = Challenge(
                nonce=str(data["n"]),
                steps=steps,
                issued_at=float(data["iat"]),
                expires_at=float(data["exp"]),
                token=token,
                subject_tag=None if data.get("sub") is None else str(data["sub"]),
            )
        except (ValueError, KeyError, TypeError, ConfigError):
            return None, "the signed token has an unreadable payload"
        return ch, ""

    def verify(self, token: str) -> Challenge | None:
        """The challenge a token carries when its signature verifies, else ``None``.

        Checks the signature only: no expiry, subject or nonce check (see :meth:`redeem`).
        """
        return self._parse(token)[0]

    def redeem(
        self, challenge: Challenge | str, *, subject: str | None = None, now: float | None = None
    ) -> Redemption:
        """Check a challenge (or its token) and consume its nonce.

        In order: the signature (``CHALLENGE_INVALID``; a :class:`Challenge` object is checked
        through its ``token``, so an edited object fails too), the expiry on the issuer's clock
        or ``now`` (``CHALLENGE_TIMEOUT``), the subject when the challenge was bound to one
        (``CHALLENGE_SUBJECT_MISMATCH``), then the nonce (``NONCE_REUSED`` when it was
        already redeemed). Only a fully valid challenge consumes its nonce.
        """
        token = challenge.token if isinstance(challenge, Challenge) else challenge
        ch, why = self._parse(token)
        if ch is None or (isinstance(challenge, Challenge) and challenge != ch):
            msg = why or "the challenge object differs from what its token says"
            return Redemption(False, None, (Reason("CHALLENGE_INVALID", msg, {}),))
        t = float(self.clock()) if now is None else float(now)
        if ch.expired(t):
            return Redemption(
                False,
                ch,
                (
                    Reason(
                        "CHALLENGE_TIMEOUT",
                        f"the challenge expired {t - ch.expires_at:.1f} s ago",
                        {"expires_at": ch.expires_at, "now": round(t, 3)},
                    ),
                ),
            )
        if ch.subject_tag is not None:
            given = self.subject_tag(subject) if subject is not None else None
            if given is None or not hmac.compare_digest(given, ch.subject_tag):
                return Redemption(
                    False,
                    ch,
                    (
                        Reason(
                            "CHALLENGE_SUBJECT_MISMATCH",
                            "the challenge was issued to another subject"
                            if given
                            else "the challenge is bound to a subject and none was given",
                            {"subject_given": given is not None},
                        ),
                    ),
                )
        if not self.registry.consume(ch.nonce, ch.expires_at):
            return Redemption(
                False,
                ch,
                (
                    Reason(
                        "NONCE_REUSED",
                        "this challenge was already used: each challenge is single-use",
                        {"nonce": ch.nonce},
                    ),
                ),
            )
        return Redemption(True, ch, ())


# --- attempt limiter --------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitStatus:
    """Where a subject stands with an :class:`AttemptLimiter`.

    ``allowed`` is false while the subject is locked; ``failures`` counts the failures inside
    the current window; ``remaining`` how many more failures lock it; ``locked_until`` and
    ``retry_after`` (seconds) are set while locked. ``reasons`` holds
    ``ATTEMPTS_LOCKED`` while locked.
    """

    allowed: bool
    failures: int
    remaining: int
    locked_until: float | None = None
    retry_after: float | None = None
    reasons: tuple[Reason, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "allowed": self.allowed,
            "failures": self.failures,
            "remaining": self.remaining,
            "locked_until": self.locked_until,
            "retry_after": None if self.retry_after is None else round(self.retry_after, 3),
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass
class _Track:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float | None = None


class AttemptLimiter:
    """Per-subject failure limiter: ``max_failures`` within ``window`` s lock for ``lockout`` s.

    Defaults: 5 failures in 180 s lock the subject for 1800 s. Failures older than the window
    drop out; while locked, further attempts are refused (:meth:`check` says so) and further
    failures do not extend the lock; when the lock ends the subject starts afresh. A success
    (:meth:`record_success`) clears the subject's failures. Thread-safe. ``clock`` (default
    :func:`time.monotonic`) is injectable for tests. Subjects are stored only as keyed hashes
    (a per-instance random key unless ``secret`` is given).

    >>> t = [0.0]
    >>> lim = AttemptLimiter(max_failures=2, window=60, lockout=300, clock=lambda: t[0])
    >>> _ = lim.record_failure("applicant-1"); lim.record_failure("applicant-1").allowed
    False
    >>> t[0] = 301.0; lim.check("applicant-1").allowed
    True
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 180.0,
        lockout: float = 1800.0,
        *,
        clock: Clock = time.monotonic,
        secret: bytes | bytearray | str | None = None,
    ) -> None:
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
            raise ConfigError(f"max_failures must be a positive integer, got {max_failures!r}")
        self.max_failures = max_failures
        self.window = _positive(window, "window")
        self.lockout = _positive(lockout, "lockout")
        self._clock = clock
        self._key = (
            _secret_bytes(secret, "secret") if secret is not None else secrets.token_bytes(32)
        )
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._ops = 0

    def __repr__(self) -> str:
        return (
            f"AttemptLimiter(max_failures={self.max_failures}, window={self.window}, "
            f"lockout={self.lockout})"
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._tracks)

    def _k(self, subject: str) -> str:
        if not isinstance(subject, str) or not subject:
            raise ConfigError("subject must be a non-empty string")
        return hmac.new(self._key, subject.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _refresh(self, tr: _Track, now: float) -> None:
        if tr.locked_until is not None and now >= tr.locked_until:
            tr.locked_until = None
            tr.failures.clear()
        while tr.failures and tr.failures[0] <= now - self.window:
            tr.failures.popleft()

    def _status(self, tr: _Track | None, now: float) -> LimitStatus:
        if tr is None:
            return LimitStatus(True, 0, self.max_failures)
        if tr.locked_until is not None:
            wait = tr.locked_until - now
            return LimitStatus(
                False,
                len(tr.failures),
                0,
                tr.locked_until,
                wait,
                (
                    Reason(
                        "ATTEMPTS_LOCKED",
                        f"too many failed attempts: locked for another {wait:.0f} s",
                        {
                            "failures": len(tr.failures),
                            "max_failures": self.max_failures,
                            "window_s": self.window,
                            "lockout_s": self.lockout,
                            "retry_after_s": round(wait, 3),
                        },
                    ),
                ),
            )
        n = len(tr.failures)
        return LimitStatus(True, n, max(self.max_failures - n, 0))

    def _maybe_purge(self, now: float) -> None:
        self._ops += 1
        if self._ops % 1024:
            return
        for key in list(self._tracks):
            tr = self._tracks[key]
            self._refresh(tr, now)
            if tr.locked_until is None and not tr.failures:
                del self._tracks[key]

    def check(self, subject: str) -> LimitStatus:
        """Whether ``subject`` may make an attempt now (records nothing)."""
        key = self._k(subject)
        with self._lock:
            now = float(self._clock())
            tr = self._tracks.get(key)
            if tr is not None:
                self._refresh(tr, now)
            return self._status(tr, now)

    def record_failure(self, subject: str) -> LimitStatus:
        """Count a failed attempt; returns the status after it (locked on the last allowed)."""
        key = self._k(subject)
        with self._lock:
            now = float(self._clock())
            self._maybe_purge(now)
            tr = self._tracks.setdefault(key, _Track())
            self._refresh(tr, now)
            if tr.locked_until is None:
                tr.failures.append(now)
                if len(tr.failures) >= self.max_failures:
                    tr.locked_until = now + self.lockout
            return self._status(tr, now)

    def record_success(self, subject: str) -> LimitStatus:
        """Clear the subject's failures (a lock in force stays); returns the status."""
        key = self._k(subject)
        with self._lock:
            now = float(self._clock())
            tr = self._tracks.get(key)
            if tr is None:
                return self._status(None, now)
            self._refresh(tr, now)
            if tr.locked_until is None:
                del self._tracks[key]
                return self._status(None, now)
            return self._status(tr, now)

    def record(self, subject: str, passed: bool) -> LimitStatus:
        """:meth:`record_success` when ``passed`` else :meth:`record_failure`."""
        return self.record_success(subject) if passed else self.record_failure(subject)

    def reset(self, subject: str) -> None:
        """Forget everything about ``subject`` (lock included), e.g. after a manual review."""
        key = self._k(subject)
        with self._lock:
            self._tracks.pop(key, None)
