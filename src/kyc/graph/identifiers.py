"""Identifier normalisation and keyed hashing: the only door through which raw identifiers pass.

Every identifier on an application (national id, device id, phone, ip, address, bank card,
email) is first *normalised* so that the same real-world identifier written two ways gives
the same string, then *hashed* with HMAC-SHA256 under a deployment secret. Only the resulting
tokens (``"phone:3f2a..."``) are stored, exported, logged or compared. Without the secret a
token cannot be reversed or recomputed from a guessed phone number.

Normalisation rules (per :class:`IdKind`):

==========  ==================================================================================
kind        rule
==========  ==================================================================================
applicant   Unicode NFKC, strip, upper-case, remove all whitespace and dashes
            (``"ab-123 456"`` -> ``"AB123456"``)
device      NFKC, strip, casefold
phone       parsed with :mod:`phonenumbers` against ``default_region`` (numbers without a
            ``+country`` prefix are read as national numbers of that region), must be a valid
            number for its region (``phone_check="valid"``, the default) or only a possible
            length (``phone_check="possible"``); formatted as E.164 (``"+14155552671"``);
            extensions are dropped
email       NFKC, strip, lower-case; exactly one ``@`` with a non-empty local part and a
            domain holding a dot; ``+tag`` sub-addresses are removed for every domain
            (``"a.b+promo@x.org"`` -> ``"a.b@x.org"``); for ``gmail.com``/``googlemail.com`` the
            dots of the local part are removed too and the domain becomes ``gmail.com``
address     NFKC, diacritics on Latin letters removed (``"Müller"`` -> ``"muller"``), casefold,
            punctuation to spaces, ``#`` read as a unit marker, common words abbreviated the
            USPS way (street -> st, road -> rd, avenue -> ave, apartment/apt/unit/suite/# ->
            unit, north -> n, ...), whitespace collapsed
ip          :mod:`ipaddress`; brackets and an IPv6 zone (``%eth0``) removed; IPv4-mapped IPv6
            (``::ffff:1.2.3.4``) becomes the IPv4 address; canonical compressed text form
card        digits only (spaces and dashes removed), 12-19 digits; the full PAN only ever
            enters the HMAC; a Luhn failure is ignored, warned about or refused
            (``card_luhn``)
==========  ==================================================================================

Tokens are ``f"{kind}:{hmac_sha256(secret, kind + '\\x00' + normalised).hexdigest()[:32]}"``:
the kind prefix keeps token spaces apart (a phone and a device id with the same digits never
collide) and tells a reader what the token stands for.

Own phones and emergency-contact phones share the *phone* token space, so a contact phone that
is another applicant's own phone links the two; the :class:`Role` of a link says which it was.

How much one shared identifier says about two applicants being connected is in
:data:`ROLE_STRENGTH` / :data:`ROLE_WEIGHT` (the graph's evidence table):

=========  ========  ======  =================================================================
role       strength  weight  why
=========  ========  ======  =================================================================
applicant  strong    1.0     the national id number itself
device     strong    1.0     one handset / browser fingerprint; families share a few
card       strong    1.0     a bank card is issued to one person
phone      medium    0.75    own phone: usually one person, but recycled and shared in families
email      medium    0.75    cheap to create, but rarely shared by unrelated people
contact    weak      0.5     an emergency contact names somebody else by design
ip         weak      0.5     carrier NAT, offices and public Wi-Fi put many people on one ip
address    weak      0.5     flats, dormitories and offices hold many people
=========  ========  ======  =================================================================

A pair of applicants has "enough shared evidence" when the weights of the distinct identifiers
they share add up to at least :data:`LINK_EVIDENCE_THRESHOLD` (1.0): one strong identifier, a
phone with any other identifier, or two weak ones. The graph may damp these weights further by
rarity.

Raw values never appear in messages, ``repr`` or logs: an :class:`~kyc.errors.InvalidRecord`
names the field and what is wrong with it, not the value.

>>> h = IdentifierHasher(b"0123456789abcdef-example-secret")
>>> h.normalise(IdKind.PHONE, "(415) 555-2671")
'+14155552671'
>>> h.token("phone", "+1 415 555 2671") == h.token(IdKind.PHONE, "415.555.2671")
True
>>> h.token(IdKind.PHONE, "4155552671")[:6]
'phone:'
>>> h.normalise(IdKind.EMAIL, " John.Smith+loans@GoogleMail.com ")
'johnsmith@gmail.com'
>>> h.normalise(IdKind.ADDRESS, "12 Baker Street, Apt. #4")
'12 baker st unit 4'
>>> h.normalise(IdKind.IP, "::ffff:192.0.2.1")
'192.0.2.1'
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import unicodedata
import warnings
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Final, Literal

from kyc.errors import ConfigError, InvalidRecord

__all__ = [
    "ENV_SECRET",
    "LINK_EVIDENCE_THRESHOLD",
    "MIN_SECRET_BYTES",
    "ROLE_KIND",
    "ROLE_STRENGTH",
    "ROLE_WEIGHT",
    "TOKEN_HEX",
    "IdKind",
    "IdentifierHasher",
    "Role",
    "Strength",
    "hasher_from_env",
    "luhn_ok",
    "token_kind",
]

#: Minimum length of the deployment secret in bytes.
MIN_SECRET_BYTES: Final = 16
#: Environment variable read by :func:`hasher_from_env`.
ENV_SECRET: Final = "KYC_HMAC_SECRET"
#: Hex characters of the HMAC kept in a token (128 bits).
TOKEN_HEX: Final = 32


class IdKind(str, Enum):
    """Kinds of identifier; each kind has its own normalisation and token space."""

    APPLICANT = "applicant"
    DEVICE = "device"
    PHONE = "phone"
    IP = "ip"
    ADDRESS = "address"
    CARD = "card"
    EMAIL = "email"


class Role(str, Enum):
    """What an identifier is *for* on an application (``CONTACT`` is a phone of somebody else)."""

    APPLICANT = "applicant"
    DEVICE = "device"
    PHONE = "phone"
    CONTACT = "contact"
    IP = "ip"
    ADDRESS = "address"
    CARD = "card"
    EMAIL = "email"

    @property
    def kind(self) -> IdKind:
        """The token space of this role (``CONTACT`` -> ``PHONE``)."""
        return ROLE_KIND[self]


class Strength(str, Enum):
    """How much one shared identifier of a role says about two applicants being connected."""

    STRONG = "strong"
    MEDIUM = "medium"
    WEAK = "weak"


#: Role -> the token space it hashes into.
ROLE_KIND: Final[Mapping[Role, IdKind]] = MappingProxyType(
    {
        Role.APPLICANT: IdKind.APPLICANT,
        Role.DEVICE: IdKind.DEVICE,
        Role.PHONE: IdKind.PHONE,
        Role.CONTACT: IdKind.PHONE,
        Role.IP: IdKind.IP,
        Role.ADDRESS: IdKind.ADDRESS,
        Role.CARD: IdKind.CARD,
        Role.EMAIL: IdKind.EMAIL,
    }
)

#: Role -> evidence strength (see the module docstring for the reasoning).
ROLE_STRENGTH: Final[Mapping[Role, Strength]] = MappingProxyType(
    {
        Role.APPLICANT: Strength.STRONG,
        Role.DEVICE: Strength.STRONG,
        Role.CARD: Strength.STRONG,
        Role.PHONE: Strength.MEDIUM,
        Role.EMAIL: Strength.MEDIUM,
        Role.CONTACT: Strength.WEAK,
        Role.IP: Strength.WEAK,
        Role.ADDRESS: Strength.WEAK,
    }
)

_STRENGTH_WEIGHT: Final[Mapping[Strength, float]] = MappingProxyType(
    {Strength.STRONG: 1.0, Strength.MEDIUM: 0.75, Strength.WEAK: 0.5}
)

#: Role -> evidence weight of one shared identifier of that role (before rarity damping).
ROLE_WEIGHT: Final[Mapping[Role, float]] = MappingProxyType(
    {role: _STRENGTH_WEIGHT[s] for role, s in ROLE_STRENGTH.items()}
)

#: Summed weight of shared identifiers from which two applicants count as linked.
LINK_EVIDENCE_THRESHOLD: Final = 1.0

_MAX_RAW_CHARS: Final = 1024

# --- normalisation helpers ----------------------------------------------------------------

_DASHES_AND_SPACES = re.compile(r"[\s\u00ad\u2010-\u2015\u2212\ufe58\ufe63\uff0d-]+")
_WS = re.compile(r"\s+")

# USPS Publication 28 style abbreviations (suffixes, unit designators, directions).
_ADDRESS_WORDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "street": "st",
        "str": "st",
        "strasse": "st",
        "saint": "st",
        "road": "rd",
        "avenue": "ave",
        "av": "ave",
        "boulevard": "blvd",
        "drive": "dr",
        "lane": "ln",
        "court": "ct",
        "place": "pl",
        "square": "sq",
        "terrace": "ter",
        "circle": "cir",
        "highway": "hwy",
        "parkway": "pkwy",
        "crescent": "cres",
        "close": "cl",
        "mount": "mt",
        "building": "bldg",
        "floor": "fl",
        "apartment": "unit",
        "apt": "unit",
        "suite": "unit",
        "ste": "unit",
        "flat": "unit",
        "#": "unit",
        "number": "no",
        "north": "n",
        "south": "s",
        "east": "e",
        "west": "w",
        "northeast": "ne",
        "northwest": "nw",
        "southeast": "se",
        "southwest": "sw",
    }
)

_GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})


def _nfkc(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw)


def _strip_latin_diacritics(text: str) -> str:
    """Drop combining marks following an ASCII letter (``é`` -> ``e``); other scripts keep them."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch) and out and out[-1].isascii() and out[-1].isalpha():
            continue
        out.append(ch)
    return unicodedata.normalize("NFKC", "".join(out))


