"""Identifier normalisation and keyed tokens (kyc.graph.identifiers)."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import re
import warnings

import pytest

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.identifiers import (
    LINK_EVIDENCE_THRESHOLD,
    ROLE_KIND,
    ROLE_STRENGTH,
    ROLE_WEIGHT,
    IdentifierHasher,
    IdKind,
    Role,
    Strength,
    hasher_from_env,
    luhn_ok,
    token_kind,
)

SECRET = b"unit-test-secret-0123456789"


@pytest.fixture()
def h() -> IdentifierHasher:
    return IdentifierHasher(SECRET, default_region="US")


# --- secret handling ----------------------------------------------------------------------


def test_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        IdentifierHasher(b"short")
    with pytest.raises(ConfigError):
        IdentifierHasher("15-characters!!")  # 15 bytes


def test_str_secret_equals_its_utf8_bytes() -> None:
    a = IdentifierHasher("sixteen-bytes-ok!!")
    b = IdentifierHasher(b"sixteen-bytes-ok!!")
    assert a.token(IdKind.DEVICE, "x") == b.token(IdKind.DEVICE, "x")


def test_non_text_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="bytes or str"):
        IdentifierHasher(12345678901234567890)  # type: ignore[arg-type]


def test_repr_hides_the_secret(h: IdentifierHasher) -> None:
    text = repr(h) + str(h)
    assert SECRET.decode() not in text
    assert "hidden" in text


def test_unknown_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="region"):
        IdentifierHasher(SECRET, default_region="XX")


def test_hasher_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYC_HMAC_SECRET", raising=False)
    with pytest.raises(ConfigError, match="KYC_HMAC_SECRET"):
        hasher_from_env()
    monkeypatch.setenv("KYC_HMAC_SECRET", SECRET.decode())
    assert hasher_from_env().token("device", "d1") == IdentifierHasher(SECRET).token("device", "d1")
    monkeypatch.setenv("KYC_HMAC_SECRET", "hex:" + SECRET.hex())
    assert hasher_from_env().token("device", "d1") == IdentifierHasher(SECRET).token("device", "d1")
    monkeypatch.setenv("KYC_HMAC_SECRET", "short")
    with pytest.raises(ConfigError):
        hasher_from_env()
    monkeypatch.setenv("KYC_HMAC_SECRET", "hex:zz")
    with pytest.raises(ConfigError, match="hex"):
        hasher_from_env()


def test_hasher_pickles_for_worker_processes(h: IdentifierHasher) -> None:
    clone = pickle.loads(pickle.dumps(h))
    assert clone.token(IdKind.PHONE, "4155552671") == h.token(IdKind.PHONE, "4155552671")


# --- token format -------------------------------------------------------------------------


def test_token_is_kind_prefix_and_truncated_hmac(h: IdentifierHasher) -> None:
    token = h.token(IdKind.PHONE, "(415) 555-2671")
    expected = hmac.new(SECRET, b"phone\x00+14155552671", hashlib.sha256).hexdigest()[:32]
    assert token == f"phone:{expected}"
    assert re.fullmatch(r"phone:[0-9a-f]{32}", token)
    assert token_kind(token) is IdKind.PHONE


def test_token_spaces_are_separate(h: IdentifierHasher) -> None:
    assert h.token(IdKind.DEVICE, "4155552671") != h.token(IdKind.APPLICANT, "4155552671")


def test_contact_role_hashes_into_phone_space(h: IdentifierHasher) -> None:
    assert ROLE_KIND[Role.CONTACT] is IdKind.PHONE
    assert Role.CONTACT.kind is IdKind.PHONE
    assert h.token(Role.CONTACT, "+1 415 555 2671") == h.token(IdKind.PHONE, "4155552671")
    assert h.token("contact", "4155552671") == h.token("phone", "4155552671")


def test_different_secrets_give_different_tokens(h: IdentifierHasher) -> None:
    other = IdentifierHasher(b"another-secret-0123456789")
    assert h.token("email", "a@b.org") != other.token("email", "a@b.org")


def test_unknown_kind_is_a_config_error(h: IdentifierHasher) -> None:
    with pytest.raises(ConfigError, match="unknown identifier kind"):
        h.token("passport", "X1")


def test_token_kind_rejects_non_tokens() -> None:
    with pytest.raises(ValueError):
        token_kind("no-prefix")


# --- phones -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["(415) 555-2671", "415.555.2671", "+1 415 555 2671", "1-415-555-2671", "４１５５５５２６７１",
     "+14155552671 ext. 12"],
)
def test_us_phone_forms_normalise_to_e164(h: IdentifierHasher, raw: str) -> None:
    assert h.normalise(IdKind.PHONE, raw) == "+14155552671"


def test_default_region_reads_national_numbers() -> None:
    gb = IdentifierHasher(SECRET, default_region="GB")
    assert gb.normalise("phone", "020 7946 0958") == "+442079460958"
    us = IdentifierHasher(SECRET, default_region="us")
    assert us.normalise("phone", "+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize("raw", ["12345", "not a phone", "+1 800 123 456", "   ", "+999 1234"])
def test_invalid_phone_is_an_invalid_record(h: IdentifierHasher, raw: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        h.normalise(IdKind.PHONE, raw)
    assert info.value.field == "phone"
    if raw.strip():
        assert raw.strip() not in info.value.message


def test_possible_phone_mode_is_looser() -> None:
    loose = IdentifierHasher(SECRET, phone_check="possible")
    strict = IdentifierHasher(SECRET)
    with pytest.raises(InvalidRecord):
        strict.normalise("phone", "+1 800 123 4567")  # 800-123 is not an assigned block
    assert loose.normalise("phone", "+1 800 123 4567") == "+18001234567"


# --- emails -------------------------------------------------------------------------------


def test_email_case_space_and_plus_tag(h: IdentifierHasher) -> None:
    assert h.normalise("email", "  Jane.Doe+Loans@Example.ORG ") == "jane.doe@example.org"
    assert h.token("email", "jane.doe@example.org") == h.token("email", "JANE.DOE+x@example.org")


def test_gmail_dots_and_googlemail(h: IdentifierHasher) -> None:
    assert h.normalise("email", "j.a.n.e+1@googlemail.com") == "jane@gmail.com"
    # dots are only dropped for gmail
    assert h.normalise("email", "j.a.n.e@example.com") == "j.a.n.e@example.com"


@pytest.mark.parametrize("raw", ["no-at-sign", "a@@b.com", "@b.com", "a@localhost", "a b@c.com",
                                 "+tag@x.org", "a@.com"])
def test_malformed_email_is_refused(h: IdentifierHasher, raw: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        h.normalise("email", raw)
    assert info.value.field == "email"


# --- addresses ----------------------------------------------------------------------------


def test_address_variants_agree(h: IdentifierHasher) -> None:
    forms = [
        "12 Baker Street, Apt. 4",
        "12  BAKER ST APT 4",
        "12 baker st. #4",
        "12 Baker Str., Apartment 4",
        "１２ Baker Street unit 4",
    ]
    norms = {h.normalise(IdKind.ADDRESS, f) for f in forms}
    assert norms == {"12 baker st unit 4"}


def test_address_diacritics_and_directions(h: IdentifierHasher) -> None:
    assert h.normalise("address", "5 Müllerstraße") == h.normalise("address", "5 Mullerstrasse")
    assert h.normalise("address", "1 North Main Road") == "1 n main rd"
    # non-Latin scripts keep their marks
    assert h.normalise("address", "मुंबई 5") == "मुंबई 5"


def test_address_of_only_punctuation_is_refused(h: IdentifierHasher) -> None:
    with pytest.raises(InvalidRecord) as info:
        h.normalise("address", " ,.; ")
    assert info.value.field == "address"


# --- ip -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:C000:0201", "192.0.2.1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_ip_normalisation(h: IdentifierHasher, raw: str, norm: str) -> None:
    assert h.normalise(IdKind.IP, raw) == norm


@pytest.mark.parametrize("raw", ["300.1.1.1", "1.2.3", "192.0.2.1:8080", "example.com"])
def test_bad_ip_is_refused(h: IdentifierHasher, raw: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        h.normalise(IdKind.IP, raw)
    assert info.value.field == "ip"


# --- cards --------------------------------------------------------------------------------


def test_card_digits_only(h: IdentifierHasher) -> None:
    assert h.normalise("card", "4111 1111-1111 1111") == "4111111111111111"
    assert h.token("card", "4111111111111111") == h.token("card", "4111 1111 1111 1111")


@pytest.mark.parametrize("raw", ["4111-xxxx-1111-1111", "1234", "1" * 20])
def test_bad_card_is_refused(h: IdentifierHasher, raw: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        h.normalise("card", raw)
    assert info.value.field == "card"
    assert raw not in info.value.message


def test_luhn_policy() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("41x1")
    bad = "4111111111111112"
    assert IdentifierHasher(SECRET).normalise("card", bad) == bad  # ignored by default
    with pytest.warns(UserWarning, match="Luhn") as record:
        IdentifierHasher(SECRET, card_luhn="warn").normalise("card", bad)
    assert all(bad not in str(w.message) for w in record)
    with pytest.raises(InvalidRecord, match="Luhn"):
        IdentifierHasher(SECRET, card_luhn="error").normalise("card", bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IdentifierHasher(SECRET, card_luhn="warn").normalise("card", "4111111111111111")


# --- device and applicant ids -------------------------------------------------------------


def test_device_id_strip_and_casefold(h: IdentifierHasher) -> None:
    assert h.normalise("device", "  ABC-123-def ") == "abc-123-def"


def test_applicant_id_upper_without_spaces_or_dashes(h: IdentifierHasher) -> None:
    assert h.normalise("applicant", " ab-123 456 ") == "AB123456"
    assert h.normalise("applicant", "ab\u2013123\u00a0456") == "AB123456"  # en dash, nbsp
    with pytest.raises(InvalidRecord) as info:
        h.normalise("applicant", " - - ")
    assert info.value.field == "applicant"


@pytest.mark.parametrize("kind", list(IdKind))
def test_empty_non_string_and_overlong_are_refused(h: IdentifierHasher, kind: IdKind) -> None:
    with pytest.raises(InvalidRecord):
        h.normalise(kind, "   ")
    with pytest.raises(InvalidRecord, match="string"):
        h.normalise(kind, 12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="limit"):
        h.normalise(kind, "1" * 2000)


# --- evidence table -----------------------------------------------------------------------


def test_evidence_table_is_complete_and_ordered() -> None:
    assert set(ROLE_STRENGTH) == set(Role) == set(ROLE_WEIGHT) == set(ROLE_KIND)
    for strong in (Role.DEVICE, Role.CARD, Role.APPLICANT):
        assert ROLE_STRENGTH[strong] is Strength.STRONG
        assert ROLE_WEIGHT[strong] >= LINK_EVIDENCE_THRESHOLD
    for weak in (Role.IP, Role.ADDRESS, Role.CONTACT):
        assert ROLE_STRENGTH[weak] is Strength.WEAK
        assert ROLE_WEIGHT[weak] < LINK_EVIDENCE_THRESHOLD
        # two weak identifiers together are enough
        assert 2 * ROLE_WEIGHT[weak] >= LINK_EVIDENCE_THRESHOLD
    assert ROLE_WEIGHT[Role.IP] < ROLE_WEIGHT[Role.PHONE] < ROLE_WEIGHT[Role.DEVICE]
