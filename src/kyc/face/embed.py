"""Face embedders: one class per ONNX model family, behind one small protocol.

* :class:`DlibEmbedder`: dlib's ResNet face descriptor converted to ONNX (registry name
  ``dlib_resnet_v1``): 150x150 RGB chip cut with :data:`~kyc.face.align.DLIB_TEMPLATE_150`,
  float 0..255 NCHW (scaling is inside the graph), 128-d, Euclidean distance. The default: its
  weights are public domain.
* :class:`ArcFaceEmbedder`: MobileFaceNet-/ArcFace-style models: 112x112 chip cut with
  :data:`~kyc.face.align.ARCFACE_TEMPLATE_112`, configurable colour order, layout and
  normalisation (usually ``(x - 127.5) / 128``), output L2-normalised, cosine similarity.

A model a lender brings (for example a commercially licensed InsightFace file) is declared
with an :class:`EmbedderConfig` (path, sha256, family, input spec, metric), from a dict or a
TOML file, and built with :func:`make_embedder`. The file's sha256 is checked by the model
registry before the session is created.

Models load lazily on the first :meth:`~OnnxEmbedder.embed` call; onnxruntime sessions come
from the registry's thread-safe cache, so one embedder can be used from many threads.

>>> cfg = EmbedderConfig.from_dict({"name": "my_arcface", "path": "/models/w600k_r50.onnx",
...     "sha256": "ab" * 32, "family": "arcface", "color": "RGB", "layout": "NCHW"})
>>> cfg.chip_size, cfg.metric, cfg.mean, cfg.std
(112, 'cosine', (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from kyc.errors import ConfigError, ModelInvalid
from kyc.face.align import ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150

__all__ = [
    "PRESETS",
    "ArcFaceEmbedder",
    "DlibEmbedder",
    "Embedder",
    "EmbedderConfig",
    "OnnxEmbedder",
    "compare",
    "make_embedder",
]

Metric = Literal["euclidean", "cosine"]
Family = Literal["dlib", "arcface"]


@runtime_checkable
class Embedder(Protocol):
    """What :class:`~kyc.face.verify.FaceVerifier` needs from an embedder.

    ``name`` and ``sha256`` identify the model in results; ``metric`` is ``"euclidean"``
    (smaller is more alike) or ``"cosine"`` (larger is more alike); ``chip_size`` and
    ``template`` say how to cut chips for it (:func:`kyc.face.align.align_face`).
    """

    name: str
    metric: str
    chip_size: int
    template: np.ndarray

    @property
    def sha256(self) -> str:
        """Hex sha256 of the model file."""
        ...

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 BGR chips (or one ``(S, S, 3)`` chip) -> ``(N, D)`` float32."""
        ...


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        return (v, v, v)
    try:
        seq = [float(x) for x in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number or 3 numbers; got {value!r}") from None
    if len(seq) != 3:
        raise ConfigError(f"{what} must be a number or 3 numbers; got {value!r}")
    return (seq[0], seq[1], seq[2])


_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "dlib": {
        "input_size": 150,
        "layout": "NCHW",
        "color": "RGB",
        "mean": 0.0,
        "std": 1.0,
        "metric": "euclidean",
        "normalize": False,
    },
    "arcface": {
        "input_size": 112,
        "layout": "NCHW",
        "color": "RGB",
        "mean": 127.5,
        "std": 127.5,
        "metric": "cosine",
        "normalize": True,
    },
}


