"""Coverage-guided fuzz target (atheris) for :func:`kyc.image.load_image`.

Property: for any input, ``load_image`` either returns an ``HxWx3`` C-contiguous ``uint8``
array or raises a :class:`kyc.errors.InvalidImage` subclass (the errors it documents).
Anything else (another exception type, a wrong output) is a failure.

Inputs (the first byte picks the mode):

* encoded bytes (most inputs): libFuzzer mutates a corpus of real photos from
  ``$KYC_DATA_DIR`` re-encoded as JPEG (baseline, progressive, grey), PNG (RGB, RGBA,
  palette, 16-bit), WebP (lossy, lossless), GIF, TIFF and BMP, plus copies whose headers
  declare huge or zero dimensions (write them with ``--make-corpus DIR``);
* arrays: dtype, shape (0-d to 4-d, any channel count), NaN/inf, byte order, negative and
  zero strides (a zero-stride view declares a large image without allocating it) are read
  from the input with atheris' FuzzedDataProvider.

Two ways to run it::

    python fuzz/fuzz_image.py --make-corpus /tmp/corpus_image
    python fuzz/fuzz_image.py -runs=100000 /tmp/corpus_image          # stops at a failure
    KYC_FUZZ_SUMMARY=out.json python fuzz/fuzz_image.py -runs=100000 /tmp/corpus_image

With ``KYC_FUZZ_SUMMARY`` set the target does not stop at a failure: it counts every outcome
by exception type, keeps the first input of each failing type (hex, in the summary), and
writes the summary (inputs, outcomes, failures, peak RSS from ``resource.getrusage``) to that
JSON file every 1,000 inputs and at exit. ``benchmarks/reliability_fuzz.py`` drives it.
"""

from __future__ import annotations

import atexit
import io
import os
import sys
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]
import numpy as np
from _harness import Tally

with atheris.instrument_imports(include=["kyc", "PIL"]):
    # Pillow is imported lazily by kyc.image: import its decoders here so they are
    # instrumented too (coverage guidance inside the format parsers)
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        GifImagePlugin,
        Image,
        ImageOps,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    from kyc.errors import InvalidImage
    from kyc.image import ImageLimits, load_image

__all__ = ["check_one", "make_corpus", "seed_images"]

_LIMITS = ImageLimits()
_DTYPES = (
    "u1", "u2", ">u2", "i1", "i2", "i4", "i8", "u4", "u8", "f2", "f4", "f8", ">f4", "g",
    "?", "c8", "O", "U2", "M8[s]", "m8[s]", "V3",
)
_SPECIALS = (float("nan"), float("inf"), float("-inf"), -0.0, 1e300, -1.0, 256.0, 65536.0)


def seed_images(data_dir: Path) -> dict[str, bytes]:
    """Real photos from ``data_dir`` and small re-encodings of them in every format.

    Returns ``{name: encoded bytes}``: the original files (a JPEG and a PNG of real faces)
    and 64-96 px re-encodings (JPEG baseline/progressive/grey, PNG RGB/RGBA/palette/16-bit,
    WebP lossy/lossless, GIF, TIFF raw/LZW, BMP) that keep inputs small so the fuzzer runs
    fast. Raises ``FileNotFoundError`` when the photos are missing.
    """
    from PIL import Image

    jpeg = data_dir / "faces" / "face_recognition_examples" / "examples" / "obama_small.jpg"
    png = data_dir / "pad" / "replay_2019" / "spoof" / "46.png"
    out = {"orig_obama_small.jpg": jpeg.read_bytes(), "orig_replay_46.png": png.read_bytes()}
    with Image.open(jpeg) as im:
        rgb = im.convert("RGB").resize((80, 96))
    with Image.open(png) as im:
        rgb2 = im.convert("RGB").resize((64, 64))

    def enc(name: str, image: Any, fmt: str, **kw: Any) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    enc("baseline.jpg", rgb, "JPEG", quality=85)
    enc("progressive.jpg", rgb2, "JPEG", progressive=True)
    enc("grey.jpg", rgb.convert("L"), "JPEG")
    enc("rgb.png", rgb2, "PNG")
    alpha = rgb2.convert("RGBA")
    alpha.putalpha(128)
    enc("rgba.png", alpha, "PNG")
    enc("palette.png", rgb2.convert("P"), "PNG")
    enc("grey16.png", Image.fromarray(np.asarray(rgb2.convert("L"), np.uint16) * 257), "PNG")
    enc("lossy.webp", rgb, "WEBP", quality=70)
    enc("lossless.webp", rgb2, "WEBP", lossless=True)
    enc("rgb.gif", rgb2, "GIF")
    enc("raw.tif", rgb2, "TIFF")
    enc("lzw.tif", rgb2.convert("L"), "TIFF", compression="tiff_lzw")
    enc("rgb.bmp", rgb2, "BMP")
    return out


