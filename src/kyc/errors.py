"""Typed errors raised by :mod:`kyc`.

Every error the library raises on purpose is a :class:`KycError` subclass whose message says
what was wrong and, where it helps, what to do about it. A spoof, a face mismatch or a fraud
ring is a *result*, never an exception: these errors are for input the library cannot work on,
models it cannot load, and stores it cannot open.

Each class carries a stable machine-readable ``code`` (for example ``"IMAGE_TOO_LARGE"``) so
services can map errors to responses without parsing messages.

>>> from kyc.errors import ImageTooLarge, InvalidImage, KycError
>>> err = ImageTooLarge("image declares 30000x30000 pixels, limit is 40000000")
>>> isinstance(err, InvalidImage) and isinstance(err, KycError), err.code
(True, 'IMAGE_TOO_LARGE')
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "ConfigError",
    "ConversionError",
    "EmptyImage",
    "ImageTooLarge",
    "InvalidImage",
    "InvalidRecord",
    "KycError",
    "ModelCorrupt",
    "ModelError",
    "ModelInvalid",
    "ModelUnavailable",
    "MultipleFaces",
    "NoFace",
    "StoreError",
    "StoreLocked",
    "TruncatedImage",
    "UnsupportedImage",
]


class KycError(Exception):
    """Base class of every error :mod:`kyc` raises on purpose."""

    code: str = "KYC_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """Return ``{"code": ..., "message": ...}`` for logs and API responses."""
        return {"code": self.code, "message": self.message}


# --- images -------------------------------------------------------------------------------


class InvalidImage(KycError):
    """The input is not an image the library can safely decode."""

    code = "INVALID_IMAGE"


class EmptyImage(InvalidImage):
    """The input holds no bytes or no pixels."""

    code = "EMPTY_IMAGE"


class UnsupportedImage(InvalidImage):
    """The input is not in a supported image format (or not an image at all)."""

    code = "UNSUPPORTED_IMAGE"


class TruncatedImage(InvalidImage):
    """The image file ends before its declared data does, or its data is corrupt."""

    code = "TRUNCATED_IMAGE"


class ImageTooLarge(InvalidImage):
    """The image declares more pixels (or bytes) than the configured limit."""

    code = "IMAGE_TOO_LARGE"


# --- faces --------------------------------------------------------------------------------


class NoFace(KycError):
    """No face was found where one is required (only raised by strict helpers)."""

    code = "NO_FACE"


class MultipleFaces(KycError):
    """Several faces were found and the configured policy refuses to choose."""

    code = "MULTIPLE_FACES"


# --- models -------------------------------------------------------------------------------


class ModelError(KycError):
    """A model file cannot be used."""

    code = "MODEL_ERROR"


class ModelUnavailable(ModelError):
    """A model file was not found in any searched location."""

    code = "MODEL_UNAVAILABLE"


class ModelCorrupt(ModelError):
    """A model file's sha256 does not match the manifest."""

    code = "MODEL_CORRUPT"


class ModelInvalid(ModelError):
    """A model file is unreadable, truncated, or has the wrong inputs/outputs."""

    code = "MODEL_INVALID"


class ConversionError(ModelError):
    """A model conversion (``kyc models build``) failed on its source file."""

    code = "CONVERSION_ERROR"


# --- configuration, calibration -------------------------------------------------------------


class ConfigError(KycError):
    """A configuration value or file is invalid."""

    code = "CONFIG_ERROR"


class CalibrationError(KycError):
    """Calibration cannot produce a threshold from the data given."""

    code = "CALIBRATION_ERROR"


# --- graph --------------------------------------------------------------------------------


class InvalidRecord(KycError):
    """An application record failed validation.

    ``row`` is the 0-based position in the batch (or ``None``), ``field`` the offending
    field (or ``None``).
    """

    code = "INVALID_RECORD"

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = super().to_dict()
        if self.row is not None:
            out["row"] = str(self.row)
        if self.field is not None:
            out["field"] = self.field
        return out


class StoreError(KycError):
    """The persistent store cannot be opened or written."""

    code = "STORE_ERROR"


class StoreLocked(StoreError):
    """Another process holds the store's write lock."""

    code = "STORE_LOCKED"