@dataclass(frozen=True)
class EmbedderConfig:
    """Declaration of an embedding model: which file, how to feed it, how to compare outputs.

    ``name`` labels the model in results and picks its threshold profile; ``model`` is a
    registry name (resolved by :func:`kyc.models.resolve_model`, sha256 from the manifest) and
    ``path`` an explicit file, checked against ``sha256`` when given (a user-declared model
    must give one). ``family`` is ``"dlib"`` (150x150 dlib chip) or ``"arcface"`` (112x112
    ArcFace chip). ``layout`` ``"NCHW"``/``"NHWC"``, ``color`` ``"RGB"``/``"BGR"``; pixels are
    fed as ``(x - mean) / std`` per channel (in ``color`` order). ``metric`` is
    ``"euclidean"`` or ``"cosine"``; ``normalize`` L2-normalises outputs. ``input_size`` must
    agree with the model's input when the model fixes it. ``eval_only`` marks models whose
    weights may not be used in production (they are never a default).

    Build configs with :meth:`from_dict` / :meth:`from_toml`: they fill unset keys with the
    family's defaults (dlib: 150, 0..255, Euclidean; arcface: 112, ``(x - 127.5) / 127.5``,
    cosine). The dataclass defaults themselves are the ArcFace family's.
    """

    name: str
    family: Family = "arcface"
    model: str | None = None
    path: str | None = None
    sha256: str | None = None
    input_size: int = 112
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    metric: Metric = "cosine"
    normalize: bool = True
    eval_only: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("embedder config needs a non-empty 'name'")
        if self.family not in _FAMILY_DEFAULTS:
            raise ConfigError(f"embedder family must be 'dlib' or 'arcface'; got {self.family!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout must be 'NCHW' or 'NHWC'; got {self.layout!r}")
        if self.color not in ("RGB", "BGR"):
            raise ConfigError(f"color must be 'RGB' or 'BGR'; got {self.color!r}")
        if self.metric not in ("euclidean", "cosine"):
            raise ConfigError(f"metric must be 'euclidean' or 'cosine'; got {self.metric!r}")
        if not isinstance(self.input_size, int) or not 16 <= self.input_size <= 1024:
            raise ConfigError(
                f"input_size must be an integer in [16, 1024]; got {self.input_size!r}"
            )
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        if any(s == 0 or not math.isfinite(s) for s in self.std):
            raise ConfigError(f"std must be finite and non-zero; got {self.std!r}")
        if self.model is None and self.path is None:
            raise ConfigError(f"embedder {self.name!r} needs a registry 'model' name or a 'path'")
        if self.sha256 is not None:
            digest = self.sha256.lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"sha256 must be 64 hex digits; got {self.sha256!r}")
            object.__setattr__(self, "sha256", digest)
        if self.path is not None:
            object.__setattr__(self, "path", os.fspath(self.path))
            if self.model is None and self.sha256 is None:
                raise ConfigError(
                    f"embedder {self.name!r}: a user-declared model file needs its 'sha256' "
                    "(so a swapped file is refused)"
                )

    @property
    def chip_size(self) -> int:
        """Side of the square chip the model takes."""
        return self.input_size

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmbedderConfig:
        """Build a config from a mapping; keys missing fall back to the family's defaults.

        Unknown keys raise ``ConfigError``. A ``[embedder]`` table (TOML layout) is accepted.
        """
        if "embedder" in data and isinstance(data["embedder"], Mapping):
            data = data["embedder"]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown embedder config keys: {', '.join(unknown)}")
        family = str(data.get("family", "arcface"))
        if family not in _FAMILY_DEFAULTS:
            raise ConfigError(f"embedder family must be 'dlib' or 'arcface'; got {family!r}")
        values: dict[str, Any] = dict(_FAMILY_DEFAULTS[family])
        values.update(data)
        values["family"] = family
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid embedder config: {exc}") from exc

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> EmbedderConfig:
        """Read a config from a TOML file (top-level keys, or an ``[embedder]`` table).

        A relative ``path`` inside the file is taken relative to the TOML file's folder.
        """
        from kyc.face.profiles import load_toml

        file = Path(path)
        data = dict(load_toml(file))
        if "embedder" in data and isinstance(data["embedder"], Mapping):
            data = dict(data["embedder"])
        model_path = data.get("path")
        if isinstance(model_path, str) and not Path(model_path).is_absolute():
            data["path"] = str(file.parent / model_path)
        return cls.from_dict(data)


#: Built-in embedders by name. ``mobilefacenet_eval_only`` is for comparisons only: its
#: weights' licence is unverified, so it is never a default.
PRESETS: dict[str, EmbedderConfig] = {
    "dlib_resnet_v1": EmbedderConfig.from_dict(
        {"name": "dlib_resnet_v1", "family": "dlib", "model": "dlib_resnet_v1"}
    ),
    "mobilefacenet_eval_only": EmbedderConfig.from_dict(
        {
            "name": "mobilefacenet_eval_only",
            "family": "arcface",
            "model": "mobilefacenet_eval_only",
            "layout": "NHWC",
            "color": "RGB",
            "mean": 127.5,
            "std": 128.0,
            "eval_only": True,
        }
    ),
}
_ALIASES = {"dlib": "dlib_resnet_v1", "mobilefacenet": "mobilefacenet_eval_only"}


def compare(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Compare embeddings row-wise: Euclidean distance or cosine similarity.

    ``a`` and ``b`` are ``(D,)`` or ``(N, D)`` (broadcast against each other). Returns a float
    array (a 0-d array for two vectors).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if metric == "euclidean":
        return np.asarray(np.linalg.norm(x - y, axis=-1))
    if metric == "cosine":
        nx = np.linalg.norm(x, axis=-1)
        ny = np.linalg.norm(y, axis=-1)
        den = np.maximum(nx * ny, 1e-12)
        return np.asarray((x * y).sum(axis=-1) / den)
    raise ConfigError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}")


