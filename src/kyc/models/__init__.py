"""Model registry: manifest, file resolution with sha256 checks, onnxruntime sessions.

Everything here is re-exported from :mod:`kyc.models.registry`; converters live in
:mod:`kyc.models.dlib_convert` and :mod:`kyc.models.minifasnet_convert` (imported on demand).
Nothing is downloaded implicitly: see ``kyc models pull`` / ``kyc models build``.
"""

from __future__ import annotations

from kyc.models.registry import (
    ModelRef,
    ModelSpec,
    ModelStatus,
    build_model,
    cache_dir,
    clear_caches,
    file_sha256,
    find_build_source,
    load_session,
    manifest,
    manifest_path,
    model_ref,
    model_spec,
    model_status,
    pull_model,
    resolve_model,
    search_dirs,
    session_info,
)

__all__ = [
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