def _declare(data: bytes, width: int, height: int) -> bytes | None:
    """A copy of ``data`` whose header declares ``width`` x ``height`` (JPEG, PNG, WebP)."""
    import struct
    import zlib

    buf = bytearray(data)
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        struct.pack_into(">II", buf, 16, width, height)
        struct.pack_into(">I", buf, 29, zlib.crc32(bytes(buf[12:29])) & 0xFFFFFFFF)
        return bytes(buf)
    if buf[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 9 < len(buf):
            marker = buf[pos + 1]
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                struct.pack_into(">HH", buf, pos + 5, min(height, 65535), min(width, 65535))
                return bytes(buf)
            pos += 2 + length
        return None
    if buf[:4] == b"RIFF" and buf[12:16] == b"VP8L":
        bits = int.from_bytes(buf[21:25], "little")
        bits = (bits & ~0xFFFFFFF) | ((min(width, 16384) - 1) & 0x3FFF)
        bits |= ((min(height, 16384) - 1) & 0x3FFF) << 14
        buf[21:25] = bits.to_bytes(4, "little")
        return bytes(buf)
    return None


def make_corpus(folder: Path, data_dir: Path) -> list[Path]:
    """Write the seed corpus (real images, re-encodings, huge/zero declared sizes) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_images(data_dir)
    extra: dict[str, bytes] = {}
    for name, data in seeds.items():
        for w, h in ((65535, 65535), (30000, 2), (0, 10), (16384, 16384)):
            declared = _declare(data, w, h)
            if declared is not None:
                extra[f"declared_{w}x{h}_{name}"] = declared
        extra[f"truncated_{name}"] = data[: len(data) // 2]
    seeds.update(extra)
    seeds["empty"] = b""
    written = []
    for name, data in sorted(seeds.items()):
        path = folder / f"seed_{name}"
        path.write_bytes(b"\x00" + data)  # mode byte 0 = encoded bytes
        written.append(path)
    rng = np.random.default_rng(0)
    for k in range(8):  # mode byte 7 = an array described by the following bytes
        path = folder / f"seed_array_{k}"
        path.write_bytes(b"\x07" + rng.integers(0, 256, 64 + 512 * k, dtype=np.uint8).tobytes())
        written.append(path)
    return written


def _array(fdp: Any) -> np.ndarray:
    """Build an array (any dtype, shape, strides, special values) from the fuzzer's bytes."""
    dtype = np.dtype(fdp.PickValueInList(list(_DTYPES)))
    ndim = fdp.ConsumeIntInRange(0, 4)
    shape = tuple(fdp.ConsumeIntInRange(0, 40) for _ in range(ndim))
    if ndim == 3 and fdp.ConsumeBool():
        shape = (shape[0], shape[1], fdp.PickValueInList([1, 3, 4]))
    if fdp.ConsumeIntInRange(0, 7) == 0:
        # a zero-stride view: a big declared image backed by one element
        side = (fdp.ConsumeIntInRange(1, 30000), fdp.ConsumeIntInRange(1, 30000))
        if side[0] * side[1] > 2_000_000:  # keep memory bounded: past the pixel limit only
            side = (max(side[0], 7000), max(side[1], 7000))
        base = np.ones(1, dtype=dtype if dtype.kind != "O" else np.uint8)
        full = side + ((fdp.PickValueInList([1, 3, 4]),) if fdp.ConsumeBool() else ())
        return np.lib.stride_tricks.as_strided(base, shape=full, strides=(0,) * len(full))
    n = int(np.prod(shape)) if shape else 1
    if dtype.kind in "OUMmV":
        raw = fdp.ConsumeBytes(n * 8)
        vals = np.frombuffer(raw.ljust(n * 8, b"\x00"), dtype=np.int64)[:n]
        arr = vals.astype(dtype) if dtype.kind != "V" else np.zeros(n, dtype)
        return arr.reshape(shape)
    raw = fdp.ConsumeBytes(n * dtype.itemsize)
    arr = np.frombuffer(raw.ljust(n * dtype.itemsize, b"\x00"), dtype=dtype)[:n].copy()
    if dtype.kind in "fc" and n and fdp.ConsumeBool():
        arr[fdp.ConsumeIntInRange(0, n - 1)] = fdp.PickValueInList(list(_SPECIALS))
    elif dtype.kind in "fc" and n:
        arr = np.abs(arr.real if dtype.kind == "c" else arr) % 1.0
        arr = np.nan_to_num(arr).astype(dtype)
    arr = arr.reshape(shape)
    if ndim >= 2 and fdp.ConsumeBool():
        arr = arr[::-1, ::-1]
    elif ndim >= 2 and fdp.ConsumeBool():
        arr = np.asfortranarray(arr)
    return arr


def check_one(data: bytes) -> str:
    """Run one input; return the outcome (``"decoded ..."`` or the refusal's class name).

    Raises ``AssertionError`` for a malformed output and lets every undocumented exception
    through (that is the fuzzer's failure signal).
    """
    if not data:
        return "empty input"
    if data[0] % 8 == 7:
        fdp = atheris.FuzzedDataProvider(data[1:])
        source: Any = _array(fdp)
        what = "array"
    else:
        source = data[1:]
        what = "bytes"
    try:
        out = load_image(source, limits=_LIMITS)
    except InvalidImage as exc:
        return f"{what} refused: {type(exc).__name__}"
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.uint8
        and out.ndim == 3
        and out.shape[2] == 3
        and out.shape[0] > 0
        and out.shape[1] > 0
        and out.flags.c_contiguous
    ):
        raise AssertionError(f"load_image returned a malformed array {getattr(out, 'shape', out)}")
    return f"{what} decoded"


def _strict(data: bytes) -> None:
    check_one(data)  # the outcome string is not for libFuzzer (a return value means "reject")


def main(argv: list[str]) -> None:
    """Entry point: ``--make-corpus DIR`` writes seeds; anything else goes to libFuzzer."""
    if len(argv) >= 3 and argv[1] == "--make-corpus":
        data_dir = Path(os.environ.get("KYC_DATA_DIR", Path(__file__).parents[2] / "shared/data"))
        files = make_corpus(Path(argv[2]), data_dir)
        print(f"wrote {len(files)} seed inputs to {argv[2]}")
        return
    summary = os.environ.get("KYC_FUZZ_SUMMARY")
    if summary:
        tally = Tally(Path(summary), "load_image", check_one)
        atexit.register(tally.write)
        atheris.Setup(argv, tally.one)
    else:
        atheris.Setup(argv, _strict)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