class OnnxEmbedder:
    """An ONNX face embedder driven by an :class:`EmbedderConfig` (base of the families).

    ``intra_op_num_threads`` is passed to the registry's session cache; ``max_batch`` caps the
    chips sent in one ``run`` (models with a fixed batch dimension are fed in chunks of it).
    """

    family: str = ""

    def __init__(
        self,
        config: EmbedderConfig,
        *,
        intra_op_num_threads: int | None = None,
        max_batch: int = 32,
    ) -> None:
        if self.family and config.family != self.family:
            raise ConfigError(
                f"{type(self).__name__} takes family {self.family!r}, config says {config.family!r}"
            )
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1; got {max_batch!r}")
        self.config = config
        self.name = config.name
        self.metric: str = config.metric
        self.chip_size = config.input_size
        self.template = ARCFACE_TEMPLATE_112 if config.family == "arcface" else DLIB_TEMPLATE_150
        if config.input_size not in (112, 150):
            self.template = self.template * (
                config.input_size / (112.0 if config.family == "arcface" else 150.0)
            )
        self.intra_op_num_threads = intra_op_num_threads
        self.max_batch = int(max_batch)
        self._lock = threading.Lock()
        self._session: Any = None
        self._path: str | None = None
        self._sha256: str | None = None
        self._input_name = ""
        self._batch_fixed: int | None = None
        self.dim: int | None = None
        mean = np.asarray(config.mean, dtype=np.float32)
        std = np.asarray(config.std, dtype=np.float32)
        self._mean = mean.reshape(1, 1, 1, 3)
        self._inv_std = (1.0 / std).reshape(1, 1, 1, 3)
        self._identity = bool(np.all(mean == 0) and np.all(std == 1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, metric={self.metric!r})"

    # -- model ------------------------------------------------------------------------------

    def load(self) -> OnnxEmbedder:
        """Resolve the file, check its sha256 and create the session now (else on first use).

        Returns ``self``. Raises ``ModelUnavailable`` / ``ModelCorrupt`` / ``ModelInvalid``.
        """
        if self._session is not None:
            return self
        with self._lock:
            if self._session is None:
                self._open()
        return self

    def _open(self) -> None:
        from kyc.models import load_session, session_info

        cfg = self.config
        # A registry name is resolved and checked against the manifest (``path`` then only
        # overrides where it is looked for); a user's own file is checked against ``sha256``.
        session = load_session(
            cfg.model,
            path=cfg.path,
            sha256=cfg.sha256,
            intra_op_num_threads=self.intra_op_num_threads,
        )
        ref = session_info(session)
        path, sha = ref.path, ref.sha256
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelInvalid(f"{path}: an embedder must have one input, found {len(inputs)}")
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ModelInvalid(f"{path}: expected a 4-d image input, found shape {shape}")
        spatial = shape[1:3] if cfg.layout == "NHWC" else shape[2:4]
        channels = shape[3] if cfg.layout == "NHWC" else shape[1]
        for dim in spatial:
            if isinstance(dim, int) and dim != cfg.input_size:
                raise ModelInvalid(
                    f"{path}: model input is {shape} ({cfg.layout}); the config says "
                    f"{cfg.input_size}x{cfg.input_size}"
                )
        if isinstance(channels, int) and channels != 3:
            raise ModelInvalid(
                f"{path}: model input {shape} does not have 3 channels in layout {cfg.layout}"
            )
        self._batch_fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._input_name = inputs[0].name
        self._path = path
        self._sha256 = sha
        self._session = session

    @property
    def sha256(self) -> str:
        """Hex sha256 of the model file (resolves and loads the model on first access)."""
        self.load()
        assert self._sha256 is not None
        return self._sha256

    def model_ref(self) -> dict[str, str]:
        """``{"role": "embedder", "name", "sha256"}`` for results."""
        return {"role": "embedder", "name": self.name, "sha256": self.sha256}

    # -- inference --------------------------------------------------------------------------

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 BGR chips -> the float32 tensor the model takes."""
        x = chips.astype(np.float32)
        if self.config.color == "RGB":
            x = x[..., ::-1]
        if not self._identity:
            x = (x - self._mean) * self._inv_std
        if self.config.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Embed aligned chips: ``(N, S, S, 3)`` (or one ``(S, S, 3)``) uint8 BGR -> ``(N, D)``.

        Outputs are float32, L2-normalised when the config says so. ``N = 0`` gives an empty
        ``(0, D)`` array once the model's output size is known (``(0, 0)`` before).
        """
        arr = np.asarray(chips)
        if arr.ndim == 3:
            arr = arr[None]
        s = self.chip_size
        if arr.ndim != 4 or arr.shape[1:] != (s, s, 3) or arr.dtype != np.uint8:
            raise ValueError(
                f"{self.name} expects uint8 chips of shape (N, {s}, {s}, 3); "
                f"got {arr.dtype} {arr.shape}"
            )
        self.load()
        if arr.shape[0] == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        step = self._batch_fixed or self.max_batch
        outs = []
        for start in range(0, arr.shape[0], step):
            part = arr[start : start + step]
            n = part.shape[0]
            if self._batch_fixed is not None and n < self._batch_fixed:
                pad = np.zeros((self._batch_fixed - n, s, s, 3), dtype=np.uint8)
                part = np.concatenate([part, pad])
            out = self._session.run(None, {self._input_name: self.preprocess(part)})[0]
            outs.append(np.asarray(out, dtype=np.float32).reshape(part.shape[0], -1)[:n])
        emb = np.concatenate(outs)
        if self.config.normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.dim = int(emb.shape[1])
        return np.ascontiguousarray(emb, dtype=np.float32)


class DlibEmbedder(OnnxEmbedder):
    """dlib ResNet v1 descriptor (ONNX): 150x150 RGB 0..255 NCHW chips, 128-d, Euclidean.

    ``path`` overrides where the file is found (it is still checked against the registry's
    sha256 for ``dlib_resnet_v1``, or against ``sha256`` when given).
    """

    family = "dlib"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        sha256: str | None = None,
        config: EmbedderConfig | None = None,
        intra_op_num_threads: int | None = None,
        max_batch: int = 32,
    ) -> None:
        cfg = config or PRESETS["dlib_resnet_v1"]
        if path is not None or sha256 is not None:
            cfg = replace(
                cfg, path=os.fspath(path) if path is not None else cfg.path, sha256=sha256
            )
        super().__init__(cfg, intra_op_num_threads=intra_op_num_threads, max_batch=max_batch)


