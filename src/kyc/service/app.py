"""The FastAPI application: :func:`create_app` and its :class:`ServiceConfig`.

Endpoints (JSON in and out; the schema is served at ``/openapi.json``):

=====================================================  ===========================================
``GET  /healthz``                                      liveness of the process (no auth)
``POST /v1/verify``                                    multipart ``id_image`` + ``selfie`` ->
                                                       :class:`~kyc.face.verify.MatchResult`
``POST /v1/liveness``                                  multipart ``image`` (+ ``face_box``) ->
                                                       :class:`~kyc.liveness.passive.LivenessResult`
``POST /v1/liveness/sessions``                         JSON ``{"subject"?}`` -> a signed challenge
                                                       (nonce, expiry, steps with prompts, token)
``POST /v1/liveness/sessions/{nonce}/frames``          multipart ``frame`` parts + ``timestamp_ms``
                                                       fields (one frame or a batch) -> progress
``POST /v1/liveness/sessions/{nonce}/finish``          -> the active-liveness verdict
``POST /v1/applications``                              JSON application record -> the applicant's
                                                       :class:`~kyc.graph.rings.RingReport`
``GET  /v1/applicants/{applicant_id}/report``          -> :class:`~kyc.graph.rings.RingReport`
``POST /v1/decision``                                  JSON result dicts, or multipart images +
                                                       ``application`` (+ ``session``) ->
                                                       :class:`~kyc.decision.Decision`
=====================================================  ===========================================

Protections, in the order a request meets them (a pure ASGI gate in front of FastAPI):

1. **Bearer-token auth** on everything but ``/healthz`` (``401`` + ``WWW-Authenticate``),
   tokens compared in constant time; the body is not read for a refused request.
2. **Per-token rate limit**: a token bucket (``rate_per_s`` refill, ``burst`` capacity);
   ``429`` with ``Retry-After`` (whole seconds).
3. **Body size limit**: a ``Content-Length`` above ``max_body_bytes`` is refused with ``413``
   before a byte of the body is read; a body without one (chunked) is counted as it streams
   and refused at the first chunk past the limit. Nothing is buffered beyond the limit.
4. **Images in memory only**: multipart bodies are parsed by the service itself with
   python-multipart's streaming parser into ``bytes`` (FastAPI/Starlette's ``UploadFile``
   spools parts over 1 MB to a temporary file, so it is not used), decoded with
   :func:`kyc.image.load_image` from memory (JPEG, PNG and WebP only), and dropped after the
   request. Nothing is written to disk.
5. **Errors** are JSON ``{"code", "message"}``: a :class:`~kyc.errors.KycError` keeps its
   ``code`` (bad input ``400``, :class:`~kyc.errors.NoFace` / ``MultipleFaces`` ``422``,
   model or store problems ``503``); service-level codes are ``UNAUTHORIZED``,
   ``RATE_LIMITED``, ``BODY_TOO_LARGE``, ``BAD_REQUEST``, ``NOT_FOUND``,
   ``METHOD_NOT_ALLOWED``, ``SESSION_FINISHED``, ``TOO_MANY_SESSIONS``, ``INTERNAL_ERROR``.
   Unexpected exceptions give ``500`` without details; only their type is logged.

Privacy: applicant identifiers are hashed (HMAC-SHA256 under the deployment secret) before
they are stored; responses carry tokens, never raw identifiers, and error messages about an
application have every raw value of that application masked. The access log (logger
``kyc.service``) records the route *template* (``/v1/applicants/{applicant_id}/report``), the
status, the time taken and a keyed hash of the API token, never the raw path or a token.
Run uvicorn with ``access_log=False`` (``kyc serve`` does) so its own access log, which
prints raw paths, stays off.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' parameter
# annotations at run time, and the endpoints are defined inside create_app().

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from kyc.errors import (
    ConfigError,
    InvalidImage,
    KycError,
    ModelError,
    MultipleFaces,
    NoFace,
    StoreError,
)

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from kyc.face.verify import FaceVerifier
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.liveness.active import ActiveLivenessResult, ActiveLivenessSession
    from kyc.liveness.challenge import Challenge, ChallengeIssuer
    from kyc.liveness.passive import PassiveLiveness
    from kyc.policy import Policy

__all__ = [
    "Form",
    "FormPart",
    "RateLimiter",
    "ServiceConfig",
    "ServiceProblem",
    "create_app",
    "error_status",
    "read_form",
    "read_json",
]

logger = logging.getLogger("kyc.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INSTALL_HINT = "the HTTP service needs its optional extra: pip install 'kyc[service]'"
_MIN_TOKEN = 16
_MIN_SECRET = 16
_PUBLIC_PATHS = frozenset({"/healthz"})
_UPLOAD_FORMATS = ("jpeg", "png", "webp")
_MAX_TEXT_FIELD = 256 * 1024
_MAX_HEADER_BYTES = 8 * 1024


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one service instance (validated on construction).

    Parameters:
        tokens: accepted bearer tokens (each at least 16 characters); at least one.
        secret: the deployment secret (bytes or str, at least 16 bytes): the HMAC key of the
            applicant graph, of challenge signatures and of the token hashes in logs.
        graph_store: SQLite path of the applicant graph; ``None`` or ``":memory:"`` keeps
            it in memory (lost on restart).
        max_body_bytes: largest request body accepted (default 16 MiB).
        rate_per_s, burst: per-token token bucket: ``burst`` requests at once, refilled at
            ``rate_per_s`` per second.
        workers: how many requests compute at once (models run in worker threads).
        max_parts: most multipart parts in one request (frames of a batch included).
        max_sessions: most active-liveness sessions open at once.
        max_session_frames: most frames one active-liveness session accepts.
        challenge_ttl_s: seconds an issued challenge stays valid.
        challenge_steps: moves per challenge; ``challenge_moves`` the moves drawn from
            (default: all of :class:`~kyc.liveness.challenge.Move`).
        mirrored: frames sent to active sessions are mirrored (selfie preview).
        pad_model_dir: folder of the built MiniFASNet ONNX files (default: the registry's
            search, ``$KYC_MODEL_DIR`` then the user cache).
        landmarker_model: path of MediaPipe's ``face_landmarker.task`` (default: registry).
        policy: decision policy file (default: the shipped policy).
        image_max_pixels: largest decoded image (header-declared width x height).
    """

    tokens: tuple[str, ...]
    secret: bytes | str
    graph_store: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    rate_per_s: float = 5.0
    burst: int = 20
    workers: int = 2
    max_parts: int = 400
    max_sessions: int = 32
    max_session_frames: int = 1800
    challenge_ttl_s: float = 120.0
    challenge_steps: int = 2
    challenge_moves: tuple[str, ...] | None = None
    mirrored: bool = False
    pad_model_dir: str | None = None
    landmarker_model: str | None = None
    policy: str | None = None
    image_max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        tokens = (self.tokens,) if isinstance(self.tokens, str) else tuple(self.tokens)
        if not tokens:
            raise ConfigError("the service needs at least one API token")
        for t in tokens:
            if not isinstance(t, str) or len(t.strip()) < _MIN_TOKEN:
                raise ConfigError(f"every API token must be at least {_MIN_TOKEN} characters")
            if any(c.isspace() for c in t) or not t.isprintable():
                raise ConfigError("API tokens may not contain whitespace or control characters")
        object.__setattr__(self, "tokens", tokens)
        key = self.secret.encode("utf-8") if isinstance(self.secret, str) else self.secret
        if not isinstance(key, bytes | bytearray) or len(key) < _MIN_SECRET:
            raise ConfigError(f"the deployment secret must be at least {_MIN_SECRET} bytes")
        object.__setattr__(self, "secret", bytes(key))
        for name in ("max_body_bytes", "burst", "workers", "max_parts", "max_sessions",
                     "max_session_frames", "challenge_steps", "image_max_pixels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("rate_per_s", "challenge_ttl_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if self.challenge_moves is not None:
            object.__setattr__(self, "challenge_moves", tuple(self.challenge_moves))

    @property
    def secret_bytes(self) -> bytes:
        """The secret as bytes."""
        s = self.secret
        return s if isinstance(s, bytes) else s.encode("utf-8")


# --- errors and JSON --------------------------------------------------------------------------


class ServiceProblem(Exception):
    """An HTTP-level refusal: ``status``, a stable ``code``, a ``message``, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, str]:
        """``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


class _BodyTooLarge(Exception):
    """Raised from the gate's ``receive`` when the streamed body passes the limit."""


def error_status(exc: KycError) -> int:
    """HTTP status for a library error: 503 model/store, 422 face policy, else 400."""
    if isinstance(exc, ModelError | StoreError):
        return 503
    if isinstance(exc, NoFace | MultipleFaces):
        return 422
    return 400


def _plain(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become ``None``, tuples lists, keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(_plain(payload), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


async def _send_json(
    send: Send, status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> None:
    body = _json_bytes(payload)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _mask(message: str, raw_values: Sequence[str]) -> str:
    """``message`` with every raw value (longest first) replaced by ``<redacted>``."""
    for v in sorted({v for v in raw_values if v}, key=len, reverse=True):
        message = message.replace(v, "<redacted>")
    return message


def _raw_strings(value: Any) -> list[str]:
    """Every string (and number as text) inside a JSON value, for masking."""
    out: list[str] = []
    if isinstance(value, str):
        out.append(value)
        out.extend(p for p in re.split(r"[|,]", value) if p.strip())
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int | float):
        out.append(str(value))
    elif isinstance(value, Mapping):
        for v in value.values():
            out.extend(_raw_strings(v))
    elif isinstance(value, list | tuple):
        for v in value:
            out.extend(_raw_strings(v))
    return [s for s in out if len(s.strip()) >= 3]


# --- rate limit -------------------------------------------------------------------------------


class RateLimiter:
    """Token buckets keyed by client: ``burst`` requests at once, ``rate`` per second after.

    :meth:`acquire` returns 0.0 when the request may go ahead (one token taken), else the
    seconds until a token is available. Thread-safe; ``clock`` is injectable.

    >>> t = [0.0]
    >>> lim = RateLimiter(rate=1.0, burst=2, clock=lambda: t[0])
    >>> lim.acquire("k"), lim.acquire("k"), lim.acquire("k")
    (0.0, 0.0, 1.0)
    >>> t[0] = 1.0; lim.acquire("k")
    0.0
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float:
        """Take one token for ``key``; 0.0 when allowed, else seconds to wait."""
        with self._lock:
            now = float(self._clock())
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


# --- request bodies ---------------------------------------------------------------------------


@dataclass
class FormPart:
    """One multipart part held in memory: field ``name``, ``filename``, ``data``."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


class Form:
    """The parts of a multipart body, by field name, in order."""

    def __init__(self, parts: Sequence[FormPart]) -> None:
        self.parts = list(parts)

    def all(self, name: str) -> list[FormPart]:
        """Every part named ``name``, in order."""
        return [p for p in self.parts if p.name == name]

    def file(self, name: str, *, required: bool = True) -> bytes | None:
        """The bytes of the single part ``name`` (``BAD_REQUEST`` if missing or repeated)."""
        got = self.all(name)
        if not got:
            if required:
                raise ServiceProblem(400, "BAD_REQUEST", f"multipart field {name!r} is missing")
            return None
        if len(got) > 1:
            raise ServiceProblem(400, "BAD_REQUEST", f"multipart field {name!r} is repeated")
        return got[0].data

    def text(self, name: str) -> str | None:
        """The text of the single part ``name`` (UTF-8), or ``None`` when absent."""
        data = self.file(name, required=False)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ServiceProblem(400, "BAD_REQUEST", f"field {name!r} is not UTF-8 text") from None


class _FormCollector:
    """python-multipart's streaming parser, collecting every part into memory."""

    def __init__(self, content_type: str, *, max_parts: int) -> None:
        from python_multipart import MultipartParser
        from python_multipart.multipart import parse_options_header

        ctype, params = parse_options_header(content_type or "")
        if ctype != b"multipart/form-data":
            raise ServiceProblem(
                400, "BAD_REQUEST", "expected a multipart/form-data body (Content-Type)"
            )
        boundary = params.get(b"boundary")
        if not boundary:
            raise ServiceProblem(400, "BAD_REQUEST", "the multipart Content-Type has no boundary")
        self._max_parts = max_parts
        self.parts: list[FormPart] = []
        self._data = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._header_bytes = 0
        self._name = ""
        self._filename: str | None = None
        self._ended = False
        self._parse_options = parse_options_header
        callbacks: Any = {
            "on_part_begin": self._begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _begin(self) -> None:
        if len(self.parts) >= self._max_parts:
            raise ServiceProblem(
                400, "BAD_REQUEST", f"too many multipart parts (limit {self._max_parts})"
            )
        self._data = bytearray()
        self._headers = {}
        self._header_bytes = 0
        self._name = ""
        self._filename = None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._filename is None and len(self._data) > _MAX_TEXT_FIELD:
            raise ServiceProblem(
                400, "BAD_REQUEST",
                f"text field {self._name!r} is longer than {_MAX_TEXT_FIELD} bytes",
            )

    def _part_end(self) -> None:
        ctype = self._headers.get(b"content-type")
        self.parts.append(
            FormPart(
                self._name,
                self._filename,
                ctype.decode("latin-1") if ctype else None,
                bytes(self._data),
            )
        )
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]
        self._count_header(end - start)

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise ServiceProblem(400, "BAD_REQUEST", "multipart part headers are too long")

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname = bytearray()
        self._hvalue = bytearray()

    def _headers_done(self) -> None:
        disp, opts = self._parse_options(self._headers.get(b"content-disposition", b""))
        if disp != b"form-data" or b"name" not in opts:
            raise ServiceProblem(
                400, "BAD_REQUEST", "a multipart part lacks Content-Disposition: form-data; name"
            )
        self._name = opts[b"name"].decode("utf-8", "replace")
        fn = opts.get(b"filename")
        self._filename = fn.decode("utf-8", "replace") if fn is not None else None

    def _end(self) -> None:
        self._ended = True

    def write(self, chunk: bytes) -> None:
        """Feed the next chunk of the body."""
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise ServiceProblem(400, "BAD_REQUEST", f"malformed multipart body: {exc}") from None

    def finish(self) -> Form:
        """End of body: the parts (``BAD_REQUEST`` when the closing boundary is missing)."""
        self._parser.finalize()
        if not self._ended:
            raise ServiceProblem(
                400, "BAD_REQUEST", "the multipart body ends before its closing boundary"
            )
        return Form(self.parts)


async def _body_chunks(request: Any, limit: int) -> AsyncIterator[bytes]:
    """The request body as it streams in, refused with 413 past ``limit`` bytes."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            if chunk:
                yield chunk
    except _BodyTooLarge:
        raise _too_large(limit) from None


def _too_large(limit: int) -> ServiceProblem:
    return ServiceProblem(
        413, "BODY_TOO_LARGE", f"the request body is larger than the limit of {limit} bytes",
        {"Connection": "close"},
    )


async def read_form(request: Any, limit: int, max_parts: int) -> Form:
    """Parse a multipart request body into memory (never to disk), at most ``limit`` bytes."""
    collector = _FormCollector(request.headers.get("content-type", ""), max_parts=max_parts)
    async for chunk in _body_chunks(request, limit):
        collector.write(chunk)
    return collector.finish()


async def read_json(request: Any, limit: int, *, optional: bool = False) -> Any:
    """Read and parse a JSON body of at most ``limit`` bytes (``None`` if empty and optional)."""
    buf = bytearray()
    async for chunk in _body_chunks(request, limit):
        buf += chunk
    if not buf.strip():
        if optional:
            return None
        raise ServiceProblem(400, "BAD_REQUEST", "the request body is empty; expected JSON")
    try:
        return json.loads(bytes(buf))
    except (UnicodeDecodeError, ValueError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise ServiceProblem(400, "BAD_REQUEST", f"the body is not valid JSON: {msg}") from None


# --- the ASGI gate: auth, rate limit, body size, access log -------------------------------------


class _Gate:
    """Pure ASGI middleware in front of FastAPI (see the module docstring for the order)."""

    def __init__(self, app: ASGIApp, services: "_Services") -> None:
        self.app = app
        self.services = services

    def _authenticate(self, scope: Scope) -> str | None:
        """The client key (keyed hash of its token), or ``None`` when not authenticated."""
        header = b""
        for k, v in scope.get("headers", ()):
            if k == b"authorization":
                header = v
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        given = token.strip()
        ok = False
        for t in self.services.token_bytes:  # compare with every token: constant time
            ok |= hmac.compare_digest(given, t)
        return self.services.client_key(given) if ok else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state: dict[str, Any] = {"status": 0, "started": False, "client": "-"}
        rid = secrets.token_hex(8)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode("ascii")))
                message["headers"] = headers
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper, state)
        except _BodyTooLarge:
            if not state["started"]:
                p = _too_large(self.services.config.max_body_bytes)
                await _send_json(send_wrapper, p.status, p.to_dict(), p.headers)
        except Exception as exc:  # never leak details (or raw values) of unexpected errors
            logger.error("request %s failed with %s", rid, type(exc).__name__)
            if not state["started"]:
                await _send_json(
                    send_wrapper, 500,
                    {"code": "INTERNAL_ERROR", "message": f"internal error (request {rid})"},
                )
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in _PUBLIC_PATHS else "<unmatched>"
            )
            logger.info(
                "%s %s -> %d in %.1f ms client=%s request=%s",
                scope.get("method", "?"), path, state["status"],
                (time.perf_counter() - t0) * 1000.0, state["client"], rid,
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]
    ) -> None:
        cfg = self.services.config
        if scope["path"] in _PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        client = self._authenticate(scope)
        if client is None:
            await _send_json(
                send, 401,
                {"code": "UNAUTHORIZED", "message": "a valid bearer token is required"},
                {"WWW-Authenticate": 'Bearer realm="kyc"', "Connection": "close"},
            )
            return
        state["client"] = client[:12]
        scope["kyc.client"] = client
        wait = self.services.limiter.acquire(client)
        if wait > 0:
            await _send_json(
                send, 429,
                {"code": "RATE_LIMITED",
                 "message": f"rate limit of {cfg.rate_per_s:g} requests/s (burst {cfg.burst}) "
                            f"reached; retry in {wait:.1f} s"},
                {"Retry-After": str(max(1, math.ceil(wait))), "Connection": "close"},
            )
            return
        length: int | None = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1
                if length < 0:
                    await _send_json(
                        send, 400,
                        {"code": "BAD_REQUEST", "message": "invalid Content-Length header"},
                        {"Connection": "close"},
                    )
                    return
        limit = cfg.max_body_bytes
        if length is not None and length > limit:
            p = _too_large(limit)
            await _send_json(send, p.status, p.to_dict(), p.headers)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, counting_receive, send)


# --- services: models, graph, challenges, sessions ----------------------------------------------


@dataclass
class _LiveSession:
    """One issued challenge and, once frames arrive, its ActiveLivenessSession."""

    challenge: "Challenge"
    owner: str
    subject: str | None
    session: "ActiveLivenessSession | None" = None
    result: "ActiveLivenessResult | None" = None
    frames: int = 0
    last_ts: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Services:
    """Everything the endpoints share; engines are created on first use, thread-safely."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        verifier: "FaceVerifier | None" = None,
        liveness: "PassiveLiveness | None" = None,
        graph: "FraudGraph | None" = None,
    ) -> None:
        self.config = config
        self.token_bytes = tuple(t.encode("utf-8") for t in config.tokens)
        self._log_key = hmac.new(
            config.secret_bytes, b"kyc/service/client", hashlib.sha256
        ).digest()
        self.limiter = RateLimiter(config.rate_per_s, config.burst)
        self._lock = threading.Lock()
        self._verifier = verifier
        self._liveness = liveness
        self._graph = graph
        self._owns_graph = graph is None
        self._issuer: ChallengeIssuer | None = None
        self._policy: Policy | None = None
        self.sessions: dict[str, _LiveSession] = {}
        self._sessions_lock = threading.Lock()
        self._compute: asyncio.Semaphore | None = None
        from kyc.image import ImageLimits

        self.image_limits: ImageLimits = ImageLimits(
            max_pixels=config.image_max_pixels,
            max_bytes=config.max_body_bytes,
            formats=_UPLOAD_FORMATS,
        )

    def client_key(self, token: bytes) -> str:
        """Keyed hash of an API token: what logs and rate limits see."""
        return hmac.new(self._log_key, token, hashlib.sha256).hexdigest()[:32]

    # engines ------------------------------------------------------------------------------

    def verifier(self) -> "FaceVerifier":
        """The shared :class:`~kyc.face.verify.FaceVerifier`."""
        with self._lock:
            if self._verifier is None:
                from kyc.face.verify import FaceVerifier

                self._verifier = FaceVerifier(image_limits=self.image_limits)
            return self._verifier

    def liveness(self) -> "PassiveLiveness":
        """The shared :class:`~kyc.liveness.passive.PassiveLiveness`."""
        with self._lock:
            if self._liveness is None:
                from kyc.liveness.passive import PassiveLiveness

                self._liveness = PassiveLiveness(model_dir=self.config.pad_model_dir)
            return self._liveness

    def graph(self) -> "FraudGraph":
        """The shared :class:`~kyc.graph.fraudgraph.FraudGraph`."""
        with self._lock:
            if self._graph is None:
                from kyc.graph.fraudgraph import FraudGraph

                store = self.config.graph_store
                self._graph = FraudGraph(
                    self.config.secret_bytes, store=None if store in (None, "") else store
                )
            return self._graph

    def issuer(self) -> "ChallengeIssuer":
        """The shared :class:`~kyc.liveness.challenge.ChallengeIssuer`."""
        with self._lock:
            if self._issuer is None:
                from kyc.liveness.challenge import ChallengeIssuer

                cfg = self.config
                self._issuer = ChallengeIssuer(
                    cfg.secret_bytes,
                    ttl=cfg.challenge_ttl_s,
                    n_steps=cfg.challenge_steps,
                    moves=cfg.challenge_moves,
                )
            return self._issuer

    def policy(self) -> "Policy":
        """The decision policy: ``config.policy`` or the shipped default (loaded once)."""
        with self._lock:
            if self._policy is None:
                from kyc.policy import load_policy

                self._policy = load_policy(self.config.policy or None)
            return self._policy

    def semaphore(self) -> asyncio.Semaphore:
        """Bounds concurrent compute to ``workers`` (created inside the event loop)."""
        if self._compute is None:
            self._compute = asyncio.Semaphore(self.config.workers)
        return self._compute

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker thread, at most ``workers`` at once."""
        import anyio.to_thread

        async with self.semaphore():
            return await anyio.to_thread.run_sync(lambda: fn(*args))

    # images ------------------------------------------------------------------------------

    def decode(self, data: bytes, what: str) -> Any:
        """Decode uploaded bytes in memory; ``InvalidImage`` subclasses name the field."""
        from kyc.image import load_image

        try:
            return load_image(data, limits=self.image_limits)
        except InvalidImage as exc:
            try:
                err = type(exc)(f"{what}: {exc.message}")
            except TypeError:  # pragma: no cover - a subclass with another signature
                raise exc from None
            raise err from None

    # active sessions ---------------------------------------------------------------------

    def purge_sessions(self, now: float | None = None) -> None:
        """Drop sessions whose challenge expired more than a TTL ago (closing trackers)."""
        t = time.time() if now is None else now
        grace = self.config.challenge_ttl_s
        with self._sessions_lock:
            stale = [n for n, s in self.sessions.items() if t > s.challenge.expires_at + grace]
            dropped = [self.sessions.pop(n) for n in stale]
        for s in dropped:
            if s.session is not None:
                with s.lock:
                    s.session.close()

    def open_sessions(self) -> int:
        """Sessions issued and not finished yet."""
        with self._sessions_lock:
            return sum(1 for s in self.sessions.values() if s.result is None)

    def session(self, nonce: str, owner: str) -> _LiveSession:
        """The session of ``nonce`` if ``owner`` created it, else ``NOT_FOUND``."""
        with self._sessions_lock:
            s = self.sessions.get(nonce)
        if s is None or not hmac.compare_digest(s.owner, owner):
            raise ServiceProblem(
                404, "NOT_FOUND", "no active-liveness session with this nonce (or it expired)"
            )
        return s

    def close(self) -> None:
        """Close sessions and the graph store this service opened."""
        with self._sessions_lock:
            items = list(self.sessions.values())
            self.sessions.clear()
        for s in items:
            if s.session is not None:
                s.session.close()
        if self._owns_graph and self._graph is not None:
            self._graph.close()


# --- OpenAPI ------------------------------------------------------------------------------------

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "stable machine-readable code"},
        "message": {"type": "string", "description": "what was wrong"},
    },
}
_RESULT = {"type": "object", "additionalProperties": True}
_APPLICATION_SCHEMA = {
    "type": "object",
    "required": ["application_id", "applicant_id", "lender_id", "timestamp"],
    "properties": {
        "application_id": {"type": "string"},
        "applicant_id": {"type": "string"},
        "lender_id": {"type": "string"},
        "lender_type": {"type": "string"},
        "timestamp": {"type": "string", "description": "ISO 8601 (UTC if no zone) or epoch s"},
        "device_id": {"type": "string"},
        "phones": {"type": "array", "items": {"type": "string"}},
        "contact_phones": {"type": "array", "items": {"type": "string"}},
        "ip": {"type": "string"},
        "address": {"type": "string"},
        "card": {"type": "string"},
        "email": {"type": "string"},
        "thin_file": {"type": "boolean"},
    },
}


def _multipart(props: Mapping[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": dict(props),
                               "required": list(required)}
                }
            },
        }
    }


def _json_body(schema: Mapping[str, Any], required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": dict(schema)}},
        }
    }


_BINARY = {"type": "string", "format": "binary"}


def _finish_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    comps = schema.setdefault("components", {})
    comps.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    comps["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors = {
        "400": "bad input (the code says what)",
        "401": "missing or wrong bearer token",
        "413": "request body over the size limit",
        "429": "rate limit reached (see Retry-After)",
        "503": "a model or the store is unavailable",
    }
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            if path in _PUBLIC_PATHS:
                op["security"] = []
                continue
            op["security"] = [{"bearerAuth": []}]
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation schema: not what we send
            for code, text in errors.items():
                responses.setdefault(code, {"description": text, **ref})
    return schema


# --- the app --------------------------------------------------------------------------------------


def _import_fastapi() -> Any:
    try:
        import fastapi
        import python_multipart  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{_INSTALL_HINT} ({exc.name or exc} is not installed)") from None
    return fastapi


def _face_box(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None or not text.strip():
        return None
    try:
        vals = [float(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        vals = []
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ServiceProblem(400, "BAD_REQUEST", "face_box must be four numbers: x,y,w,h")
    return (vals[0], vals[1], vals[2], vals[3])


def _timestamps(form: Form, n: int) -> list[int]:
    texts = [p.data.decode("ascii", "replace") for p in form.all("timestamp_ms")]
    if len(texts) == 1 and n != 1:  # one field holding them all: "0,33,67" or "[0,33,67]"
        texts = [t for t in re.split(r"[\s,\[\]]+", texts[0]) if t]
    if len(texts) != n:
        raise ServiceProblem(
            400, "BAD_REQUEST",
            f"got {n} frame part(s) and {len(texts)} timestamp_ms value(s); send one per frame",
        )
    out: list[int] = []
    for t in texts:
        try:
            v = int(t.strip())
        except ValueError:
            raise ServiceProblem(
                400, "BAD_REQUEST", "timestamp_ms values must be integers (milliseconds)"
            ) from None
        out.append(v)
    return out


def create_app(
    config: ServiceConfig,
    *,
    verifier: "FaceVerifier | None" = None,
    liveness: "PassiveLiveness | None" = None,
    graph: "FraudGraph | None" = None,
) -> "FastAPI":
    """Build the FastAPI application for ``config``.

    ``verifier``, ``liveness`` and ``graph`` replace the engines the service would otherwise
    create on first use (a :class:`~kyc.face.verify.FaceVerifier`, a
    :class:`~kyc.liveness.passive.PassiveLiveness` on ``config.pad_model_dir``, a
    :class:`~kyc.graph.fraudgraph.FraudGraph` on ``config.graph_store``). Nothing is loaded
    here. Raises :class:`~kyc.errors.ConfigError` when FastAPI or python-multipart is not
    installed (``pip install 'kyc[service]'``).
    """
    if not isinstance(config, ServiceConfig):
        raise ConfigError("create_app needs a ServiceConfig")
    fastapi = _import_fastapi()
    from fastapi.openapi.utils import get_openapi
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import Request
    from starlette.responses import Response

    import kyc

    services = _Services(config, verifier=verifier, liveness=liveness, graph=graph)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            services.close()

    app = fastapi.FastAPI(
        lifespan=lifespan,
        title="kyc",
        version=kyc.__version__,
        description=(
            "Identity-fraud checks for consumer lenders: face match, liveness (passive and "
            "challenge-response), the applicant graph (fraud rings, multi-lender velocity) "
            "and one explainable decision. Images are processed in memory only."
        ),
        docs_url=None,  # the interactive pages load scripts from a CDN: off
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.kyc = services
    limit = config.max_body_bytes

    def respond(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Any:
        return Response(_json_bytes(payload), status_code=status,
                        media_type="application/json", headers=dict(headers or {}))

    async def on_problem(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, ServiceProblem)
        return respond(exc.status, exc.to_dict(), exc.headers)

    async def on_kyc_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, KycError)
        payload = exc.to_dict()
        masked = request.scope.get("kyc.mask")
        if masked:
            payload["message"] = _mask(payload["message"], masked)
        return respond(error_status(exc), payload)

    async def on_http(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        code = codes.get(exc.status_code, "BAD_REQUEST")
        msg = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(
            exc.status_code, str(exc.detail)
        )
        return respond(exc.status_code, {"code": code, "message": msg}, exc.headers)

    async def on_validation(request: Request, exc: Exception) -> Any:
        return respond(400, {"code": "BAD_REQUEST", "message": "malformed request parameters"})

    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(ServiceProblem, on_problem)
    app.add_exception_handler(KycError, on_kyc_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)

    def client(request: Request) -> str:
        return str(request.scope.get("kyc.client", "-"))

    # --- endpoints ----------------------------------------------------------------------

    async def healthz() -> Any:
        return respond(200, {"status": "ok", "version": kyc.__version__})

    async def verify(request: Request) -> Any:
        form = await read_form(request, limit, config.max_parts)
        id_bytes = form.file("id_image")
        selfie_bytes = form.file("selfie")

        def work() -> dict[str, Any]:
            assert id_bytes is not None and selfie_bytes is not None
            id_img = services.decode(id_bytes, "id_image")
            selfie = services.decode(selfie_bytes, "selfie")
            return services.verifier().verify(id_img, selfie).to_dict()

        return respond(200, await services.run(work))

    async def liveness_check(request: Request) -> Any:
        form = await read_form(request, limit, config.max_parts)
        data = form.file("image")
        box = _face_box(form.text("face_box"))

        def work() -> dict[str, Any]:
            assert data is not None
            img = services.decode(data, "image")
            return services.liveness().check(img, face_box=box).to_dict()

        return respond(200, await services.run(work))

    async def session_issue(request: Request) -> Any:
        body = await read_json(request, limit, optional=True)
        subject: str | None = None
        if body is not None:
            if not isinstance(body, dict):
                raise ServiceProblem(400, "BAD_REQUEST", "the body must be a JSON object")
            raw = body.get("subject")
            if raw is not None and (not isinstance(raw, str) or not raw.strip()):
                raise ServiceProblem(400, "BAD_REQUEST", "subject must be a non-empty string")
            subject = raw
        services.purge_sessions()
        if services.open_sessions() >= config.max_sessions:
            raise ServiceProblem(
                503, "TOO_MANY_SESSIONS",
                f"{config.max_sessions} active-liveness sessions are open; retry later",
                {"Retry-After": "5"},
            )
        ch = services.issuer().issue(subject)
        with services._sessions_lock:
            services.sessions[ch.nonce] = _LiveSession(ch, client(request), subject)
        out = ch.to_dict()
        out["frames_url"] = f"/v1/liveness/sessions/{ch.nonce}/frames"
        out["finish_url"] = f"/v1/liveness/sessions/{ch.nonce}/finish"
        return respond(201, out)

    def _open_session(entry: _LiveSession) -> "ActiveLivenessSession":
        from kyc.liveness.active import ActiveConfig, ActiveLivenessSession

        if entry.session is None:
            entry.session = ActiveLivenessSession(
                entry.challenge,
                issuer=services.issuer(),
                subject=entry.subject,
                verifier=services.verifier(),
                passive=services.liveness().check,
                config=ActiveConfig(mirrored=config.mirrored),
                landmarker_model=config.landmarker_model,
            )
            entry.subject = None  # the raw subject is not kept once the challenge is redeemed
        return entry.session

    async def session_frames(request: Request, nonce: str) -> Any:
        entry = services.session(nonce, client(request))
        form = await read_form(request, limit, config.max_parts)
        frames = [p.data for p in form.all("frame")]
        if not frames:
            raise ServiceProblem(400, "BAD_REQUEST", "send at least one multipart 'frame' part")
        stamps = _timestamps(form, len(frames))

        def work() -> dict[str, Any]:
            with entry.lock:
                if entry.result is not None:
                    raise ServiceProblem(
                        409, "SESSION_FINISHED", "this session is finished; start a new one"
                    )
                if entry.frames + len(frames) > config.max_session_frames:
                    raise ServiceProblem(
                        400, "BAD_REQUEST",
                        f"a session accepts at most {config.max_session_frames} frames",
                    )
                # decode the whole batch first: a bad frame refuses the batch, feeds nothing
                images = [services.decode(data, f"frame {i}") for i, data in enumerate(frames)]
                session = _open_session(entry)
                progress = None
                for img, ts in zip(images, stamps, strict=True):
                    progress = session.feed(img, ts)
                    entry.frames += 1
                    if progress.done:
                        break
                assert progress is not None
                return {"accepted": len(frames), "frames": entry.frames,
                        "progress": progress.to_dict()}

        return respond(200, await services.run(work))

    async def session_finish(request: Request, nonce: str) -> Any:
        entry = services.session(nonce, client(request))

        def work() -> dict[str, Any]:
            with entry.lock:
                if entry.result is None:
                    session = _open_session(entry)
                    entry.result = session.finish()
                out = entry.result.to_dict()
                out["subject_tag"] = entry.challenge.subject_tag
                return out

        return respond(200, await services.run(work))

    def _application(body: Any, request: Request) -> Mapping[str, Any]:
        if not isinstance(body, dict):
            raise ServiceProblem(400, "BAD_REQUEST", "the application must be a JSON object")
        request.scope["kyc.mask"] = _raw_strings(body)
        return body

    async def applications(request: Request) -> Any:
        body = _application(await read_json(request, limit), request)
        report = await services.run(lambda: services.graph().add(body))
        return respond(200, report.to_dict())

    async def applicant_report(request: Request, applicant_id: str) -> Any:
        request.scope["kyc.mask"] = _raw_strings(applicant_id)
        report = await services.run(lambda: services.graph().report(applicant_id))
        return respond(200, report.to_dict())

    async def decision(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/"):
            form = await read_form(request, limit, config.max_parts)
            owner = client(request)
            result = await services.run(
                lambda: _decide_from_images(services, form, request, owner)
            )
        else:
            body = await read_json(request, limit)
            if not isinstance(body, dict):
                raise ServiceProblem(400, "BAD_REQUEST", "the body must be a JSON object")
            request.scope["kyc.mask"] = _raw_strings(body.get("subject"))
            result = await services.run(lambda: _decide_from_dicts(services, body))
        return respond(200, result)

    # --- routes ------------------------------------------------------------------------

    add = app.add_api_route
    add("/healthz", healthz, methods=["GET"], summary="Process liveness (no auth)",
        tags=["service"])
    add("/v1/verify", verify, methods=["POST"], tags=["face"],
        summary="Face match: ID photo vs selfie -> MatchResult",
        openapi_extra=_multipart({"id_image": _BINARY, "selfie": _BINARY},
                                 ["id_image", "selfie"]))
    add("/v1/liveness", liveness_check, methods=["POST"], tags=["liveness"],
        summary="Passive liveness (PAD) on one selfie -> LivenessResult",
        openapi_extra=_multipart(
            {"image": _BINARY,
             "face_box": {"type": "string", "description": "optional x,y,w,h"}},
            ["image"]))
    add("/v1/liveness/sessions", session_issue, methods=["POST"], tags=["liveness"],
        status_code=201,
        summary="Start an active-liveness session: a signed challenge (nonce, expiry, steps)",
        openapi_extra=_json_body(
            {"type": "object",
             "properties": {"subject": {"type": "string",
                                        "description": "applicant the challenge is bound to"}}},
            required=False))
    add("/v1/liveness/sessions/{nonce}/frames", session_frames, methods=["POST"],
        tags=["liveness"], summary="Send frames (one or a batch) with capture timestamps",
        openapi_extra=_multipart(
            {"frame": {"type": "array", "items": _BINARY},
             "timestamp_ms": {"type": "array", "items": {"type": "integer"},
                              "description": "one per frame, capture time in ms"}},
            ["frame", "timestamp_ms"]))
    add("/v1/liveness/sessions/{nonce}/finish", session_finish, methods=["POST"],
        tags=["liveness"], summary="End the session: the active-liveness verdict")
    add("/v1/applications", applications, methods=["POST"], tags=["graph"],
        summary="Add an application to the graph -> the applicant's RingReport",
        openapi_extra=_json_body(_APPLICATION_SCHEMA))
    add("/v1/applicants/{applicant_id}/report", applicant_report, methods=["GET"],
        tags=["graph"], summary="The applicant's RingReport (the id is hashed server-side)")
    add("/v1/decision", decision, methods=["POST"], tags=["decision"],
        summary="One decision from match, liveness and graph evidence",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "match": _RESULT, "liveness": _RESULT, "active": _RESULT,
                            "graph": _RESULT,
                            "velocity": {"type": "object",
                                         "additionalProperties": {"type": "integer"}},
                            "duplicates": {"type": "array", "items": _RESULT},
                            "subject": {"type": "string",
                                        "description": "hashed applicant token"},
                        },
                    }},
                    "multipart/form-data": {"schema": {
                        "type": "object",
                        "required": ["id_image", "selfie"],
                        "properties": {
                            "id_image": _BINARY, "selfie": _BINARY,
                            "application": {"type": "string",
                                            "description": "JSON application record"},
                            "session": {"type": "string",
                                        "description": "nonce of a finished active session"},
                        },
                    }},
                },
            }
        })

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _finish_openapi(
                get_openapi(title=app.title, version=app.version,
                            description=app.description, routes=app.routes)
            )
        return app.openapi_schema  # type: ignore[no-any-return]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_Gate, services=services)
    return cast("FastAPI", app)


# --- decisions --------------------------------------------------------------------------------

_DECISION_KEYS = ("match", "liveness", "active", "graph", "velocity", "duplicates", "subject")


def _decide_from_dicts(services: _Services, body: Mapping[str, Any]) -> dict[str, Any]:
    """A decision from result dicts (any of :data:`_DECISION_KEYS`)."""
    from kyc.decision import decide

    unknown = sorted(set(body) - set(_DECISION_KEYS))
    if unknown:
        raise ServiceProblem(
            400, "BAD_REQUEST", f"unknown keys {unknown}; expected any of {list(_DECISION_KEYS)}"
        )
    kwargs = {k: body[k] for k in _DECISION_KEYS if body.get(k) is not None}
    return dict(decide(policy=services.policy(), **kwargs).to_dict())


def _decide_from_images(
    services: _Services, form: Form, request: Any, owner: str
) -> dict[str, Any]:
    """Face match and passive liveness on the images, the graph on ``application``, the
    verdict of a finished active session named by ``session`` (its nonce); then decide."""
    from kyc.decision import decide

    id_bytes = form.file("id_image")
    selfie_bytes = form.file("selfie")
    app_text = form.text("application")
    nonce = form.text("session")
    assert id_bytes is not None and selfie_bytes is not None
    kwargs: dict[str, Any] = {}
    if nonce is not None:
        entry = services.session(nonce.strip(), owner)
        with entry.lock:
            if entry.result is None:
                raise ServiceProblem(
                    409, "SESSION_NOT_FINISHED",
                    "finish the active-liveness session before using it in a decision",
                )
            kwargs["active"] = entry.result
    record: Any = None
    if app_text is not None:
        request.scope["kyc.mask"] = _raw_strings(app_text)
        try:
            record = json.loads(app_text)
        except ValueError:
            raise ServiceProblem(400, "BAD_REQUEST", "application is not valid JSON") from None
        if not isinstance(record, dict):
            raise ServiceProblem(400, "BAD_REQUEST", "application must be a JSON object")
        request.scope["kyc.mask"] = _raw_strings(record)
    selfie = services.decode(selfie_bytes, "selfie")
    id_img = services.decode(id_bytes, "id_image")
    kwargs["match"] = services.verifier().verify(id_img, selfie)
    kwargs["liveness"] = services.liveness().check(selfie)
    if record is not None:
        kwargs["graph"] = services.graph().add(record)
    return dict(decide(policy=services.policy(), **kwargs).to_dict())