def luhn_ok(digits: str) -> bool:
    """Return whether a string of digits passes the Luhn (mod 10) check used by card numbers.

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def token_kind(token: str) -> IdKind:
    """Return the :class:`IdKind` a token belongs to (its prefix); ``ValueError`` if none.

    >>> token_kind("device:00112233445566778899aabbccddeeff")
    <IdKind.DEVICE: 'device'>
    """
    prefix, sep, _ = token.partition(":")
    if not sep:
        raise ValueError("not a kyc identifier token (no kind prefix)")
    return IdKind(prefix)


def _as_kind(kind: IdKind | Role | str) -> IdKind:
    if isinstance(kind, IdKind):
        return kind
    if isinstance(kind, Role):
        return kind.kind
    try:
        return IdKind(kind)
    except ValueError:
        try:
            return Role(kind).kind
        except ValueError:
            names = ", ".join(k.value for k in IdKind)
            raise ConfigError(
                f"unknown identifier kind {kind!r}; expected one of {names}"
            ) from None


class IdentifierHasher:
    """Normalise raw identifiers and turn them into keyed tokens.

    ``secret``: the deployment secret (bytes, or str encoded as UTF-8), at least
    :data:`MIN_SECRET_BYTES` bytes; keep it out of the code and the store (see
    :func:`hasher_from_env`). ``default_region``: ISO 3166 region used to read phone numbers
    written without a ``+country`` prefix. ``phone_check``: ``"valid"`` (the number must exist
    in the numbering plan) or ``"possible"`` (only its length is checked). ``card_luhn``:
    what to do with a card number failing the Luhn check (``"ignore"``, ``"warn"`` or
    ``"error"``).

    The object is immutable and thread-safe; ``repr`` never shows the secret.
    """

    __slots__ = ("_card_luhn", "_key", "_phone_check", "_region")

    def __init__(
        self,
        secret: bytes | str,
        *,
        default_region: str = "US",
        phone_check: Literal["valid", "possible"] = "valid",
        card_luhn: Literal["ignore", "warn", "error"] = "ignore",
    ) -> None:
        if isinstance(secret, str):
            key = secret.encode("utf-8")
        elif isinstance(secret, bytes | bytearray | memoryview):
            key = bytes(secret)
        else:
            raise ConfigError(f"HMAC secret must be bytes or str, not {type(secret).__name__}")
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"HMAC secret is {len(key)} bytes; at least {MIN_SECRET_BYTES} are required "
                "(use e.g. secrets.token_bytes(32))"
            )
        region = str(default_region).strip().upper()
        import phonenumbers

        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"unknown default phone region {default_region!r}")
        if phone_check not in ("valid", "possible"):
            raise ConfigError(f"phone_check must be 'valid' or 'possible', not {phone_check!r}")
        if card_luhn not in ("ignore", "warn", "error"):
            raise ConfigError(f"card_luhn must be 'ignore', 'warn' or 'error', not {card_luhn!r}")
        self._key = key
        self._region = region
        self._phone_check = phone_check
        self._card_luhn = card_luhn

    @property
    def default_region(self) -> str:
        """Region used for phone numbers without a country prefix."""
        return self._region

    def __repr__(self) -> str:
        return (
            f"IdentifierHasher(secret=<{len(self._key)} bytes hidden>, "
            f"default_region={self._region!r}, phone_check={self._phone_check!r}, "
            f"card_luhn={self._card_luhn!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling carries the secret on purpose (worker processes need it); repr never does.
        return (
            _rebuild_hasher,
            (self._key, self._region, self._phone_check, self._card_luhn),
        )

    # -- normalisation ---------------------------------------------------------------------

    def normalise(self, kind: IdKind | Role | str, raw: str) -> str:
        """Return the canonical form of ``raw`` for ``kind``.

        Raises :class:`~kyc.errors.InvalidRecord` (``field`` = the kind) when the value is
        empty, not a string, too long, or not a valid identifier of that kind. The message
        never repeats the value.
        """
        k = _as_kind(kind)
        field = k.value
        if not isinstance(raw, str):
            raise InvalidRecord(f"{field} must be a string, not {type(raw).__name__}", field=field)
        if len(raw) > _MAX_RAW_CHARS:
            raise InvalidRecord(
                f"{field} is {len(raw)} characters long; the limit is {_MAX_RAW_CHARS}",
                field=field,
            )
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate (e.g. from JSON "\\ud800"): not text, never echoed
            raise InvalidRecord(
                f"{field} is not valid Unicode text (it holds a lone surrogate)", field=field
            ) from None
        text = _nfkc(raw).strip()
        if not text:
            raise InvalidRecord(f"{field} is empty", field=field)
        if k is IdKind.PHONE:
            return self._phone(text)
        if k is IdKind.EMAIL:
            return _email(text)
        if k is IdKind.ADDRESS:
            return _address(text)
        if k is IdKind.IP:
            return _ip(text)
        if k is IdKind.CARD:
            return self._card(text)
        if k is IdKind.DEVICE:
            return text.casefold()
        # applicant
        out = _DASHES_AND_SPACES.sub("", text).upper()
        if not out:
            raise InvalidRecord("applicant id holds only spaces and dashes", field=field)
        return out

    def _phone(self, text: str) -> str:
        import phonenumbers

        try:
            number = phonenumbers.parse(text, self._region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidRecord(
                f"phone number cannot be parsed (default region {self._region}): "
                f"{_phone_reason(exc)}",
                field="phone",
            ) from None
        ok = (
            phonenumbers.is_valid_number(number)
            if self._phone_check == "valid"
            else phonenumbers.is_possible_number(number)
        )
        if not ok:
            what = "valid" if self._phone_check == "valid" else "possible"
            raise InvalidRecord(
                f"phone number is not a {what} number (country code +{number.country_code}, "
                f"default region {self._region})",
                field="phone",
            )
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    def _card(self, text: str) -> str:
        digits = _DASHES_AND_SPACES.sub("", text)
        if not digits.isascii() or not digits.isdigit():
            raise InvalidRecord(
                "card number may hold only digits, spaces and dashes", field="card"
            )
        if not 12 <= len(digits) <= 19:
            raise InvalidRecord(
                f"card number has {len(digits)} digits; 12 to 19 expected", field="card"
            )
        if self._card_luhn != "ignore" and not luhn_ok(digits):
            if self._card_luhn == "error":
                raise InvalidRecord("card number fails the Luhn check", field="card")
            warnings.warn("card number fails the Luhn check", UserWarning, stacklevel=4)
        return digits

    # -- tokens ----------------------------------------------------------------------------

    def token_normalised(self, kind: IdKind | Role | str, normalised: str) -> str:
        """Token of an already normalised value (no normalisation applied)."""
        k = _as_kind(kind).value
        try:
            data = f"{k}\x00{normalised}".encode()
        except UnicodeEncodeError:
            raise InvalidRecord(
                f"{k} is not valid Unicode text (it holds a lone surrogate)", field=k
            ) from None
        mac = hmac.new(self._key, data, hashlib.sha256)
        return f"{k}:{mac.hexdigest()[:TOKEN_HEX]}"

    def token(self, kind: IdKind | Role | str, raw: str) -> str:
        """Normalise ``raw`` and return its token, e.g. ``"phone:" + 32 hex characters``.

        ``kind`` may be an :class:`IdKind`, a :class:`Role` (``CONTACT`` hashes as a phone) or
        their string values. Raises :class:`~kyc.errors.InvalidRecord` like
        :meth:`normalise`.
        """
        k = _as_kind(kind)
        return self.token_normalised(k, self.normalise(k, raw))


def _rebuild_hasher(
    key: bytes, region: str, phone_check: Literal["valid", "possible"],
    card_luhn: Literal["ignore", "warn", "error"],
) -> IdentifierHasher:
    return IdentifierHasher(key, default_region=region, phone_check=phone_check,
                            card_luhn=card_luhn)


def _phone_reason(exc: Exception) -> str:
    # NumberParseException's text is a fixed sentence about the shape, never the number.
    msg = getattr(exc, "_msg", None)
    return str(msg) if msg else "not a phone number"


def _email(text: str) -> str:
    text = text.lower()
    if text.count("@") != 1:
        raise InvalidRecord("email must hold exactly one '@'", field="email")
    local, domain = text.split("@")
    local = local.strip()
    domain = domain.strip().rstrip(".")
    if _WS.search(local) or _WS.search(domain):
        raise InvalidRecord("email may not contain whitespace", field="email")
    local = local.split("+", 1)[0]
    if not local:
        raise InvalidRecord("email has an empty local part", field="email")
    if "." not in domain or domain.startswith(".") or ".." in domain:
        raise InvalidRecord("email domain is not a domain name", field="email")
    if domain in _GMAIL_DOMAINS:
        domain = "gmail.com"
        local = local.replace(".", "")
        if not local:
            raise InvalidRecord("email has an empty local part", field="email")
    return f"{local}@{domain}"


def _address(text: str) -> str:
    text = _strip_latin_diacritics(text).casefold()
    # punctuation, symbols and controls become spaces; letters, combining marks (Indic vowel
    # signs, ...) and digits stay; "#" is kept as its own word (a unit marker)
    text = "".join(
        " # " if ch == "#" else (" " if unicodedata.category(ch)[0] in "PSZC" else ch)
        for ch in text
    )
    words: list[str] = []
    for w in text.split():
        w = _ADDRESS_WORDS.get(w, w)
        if w == "unit" and words and words[-1] == "unit":
            continue  # "Apt #4" -> "unit 4", not "unit unit 4"
        words.append(w)
    out = " ".join(words)
    if not out:
        raise InvalidRecord("address holds no letters or digits", field="address")
    return out


def _ip(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidRecord("ip is not an IPv4 or IPv6 address", field="ip") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def hasher_from_env(
    *,
    var: str = ENV_SECRET,
    default_region: str = "US",
    phone_check: Literal["valid", "possible"] = "valid",
    card_luhn: Literal["ignore", "warn", "error"] = "ignore",
) -> IdentifierHasher:
    """Build an :class:`IdentifierHasher` from the secret in environment variable ``var``.

    Raises :class:`~kyc.errors.ConfigError` when the variable is unset or too short. The
    value is taken as UTF-8 text; a ``hex:`` prefix marks a hex-encoded secret
    (``KYC_HMAC_SECRET=hex:8f3a...``).
    """
    value = os.environ.get(var)
    if not value:
        raise ConfigError(
            f"environment variable {var} is not set; it must hold the deployment HMAC secret "
            f"(at least {MIN_SECRET_BYTES} bytes)"
        )
    secret: bytes | str = value
    if value.startswith("hex:"):
        try:
            secret = bytes.fromhex(value[4:])
        except ValueError:
            raise ConfigError(f"environment variable {var} has a 'hex:' prefix but is not hex") \
                from None
    return IdentifierHasher(
        secret, default_region=default_region, phone_check=phone_check, card_luhn=card_luhn
    )