class ArcFaceEmbedder(OnnxEmbedder):
    """MobileFaceNet-/ArcFace-style ONNX model: 112x112 ArcFace chips, L2-normalised, cosine.

    Give a :class:`EmbedderConfig` (colour order, layout, mean/std, path and sha256), or a
    registry name of a preset (``"mobilefacenet_eval_only"``: RGB, NHWC, (x-127.5)/128,
    192-d; for evaluation only).
    """

    family = "arcface"

    def __init__(
        self,
        config: EmbedderConfig | str,
        *,
        intra_op_num_threads: int | None = None,
        max_batch: int = 32,
    ) -> None:
        if isinstance(config, str):
            key = _ALIASES.get(config, config)
            if key not in PRESETS:
                raise ConfigError(f"no built-in ArcFace-style embedder named {config!r}")
            config = PRESETS[key]
        super().__init__(config, intra_op_num_threads=intra_op_num_threads, max_batch=max_batch)


_FAMILIES: dict[str, type[OnnxEmbedder]] = {"dlib": DlibEmbedder, "arcface": ArcFaceEmbedder}


def make_embedder(
    spec: str | os.PathLike[str] | Mapping[str, Any] | EmbedderConfig | Embedder = "dlib",
    *,
    intra_op_num_threads: int | None = None,
) -> Embedder:
    """Build an embedder from a name, a TOML path, a dict, a config, or pass one through.

    Names: ``"dlib"`` / ``"dlib_resnet_v1"`` (the default) and ``"mobilefacenet_eval_only"``
    (evaluation only). A string ending in ``.toml`` (or any existing file path) is read with
    :meth:`EmbedderConfig.from_toml`. Nothing is loaded until the first embedding.
    """
    if isinstance(spec, EmbedderConfig):
        cfg = spec
    elif isinstance(spec, Mapping):
        cfg = EmbedderConfig.from_dict(spec)
    elif isinstance(spec, (str, os.PathLike)):
        key = os.fspath(spec)
        key = _ALIASES.get(key, key)
        if key in PRESETS:
            cfg = PRESETS[key]
        elif key.endswith(".toml") or Path(key).is_file():
            cfg = EmbedderConfig.from_toml(key)
        else:
            raise ConfigError(
                f"unknown embedder {key!r}: use one of {', '.join(sorted(PRESETS))}, "
                "a TOML config file, or an EmbedderConfig"
            )
    elif isinstance(spec, Embedder):
        return spec
    else:
        raise ConfigError(f"cannot build an embedder from {type(spec).__name__}")
    if cfg.family == "dlib":
        return DlibEmbedder(config=cfg, intra_op_num_threads=intra_op_num_threads)
    return ArcFaceEmbedder(cfg, intra_op_num_threads=intra_op_num_threads)
