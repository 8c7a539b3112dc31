"""Tests for kyc.liveness.challenge: issuing, signing, redeeming, nonces, attempt limits."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kyc.errors import ConfigError
from kyc.liveness.challenge import (
    DEFAULT_STEP_TIMEOUT_MS,
    AttemptLimiter,
    Challenge,
    ChallengeIssuer,
    LimitStatus,
    MemoryNonceRegistry,
    Move,
    NonceRegistry,
)

SECRET = b"test deployment secret, 32 bytes"


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _payload(token: str) -> dict[str, object]:
    body = token.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert isinstance(data, dict)
    return data


# --- issuing ----------------------------------------------------------------------------------


def test_random_challenge_draws_distinct_consecutive_moves_from_the_pool() -> None:
    issuer = ChallengeIssuer(SECRET, rng=random.Random(1), n_steps=4)
    seen: set[Move] = set()
    for _ in range(200):
        ch = issuer.issue()
        moves = ch.moves
        assert len(moves) == 4
        assert all(a != b for a, b in itertools.pairwise(moves))
        assert moves.count(Move.READ_DIGITS) <= 1
        seen.update(moves)
    assert seen == set(Move)


def test_read_digits_step_has_four_random_digits_and_a_prompt() -> None:
    issuer = ChallengeIssuer(SECRET, rng=random.Random(3))
    digits = {issuer.issue(moves=["read_digits"]).steps[0].digits for _ in range(50)}
    assert all(d is not None and len(d) == 4 and d.isdigit() for d in digits)
    assert len(digits) > 40  # random, not fixed
    step = issuer.issue(moves=["read_digits"]).steps[0]
    assert step.digits is not None and step.digits in step.prompt
    assert step.timeout_ms == DEFAULT_STEP_TIMEOUT_MS[Move.READ_DIGITS]


def test_nonces_are_unique_and_unpredictable_even_with_a_seeded_rng() -> None:
    a = ChallengeIssuer(SECRET, rng=random.Random(0))
    b = ChallengeIssuer(SECRET, rng=random.Random(0))
    ca, cb = a.issue(), b.issue()
    assert ca.moves == cb.moves  # the seeded rng fixes the moves...
    assert ca.nonce != cb.nonce  # ...but never the nonce
    nonces = {a.issue().nonce for _ in range(500)}
    assert len(nonces) == 500 and all(len(n) >= 20 for n in nonces)


def test_expiry_is_issue_time_plus_ttl() -> None:
    clock = Clock(5000.0)
    ch = ChallengeIssuer(SECRET, ttl=45.0, clock=clock).issue(moves=["blink"])
    assert ch.issued_at == 5000.0 and ch.expires_at == 5045.0
    assert not ch.expired(5044.9) and ch.expired(5045.0)


def test_to_dict_is_plain_json_with_prompts() -> None:
    ch = ChallengeIssuer(SECRET).issue(moves=["turn_left", "read_digits"])
    d = json.loads(json.dumps(ch.to_dict()))
    assert [s["move"] for s in d["steps"]] == ["turn_left", "read_digits"]
    assert d["steps"][0]["prompt"] == "Turn your head to your left"
    assert d["token"] == ch.token


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"secret": b"short"}, "at least 16 bytes"),
        ({"secret": 12345}, "bytes or str"),
        ({"secret": SECRET, "ttl": 0}, "ttl"),
        ({"secret": SECRET, "ttl": float("nan")}, "ttl"),
        ({"secret": SECRET, "n_steps": 0}, "n_steps"),
        ({"secret": SECRET, "moves": ["jump"]}, "unknown move"),
        ({"secret": SECRET, "moves": ["blink"], "n_steps": 2}, "at least two moves"),
        ({"secret": SECRET, "step_timeout_ms": {"blink": -1}}, "step_timeout_ms"),
    ],
)
def test_bad_issuer_settings_raise_config_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ChallengeIssuer(**kwargs)  # type: ignore[arg-type]


def test_explicit_empty_or_unknown_moves_raise() -> None:
    issuer = ChallengeIssuer(SECRET)
    with pytest.raises(ConfigError):
        issuer.issue(moves=[])
    with pytest.raises(ConfigError, match="unknown move"):
        issuer.issue(moves=["wink"])


# --- redeeming --------------------------------------------------------------------------------


def test_redeem_accepts_once_then_reports_nonce_reused() -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue(moves=["blink"])
    first = issuer.redeem(ch.token)
    assert first.ok and first.challenge == ch and first.codes == ()
    second = issuer.redeem(ch)
    assert not second.ok and second.codes == ("NONCE_REUSED",)
    assert second.reasons[0].evidence["nonce"] == ch.nonce


def test_stateless_server_verifies_a_token_issued_by_another_instance() -> None:
    registry = MemoryNonceRegistry()
    issuer_a = ChallengeIssuer(SECRET, registry=registry)
    issuer_b = ChallengeIssuer(SECRET, registry=registry)  # another process, same secret
    ch = issuer_a.issue(moves=["turn_right", "blink"])
    red = issuer_b.redeem(ch.token)
    assert red.ok and red.challenge is not None and red.challenge.moves == ch.moves
    assert issuer_a.redeem(ch.token).codes == ("NONCE_REUSED",)


@pytest.mark.parametrize("how", ["flip_payload", "flip_signature", "other_secret", "garbage"])
def test_tampered_or_foreign_token_is_challenge_invalid(how: str) -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue(moves=["blink"])
    body, mac = ch.token.split(".")
    if how == "flip_payload":
        data = _payload(ch.token)
        data["s"] = [["turn_left", 5000, None]]  # swap the move, keep the signature
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + mac
    elif how == "flip_signature":
        token = body + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    elif how == "other_secret":
        token = ChallengeIssuer(b"another secret of enough length").issue().token
    else:
        token = "not-a-token"
    red = issuer.redeem(token)
    assert not red.ok and red.codes == ("CHALLENGE_INVALID",) and red.challenge is None
    assert issuer.verify(token) is None
    assert issuer.redeem(ch.token).ok  # the genuine one was not consumed


def test_edited_challenge_object_is_invalid() -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue(moves=["blink"])
    forged = dataclasses.replace(ch, expires_at=ch.expires_at + 3600)
    assert issuer.redeem(forged).codes == ("CHALLENGE_INVALID",)


def test_expired_challenge_times_out_without_consuming_the_nonce() -> None:
    clock = Clock()
    issuer = ChallengeIssuer(SECRET, ttl=30.0, clock=clock)
    ch = issuer.issue(moves=["blink"])
    clock.t += 31.0
    red = issuer.redeem(ch.token)
    assert not red.ok and red.codes == ("CHALLENGE_TIMEOUT",)
    assert red.reasons[0].evidence["expires_at"] == ch.expires_at
    assert issuer.redeem(ch.token, now=ch.expires_at - 1).ok  # still unused before expiry


def test_subject_binding_and_no_raw_subject_in_token() -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue("applicant-42", moves=["blink"])
    assert "applicant-42" not in json.dumps(_payload(ch.token))
    assert ch.subject_tag == issuer.subject_tag("applicant-42")
    assert issuer.redeem(ch.token).codes == ("CHALLENGE_SUBJECT_MISMATCH",)
    assert issuer.redeem(ch.token, subject="applicant-43").codes == ("CHALLENGE_SUBJECT_MISMATCH",)
    assert issuer.redeem(ch.token, subject="applicant-42").ok


def test_concurrent_redemptions_let_exactly_one_through() -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue(moves=["blink"])
    barrier = threading.Barrier(8)

    def go(_: int) -> bool:
        barrier.wait()
        return issuer.redeem(ch.token).ok

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(go, range(8)))
    assert results.count(True) == 1


def test_memory_registry_purges_expired_nonces() -> None:
    clock = Clock(100.0)
    reg = MemoryNonceRegistry(clock=clock)
    assert isinstance(reg, NonceRegistry)
    assert reg.consume("a", 110.0) and reg.consume("b", 200.0)
    assert not reg.consume("a", 110.0)
    assert len(reg) == 2
    clock.t = 150.0
    assert reg.purge() == 1 and len(reg) == 1
    clock.t = 250.0
    assert reg.consume("c", 300.0)  # consuming purges too
    assert len(reg) == 1


def test_redemption_to_dict_is_json() -> None:
    issuer = ChallengeIssuer(SECRET)
    ch = issuer.issue(moves=["open_mouth"])
    issuer.redeem(ch)
    d = json.loads(json.dumps(issuer.redeem(ch).to_dict()))
    assert d["ok"] is False and d["reasons"][0]["code"] == "NONCE_REUSED"


# --- attempt limiter ----------------------------------------------------------------------------


def test_limiter_locks_after_five_failures_in_three_minutes_and_unlocks_after_thirty() -> None:
    clock = Clock(0.0)
    lim = AttemptLimiter(clock=clock)
    for i in range(4):
        clock.t = i * 30.0
        st = lim.record_failure("applicant-1")
        assert st.allowed and st.failures == i + 1 and st.remaining == 4 - i
    clock.t = 150.0
    st = lim.record_failure("applicant-1")
    assert not st.allowed and st.locked_until == 150.0 + 1800.0
    assert st.reasons[0].code == "ATTEMPTS_LOCKED"
    clock.t = 150.0 + 1799.0
    st = lim.check("applicant-1")
    assert not st.allowed and st.retry_after == pytest.approx(1.0)
    lim.record_failure("applicant-1")  # failures while locked do not extend the lock
    clock.t = 150.0 + 1800.0
    st = lim.check("applicant-1")
    assert st.allowed and st.failures == 0 and st.remaining == 5
    assert lim.check("applicant-2").allowed  # other subjects unaffected


def test_limiter_forgets_failures_older_than_the_window() -> None:
    clock = Clock(0.0)
    lim = AttemptLimiter(clock=clock)
    for i in range(10):
        clock.t = i * 50.0  # 5 failures never fall within 180 s
        assert lim.record_failure("s").allowed
    assert lim.check("s").failures == 4  # t=300..450 are within (270, 450]


def test_limiter_success_clears_failures_but_not_a_lock() -> None:
    clock = Clock(0.0)
    lim = AttemptLimiter(max_failures=3, window=60, lockout=600, clock=clock)
    lim.record_failure("s")
    lim.record_failure("s")
    assert lim.record(subject="s", passed=True).failures == 0
    for _ in range(3):
        lim.record_failure("s")
    assert not lim.record_success("s").allowed
    lim.reset("s")
    assert lim.check("s").allowed


def test_limiter_is_configurable_and_validates() -> None:
    clock = Clock(0.0)
    lim = AttemptLimiter(max_failures=2, window=10.0, lockout=5.0, clock=clock)
    lim.record_failure("x")
    assert not lim.record_failure("x").allowed
    clock.t = 5.0
    assert lim.check("x").allowed
    for bad in ({"max_failures": 0}, {"window": -1}, {"lockout": float("inf")}):
        with pytest.raises(ConfigError):
            AttemptLimiter(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        lim.check("")


def test_limiter_is_thread_safe() -> None:
    lim = AttemptLimiter(max_failures=1000, window=3600, lockout=60)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: lim.record_failure("shared"), range(400)))
    st = lim.check("shared")
    assert st.failures == 400 and st.remaining == 600


def test_limiter_keeps_no_raw_subject_and_reports_json() -> None:
    lim = AttemptLimiter()
    st = lim.record_failure("+15551234567")
    assert "+15551234567" not in repr(lim.__dict__)
    assert isinstance(st, LimitStatus)
    assert json.loads(json.dumps(st.to_dict()))["failures"] == 1


def test_challenge_is_frozen() -> None:
    ch = ChallengeIssuer(SECRET).issue(moves=["blink"])
    assert isinstance(ch, Challenge)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ch.nonce = "x"  # type: ignore[misc]
