"""Safe image input: decode what applicants upload without trusting it.

:func:`load_image` takes a path, bytes, a binary file object, a PIL image or a numpy array
and returns an ``HxWx3`` ``uint8`` BGR array (OpenCV's order), C-contiguous and owned by the
caller. Before any pixel is decoded it refuses:

* empty input (:class:`~kyc.errors.EmptyImage`);
* anything that is not JPEG, PNG, WebP, BMP, TIFF or GIF by its magic bytes, whatever the
  file is called (:class:`~kyc.errors.UnsupportedImage`);
* files that end before their data does (:class:`~kyc.errors.TruncatedImage`): a JPEG with
  no end-of-image marker after its scan, a PNG without ``IEND``, a WebP shorter than its
  RIFF size, and anything the decoder finds short;
* encoded data over ``max_bytes`` and headers that declare more than ``max_pixels`` pixels or
  a side over ``max_side`` (:class:`~kyc.errors.ImageTooLarge`). The dimensions are parsed
  from the header by this module, so a 30000x30000 PNG is refused without allocating it.

Decoding uses Pillow with the format pinned to the sniffed one; every decoder error (Pillow's
own decompression-bomb error included) becomes a :class:`~kyc.errors.InvalidImage` subclass.
Then:

* EXIF orientation is applied (phones store portraits rotated);
* grey (``1``, ``L``, ``I;16``, ``I``, ``F``), palette, CMYK, YCbCr and LAB images become
  colour; 16-bit samples are scaled to 8 bits (``v / 257``, rounded); 32-bit integer grey is
  read as 16-bit data (clipped to 0..65535); float grey in [0, 1] is scaled by 255, other
  float data is clipped to 0..255;
* transparency (RGBA, LA, palette with a transparent colour) is **composited on white**, the
  way a viewer shows it, rather than dropped: dropping alpha would expose whatever colour
  the encoder left under transparent pixels (often black).

Arrays are taken as OpenCV arrays: ``HxW`` grey, ``HxWx1`` grey, ``HxWx3`` BGR, ``HxWx4``
BGRA (composited on white). ``uint8`` is used as is; ``uint16`` is scaled by 1/257; other
integer types are accepted when every value lies in 0..255; floats must be finite and in
[0, 1] (scaled by 255). Anything else is :class:`~kyc.errors.InvalidImage`.

>>> import numpy as np
>>> load_image(np.zeros((4, 6), np.uint8)).shape
(4, 6, 3)
>>> probe_image(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + (30000).to_bytes(4, "big") * 2)
ImageHeader(format='png', width=30000, height=30000)
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import numpy as np
import numpy.typing as npt

from kyc.errors import (
    EmptyImage,
    ImageTooLarge,
    InvalidImage,
    KycError,
    TruncatedImage,
    UnsupportedImage,
)

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = [
    "SUPPORTED_FORMATS",
    "ImageHeader",
    "ImageLimits",
    "ImageSource",
    "load_image",
    "probe_image",
]

SUPPORTED_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "bmp", "tiff", "gif")
"""Formats :func:`load_image` decodes, by the names :class:`ImageHeader` uses."""

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, np.ndarray]
"""Everything :func:`load_image` accepts (plus a ``PIL.Image.Image``)."""

_PIL_FORMAT = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
}


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked before decoding.

    ``max_pixels`` bounds the header-declared ``width * height``, ``max_bytes`` the encoded
    size, ``max_side`` either side. The defaults admit any real photo (a 40 MP phone image)
    and refuse decompression bombs. ``formats`` lists the formats accepted (a subset of
    :data:`SUPPORTED_FORMATS`; for example ``("jpeg", "png", "webp")`` for selfie uploads,
    which shuts out the older, larger decoders for TIFF, BMP and GIF).
    """

    max_pixels: int = 40_000_000
    max_bytes: int = 50 * 1024 * 1024
    max_side: int = 20_000
    formats: tuple[str, ...] = SUPPORTED_FORMATS

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, got {value!r}")
        unknown = set(self.formats) - set(SUPPORTED_FORMATS)
        if unknown or not self.formats:
            raise ValueError(
                f"ImageLimits.formats must be a non-empty subset of {SUPPORTED_FORMATS}, "
                f"got {self.formats!r}"
            )


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header declares: ``format`` (one of :data:`SUPPORTED_FORMATS`),
    ``width`` and ``height`` in stored pixels (before EXIF rotation)."""

    format: str
    width: int
    height: int


_DEFAULT_LIMITS = ImageLimits()


# --- header parsing ---------------------------------------------------------------------------


def _sniff(data: bytes) -> str:
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    raise UnsupportedImage(_describe_unknown(data))


def _describe_unknown(data: bytes) -> str:
    head = data[:32]
    known = {
        b"%PDF": "a PDF document",
        b"PK\x03\x04": "a ZIP archive (or an Office document)",
        b"\x1f\x8b": "gzip-compressed data",
        b"II+\x00": "a BigTIFF file",
        b"MM\x00+": "a BigTIFF file",
        b"\x00\x00\x00\x0cjP  ": "a JPEG 2000 file",
        b"\xff\xd8": "a JPEG fragment without a valid marker",
    }
    what = next((desc for magic, desc in known.items() if head.startswith(magic)), None)
    if what is None and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand[:3] in (b"hei", b"hev", b"mif", b"msf") or brand == b"avif":
            what = "a HEIC/HEIF/AVIF image"
        else:
            what = "an MP4/QuickTime video"
    if what is None and head.lstrip().startswith((b"<", b"{", b"[")):
        what = "text (HTML, XML, SVG or JSON)"
    if what is None and head[:4] == b"RIFF":
        what = "a RIFF file that is not WebP"
    prefix = f"input looks like {what}" if what else "input is not a recognised image"
    return (
        f"{prefix}; supported formats are JPEG, PNG, WebP, BMP, TIFF and GIF "
        f"(first bytes: {head[:8].hex()})"
    )


def _need(data: bytes, n: int, fmt: str) -> None:
    if len(data) < n:
        raise TruncatedImage(f"{fmt.upper()} header is truncated ({len(data)} bytes)")


_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    """Width, height, and the offset of the first SOS segment's data."""
    n = len(data)
    pos = 2
    size: tuple[int, int] | None = None
    while True:
        # each marker: one or more 0xFF fill bytes, then the marker code
        if pos >= n:
            raise TruncatedImage("JPEG ends before its image data (no start-of-scan marker)")
        if data[pos] != 0xFF:
            raise InvalidImage(f"JPEG is corrupt: expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise TruncatedImage("JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise InvalidImage("JPEG ends (EOI marker) before any image data")
        if pos + 2 > n:
            raise TruncatedImage("JPEG ends inside a segment header")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise InvalidImage(f"JPEG is corrupt: segment length {length} at byte {pos}")
        if marker in _JPEG_SOF:
            if pos + 7 > n:
                raise TruncatedImage("JPEG ends inside its frame header")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if size is None:
                raise InvalidImage("JPEG has image data before its frame header (no SOF marker)")
            return size[0], size[1], pos + length
        pos += length


def _png_header(data: bytes) -> tuple[int, int]:
    _need(data, 24, "png")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise InvalidImage("PNG is corrupt: the first chunk is not a valid IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _webp_header(data: bytes) -> tuple[int, int]:
    _need(data, 30, "webp")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidImage("WebP is corrupt: bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise InvalidImage("WebP is corrupt: bad VP8L signature")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise UnsupportedImage(f"WebP with an unknown first chunk {chunk!r}")


def _bmp_header(data: bytes) -> tuple[int, int]:
    _need(data, 26, "bmp")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:
        w, h = struct.unpack_from("<HH", data, 18)
        return w, h
    if dib < 40:
        raise InvalidImage(f"BMP is corrupt: unknown header size {dib}")
    w, h = struct.unpack_from("<ii", data, 18)
    if w < 0:
        raise InvalidImage("BMP is corrupt: negative width")
    return w, abs(h)


def _tiff_header(data: bytes) -> tuple[int, int]:
    _need(data, 8, "tiff")
    endian = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(endian + "I", data, 4)
    if ifd < 8 or ifd + 2 > len(data):
        raise TruncatedImage("TIFF ends before its first image directory")
    (count,) = struct.unpack_from(endian + "H", data, ifd)
    if ifd + 2 + 12 * count > len(data):
        raise TruncatedImage("TIFF ends inside its first image directory")
    dims: dict[int, int] = {}
    for i in range(count):
        tag, typ, cnt = struct.unpack_from(endian + "HHI", data, ifd + 2 + 12 * i)
        if tag in (256, 257) and cnt == 1:
            off = ifd + 2 + 12 * i + 8
            if typ == 3:  # SHORT
                (dims[tag],) = struct.unpack_from(endian + "H", data, off)
            elif typ == 4:  # LONG
                (dims[tag],) = struct.unpack_from(endian + "I", data, off)
    if 256 not in dims or 257 not in dims:
        raise InvalidImage("TIFF is corrupt: no image width/length in its first directory")
    return dims[256], dims[257]


def _gif_header(data: bytes) -> tuple[int, int]:
    _need(data, 10, "gif")
    w, h = struct.unpack_from("<HH", data, 6)
    return w, h


def probe_image(data: bytes | bytearray | memoryview) -> ImageHeader:
    """Read the format and declared size from an encoded image's header, decoding nothing.

    Raises :class:`~kyc.errors.EmptyImage` (no bytes), :class:`~kyc.errors.UnsupportedImage`
    (not a supported format), :class:`~kyc.errors.TruncatedImage` (the header itself is cut
    short) or :class:`~kyc.errors.InvalidImage` (a malformed header).
    """
    buf = bytes(data)
    if not buf:
        raise EmptyImage("image data is empty (0 bytes)")
    fmt = _sniff(buf)
    width, height = _probe(buf, fmt)[:2]
    return ImageHeader(fmt, width, height)


def _probe(data: bytes, fmt: str) -> tuple[int, int, int]:
    """Width, height and (JPEG only) the scan-data offset; 0 elsewhere."""
    if fmt == "jpeg":
        return _jpeg_header(data)
    parse: Callable[[bytes], tuple[int, int]] = {
        "png": _png_header,
        "webp": _webp_header,
        "bmp": _bmp_header,
        "tiff": _tiff_header,
        "gif": _gif_header,
    }[fmt]
    width, height = parse(data)
    return width, height, 0


def _check_size(width: int, height: int, limits: ImageLimits, what: str) -> None:
    if width <= 0 or height <= 0:
        raise EmptyImage(f"{what} declares {width}x{height} pixels")
    if width > limits.max_side or height > limits.max_side:
        raise ImageTooLarge(
            f"{what} declares {width}x{height} pixels; the limit is {limits.max_side} per side"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{what} declares {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels}"
        )


def _check_complete(data: bytes, fmt: str, scan_offset: int) -> None:
    if fmt == "jpeg":
        # Entropy-coded data escapes 0xFF as 0xFF00, so an EOI (FFD9) after the first scan
        # is the real end of the image; trailing bytes after it are tolerated.
        if data.find(b"\xff\xd9", scan_offset) < 0:
            raise TruncatedImage("JPEG is truncated: no end-of-image marker after its data")
    elif fmt == "png":
        end = data.rfind(b"IEND")
        if end < 0 or end + 8 > len(data):  # chunk type + its 4-byte CRC
            raise TruncatedImage("PNG is truncated: no complete IEND chunk")
    elif fmt == "webp":
        (riff_size,) = struct.unpack_from("<I", data, 4)
        if riff_size + 8 > len(data):
            raise TruncatedImage(
                f"WebP is truncated: {len(data)} bytes, its header declares {riff_size + 8}"
            )


# --- decoding ---------------------------------------------------------------------------------


def _read_source(source: Any, limits: ImageLimits) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = source.tobytes() if isinstance(source, memoryview) else bytes(source)
        if len(data) > limits.max_bytes:
            raise ImageTooLarge(f"image data is {len(data)} bytes; the limit is {limits.max_bytes}")
        return data
    if isinstance(source, str | os.PathLike):
        path = Path(os.fspath(source))
        try:
            st = path.stat()
        except FileNotFoundError:
            raise InvalidImage(f"image file not found: {path}") from None
        except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
            detail = getattr(exc, "strerror", None) or exc
            raise InvalidImage(f"cannot read image file {path!r}: {detail}") from None
        if not path.is_file():
            raise InvalidImage(f"{path} is not a regular file")
        if st.st_size > limits.max_bytes:
            raise ImageTooLarge(
                f"image file {path} is {st.st_size} bytes; the limit is {limits.max_bytes}"
            )
        try:
            with path.open("rb") as fh:
                data = fh.read(limits.max_bytes + 1)
        except OSError as exc:
            raise InvalidImage(f"cannot read image file {path}: {exc.strerror or exc}") from None
        if len(data) > limits.max_bytes:
            raise ImageTooLarge(f"image file {path} exceeds the {limits.max_bytes}-byte limit")
        return data
    read = getattr(source, "read", None)
    if callable(read):
        try:
            chunk = read(limits.max_bytes + 1)
        except OSError as exc:
            raise InvalidImage(f"cannot read the image file object: {exc}") from None
        if isinstance(chunk, str):
            raise InvalidImage("file object is open in text mode; open it with 'rb'")
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidImage(f"file object's read() returned {type(chunk).__name__}, not bytes")
        data = bytes(chunk)
        if len(data) > limits.max_bytes:
            raise ImageTooLarge(f"image data exceeds the {limits.max_bytes}-byte limit")
        return data
    raise InvalidImage(
        f"cannot load an image from {type(source).__name__}; pass a path, bytes, a binary "
        "file object, a PIL image or a numpy array"
    )


def _decoder_error(exc: BaseException, fmt: str) -> InvalidImage:
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return ImageTooLarge(f"{fmt.upper()} decoder refused the image as too large: {exc}")
    if isinstance(exc, MemoryError):
        return ImageTooLarge(f"{fmt.upper()} image needs more memory than is available")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return TruncatedImage(f"{fmt.upper()} image is truncated: {text}")
    return InvalidImage(f"{fmt.upper()} image is corrupt and cannot be decoded: {text[:200]}")


def _decode(data: bytes, limits: ImageLimits) -> PILImage.Image:
    from PIL import Image, ImageFile

    if not data:
        raise EmptyImage("image data is empty (0 bytes)")
    fmt = _sniff(data)
    if fmt not in limits.formats:
        raise UnsupportedImage(
            f"{fmt.upper()} images are not accepted here (accepted: "
            f"{', '.join(f.upper() for f in limits.formats)})"
        )
    width, height, scan = _probe(data, fmt)
    _check_size(width, height, limits, f"{fmt.upper()} header")
    _check_complete(data, fmt, scan)
    if ImageFile.LOAD_TRUNCATED_IMAGES and fmt not in ("jpeg", "png", "webp"):
        # Someone flipped Pillow's process-wide switch. JPEG, PNG and WebP were checked for
        # completeness above; for the other formats Pillow would fill missing data silently.
        raise UnsupportedImage(
            f"PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process, so a truncated "
            f"{fmt.upper()} file would be filled in silently; kyc refuses to decode it"
        )
    try:
        bomb_limit = Image.MAX_IMAGE_PIXELS
        if bomb_limit is not None and width * height > bomb_limit:
            # Our own (larger, configured) limit was enforced above, so Pillow's bomb
            # *warning* is noise here; its error still maps to ImageTooLarge below. The
            # warnings filter is touched only on this rare path (it is process-global).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = _open(data, fmt, limits)
        else:
            im = _open(data, fmt, limits)
    except KycError:
        raise
    except Exception as exc:  # every decoder failure becomes a typed refusal
        raise _decoder_error(exc, fmt) from None
    return im


def _open(data: bytes, fmt: str, limits: ImageLimits) -> PILImage.Image:
    from PIL import Image

    im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
    _check_size(im.size[0], im.size[1], limits, f"{fmt.upper()} image")
    im.load()
    return im


def _orient(im: PILImage.Image) -> PILImage.Image:
    from PIL import ImageOps

    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: keep the pixels as stored
        return im
    return out if out is not None else im


def _white_composite(colour: npt.NDArray[Any], alpha: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Composite 8-bit colour channels over white using an 8-bit alpha channel."""
    a = alpha.astype(np.float32)[..., None] / np.float32(255.0)
    mixed = colour.astype(np.float32) * a + np.float32(255.0) * (np.float32(1.0) - a)
    out: npt.NDArray[np.uint8] = np.rint(np.clip(mixed, 0, 255)).astype(np.uint8)
    return out


def _scale16(arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """16-bit samples (clipped to 0..65535) to 8 bits: ``round(v / 257)``."""
    scaled = np.clip(arr, 0, 65535).astype(np.float32) / np.float32(257.0)
    out: npt.NDArray[np.uint8] = np.rint(scaled).astype(np.uint8)
    return out


def _pil_to_bgr(im: PILImage.Image) -> npt.NDArray[np.uint8]:
    mode = im.mode
    try:
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            grey = _scale16(np.asarray(im))
            return _grey_to_bgr(grey)
        if mode == "F":
            fl = np.asarray(im, dtype=np.float32)
            if not np.isfinite(fl).all():
                raise InvalidImage("float image holds NaN or infinite values")
            if fl.size and float(fl.min()) >= 0.0 and float(fl.max()) <= 1.0:
                fl = fl * np.float32(255.0)
            return _grey_to_bgr(np.rint(np.clip(fl, 0, 255)).astype(np.uint8))
        if mode in ("1", "L") and "transparency" not in im.info:
            return _grey_to_bgr(np.asarray(im.convert("L")))
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("1", "L", "LA", "La", "PA", "RGBa"):
            im = im.convert("RGBA")
        elif mode == "RGBX":
            im = im.convert("RGB")
        elif mode == "RGB" and "transparency" in im.info:
            im = im.convert("RGBA")
        elif mode not in ("RGB", "RGBA"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        arr: npt.NDArray[Any] = np.asarray(im)
    except KycError:
        raise
    except Exception as exc:
        raise UnsupportedImage(f"cannot convert pixel mode {mode!r} to colour: {exc}") from None
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UnsupportedImage(f"unexpected pixel layout {arr.shape} for mode {mode!r}")
    if arr.shape[2] == 4:
        arr = _white_composite(arr[..., :3], arr[..., 3])
    return _rgb_to_bgr(arr)


def _rgb_to_bgr(rgb: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Swap R and B into a new C-contiguous array (OpenCV's copy is ~20x numpy's)."""
    import cv2

    src = np.ascontiguousarray(rgb, dtype=np.uint8)
    return np.asarray(cv2.cvtColor(src, cv2.COLOR_RGB2BGR), dtype=np.uint8)


def _grey_to_bgr(grey: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    import cv2

    g = np.ascontiguousarray(grey, dtype=np.uint8)
    return np.asarray(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), dtype=np.uint8)


# --- arrays -----------------------------------------------------------------------------------


def _array_to_bgr(arr: np.ndarray, limits: ImageLimits) -> npt.NDArray[np.uint8]:
    if arr.ndim not in (2, 3):
        raise InvalidImage(
            f"image array must be HxW, HxWx1, HxWx3 or HxWx4; got {arr.ndim} dimensions {arr.shape}"
        )
    if arr.size == 0:
        raise EmptyImage(f"image array has no pixels (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        raise InvalidImage(
            f"image array has {arr.shape[2]} channels; expected 1 (grey), 3 (BGR) or 4 (BGRA)"
        )
    h, w = arr.shape[:2]
    _check_size(w, h, limits, "image array")
    if not arr.dtype.isnative:  # e.g. big-endian ">u2": same values, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = _scale16(arr)
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidImage("float image array holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImage(
                f"float image array must hold values in [0, 1]; got [{lo:g}, {hi:g}] "
                "(pass uint8 for 0..255 data)"
            )
        out = np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    elif kind in "iu":
        lo_i, hi_i = int(arr.min()), int(arr.max())
        if lo_i < 0 or hi_i > 255:
            raise InvalidImage(
                f"{arr.dtype} image array must hold values in 0..255; got {lo_i}..{hi_i} "
                "(pass uint16 for 16-bit data)"
            )
        out = arr.astype(np.uint8)
    else:
        raise InvalidImage(
            f"image array dtype {arr.dtype} is not supported; use uint8, uint16 or float in [0, 1]"
        )
    if out.ndim == 2 or out.shape[2] == 1:
        return _grey_to_bgr(out.reshape(h, w))
    if out.shape[2] == 4:
        return np.ascontiguousarray(_white_composite(out[..., :3], out[..., 3]))
    return np.array(out, dtype=np.uint8, order="C", copy=True)


# --- public -----------------------------------------------------------------------------------


def load_image(
    source: ImageSource | PILImage.Image, *, limits: ImageLimits | None = None
) -> npt.NDArray[np.uint8]:
    """Decode ``source`` into an ``HxWx3`` ``uint8`` BGR array (C-contiguous, a new array).

    ``source`` is a path (``str`` or path-like), the encoded bytes (``bytes``, ``bytearray``,
    ``memoryview``), a binary file object (read from its current position), a
    ``PIL.Image.Image``, or a numpy array (see the module docs for the array rules).
    ``limits`` defaults to :class:`ImageLimits()`.

    Raises :class:`~kyc.errors.EmptyImage`, :class:`~kyc.errors.UnsupportedImage`,
    :class:`~kyc.errors.TruncatedImage`, :class:`~kyc.errors.ImageTooLarge` or
    :class:`~kyc.errors.InvalidImage`, each saying what was wrong; never a decoder's own
    exception.
    """
    lim = limits if limits is not None else _DEFAULT_LIMITS
    if isinstance(source, np.ndarray):
        return _array_to_bgr(source, lim)
    pil_image = _as_pil_image(source)
    if pil_image is not None:
        _check_size(pil_image.size[0], pil_image.size[1], lim, "PIL image")
        try:
            pil_image.load()
        except Exception as exc:
            raise _decoder_error(exc, str(pil_image.format or "image")) from None
        return _pil_to_bgr(_orient(pil_image))
    data = _read_source(source, lim)
    im = _decode(data, lim)
    return _pil_to_bgr(_orient(im))


def _as_pil_image(source: Any) -> PILImage.Image | None:
    if isinstance(source, str | bytes | bytearray | memoryview | os.PathLike):
        return None
    mod = type(source).__module__
    if not mod.startswith("PIL."):
        return None
    from PIL import Image

    return source if isinstance(source, Image.Image) else None
