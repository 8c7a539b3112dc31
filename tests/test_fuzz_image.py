"""Property tests for kyc.image.load_image on hostile input (the short CI part of the fuzzing).

The property everywhere: ``load_image`` returns an ``HxWx3`` C-contiguous ``uint8`` array or
raises an :class:`~kyc.errors.InvalidImage` subclass; nothing else escapes. Encoded inputs
are mutations of real photos from ``KYC_DATA_DIR`` (re-encoded small in every supported
format so each example decodes in about a millisecond). The long coverage-guided run
(10^5 inputs per target) is ``benchmarks/reliability_fuzz.py`` with ``fuzz/fuzz_image.py``.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import as_strided

from kyc.errors import EmptyImage, ImageTooLarge, InvalidImage, TruncatedImage
from kyc.image import ImageLimits, load_image

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SMALL = ImageLimits(max_pixels=4_000_000, max_side=4096)


@pytest.fixture(scope="module")
def seeds(data_dir: Path) -> dict[str, bytes]:
    """Real face photos: two original files plus small re-encodings in every format."""
    from PIL import Image

    jpeg = data_dir / "faces" / "face_recognition_examples" / "examples" / "obama_small.jpg"
    png = data_dir / "pad" / "replay_2019" / "spoof" / "46.png"
    if not (jpeg.is_file() and png.is_file()):
        pytest.skip("seed photos not found in the data folder")
    out = {"orig.jpg": jpeg.read_bytes(), "orig.png": png.read_bytes()}
    with Image.open(jpeg) as im:
        rgb = im.convert("RGB").resize((80, 96))

    def enc(name: str, image: Any, fmt: str, **kw: Any) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    enc("a.jpg", rgb, "JPEG")
    enc("p.jpg", rgb, "JPEG", progressive=True)
    enc("a.png", rgb, "PNG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(100)
    enc("rgba.png", rgba, "PNG")
    enc("pal.png", rgb.convert("P"), "PNG")
    enc("a.webp", rgb, "WEBP", quality=60)
    enc("ll.webp", rgb, "WEBP", lossless=True)
    enc("a.gif", rgb, "GIF")
    enc("a.tif", rgb, "TIFF")
    enc("a.bmp", rgb, "BMP")
    return out


def _check(source: Any, limits: ImageLimits | None = None) -> np.ndarray | None:
    """The property: a well-formed image or an InvalidImage subclass, nothing else."""
    try:
        out = load_image(source, limits=limits)
    except InvalidImage as exc:
        assert exc.message and exc.code  # says what was wrong
        return None
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] > 0 and out.shape[1] > 0
    assert out.flags.c_contiguous and out.flags.owndata
    return out


# --- encoded bytes -------------------------------------------------------------------------


def test_seed_images_decode(seeds: dict[str, bytes]) -> None:
    for name, data in seeds.items():
        out = _check(data)
        assert out is not None, name


@FAST
@given(data=st.data())
def test_truncated_real_images_are_refused(seeds: dict[str, bytes], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(seeds)))
    blob = seeds[name]
    cut = data.draw(st.integers(0, len(blob) - 1))
    _check(blob[:cut])


@pytest.mark.parametrize("name", ["a.jpg", "p.jpg", "a.png", "rgba.png", "a.webp", "ll.webp",
                                  "orig.jpg", "orig.png"])
def test_cut_in_the_pixel_data_is_truncated_image(seeds: dict[str, bytes], name: str) -> None:
    blob = seeds[name]
    for frac in (0.5, 0.8, 0.99):
        with pytest.raises(TruncatedImage):
            load_image(blob[: int(len(blob) * frac)])


@FAST
@given(data=st.data())
def test_corrupted_real_images_never_escape(seeds: dict[str, bytes], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(seeds)))
    blob = bytearray(seeds[name])
    edits = data.draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**7),
                                         st.binary(min_size=1, max_size=8)),
                               min_size=1, max_size=6))
    for op, where, chunk in edits:
        i = where % len(blob)
        if op == 0:
            blob[i : i + len(chunk)] = chunk  # overwrite
        elif op == 1:
            blob[i:i] = chunk  # insert
        else:
            del blob[i : i + len(chunk)]  # delete
        if not blob:
            break
    _check(bytes(blob))


def _declare(blob: bytes, width: int, height: int) -> bytes:
    """``blob`` (PNG, JPEG or lossless WebP) with its header declaring width x height."""
    buf = bytearray(blob)
    if buf[:4] == b"\x89PNG":
        struct.pack_into(">II", buf, 16, width, height)
        struct.pack_into(">I", buf, 29, zlib.crc32(bytes(buf[12:29])))
    elif buf[:2] == b"\xff\xd8":
        pos = 2
        while buf[pos + 1] not in (0xC0, 0xC1, 0xC2):
            pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
        struct.pack_into(">HH", buf, pos + 5, height, width)
    else:
        assert buf[12:16] == b"VP8L"
        bits = int.from_bytes(buf[21:25], "little") & ~0xFFFFFFF
        bits |= (width - 1) | ((height - 1) << 14)
        buf[21:25] = bits.to_bytes(4, "little")
    return bytes(buf)


@FAST
@given(data=st.data())
def test_declared_dimensions_are_checked_before_decoding(
    seeds: dict[str, bytes], data: st.DataObject
) -> None:
    from PIL import Image

    name = data.draw(st.sampled_from(["a.png", "a.jpg", "p.jpg", "ll.webp", "orig.png"]))
    top = 16384 if name.endswith("webp") else (65535 if name.endswith("jpg") else 2**31 - 1)
    low = 1 if name.endswith("webp") else 0
    width = data.draw(st.one_of(st.integers(low, 64), st.integers(low, top)))
    height = data.draw(st.one_of(st.integers(low, 64), st.integers(low, top)))
    blob = _declare(seeds[name], width, height)
    if width == 0 or height == 0:
        with pytest.raises(EmptyImage):
            load_image(blob, limits=SMALL)
    elif width > SMALL.max_side or height > SMALL.max_side or width * height > SMALL.max_pixels:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the decoder was called for an image over the limits")

        with pytest.MonkeyPatch.context() as m:
            m.setattr(Image, "open", refuse)
            with pytest.raises(ImageTooLarge, match="declares"):
                load_image(blob, limits=SMALL)
    else:
        _check(blob, SMALL)


def test_huge_declared_png_is_refused_with_default_limits(seeds: dict[str, bytes]) -> None:
    for w, h in ((30000, 30000), (20001, 1), (7000, 7000), (2**31 - 1, 2**31 - 1)):
        with pytest.raises(ImageTooLarge):
            load_image(_declare(seeds["a.png"], w, h))


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b""), io.BytesIO(b"")])
def test_zero_size_input_is_empty_image(empty: Any) -> None:
    with pytest.raises(EmptyImage):
        load_image(empty)


def test_zero_size_file_is_empty_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImage):
        load_image(path)


_MAGIC = [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n",
          b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
          b"RIFF\xff\xff\xff\x7fWEBPVP8L", b"RIFF\x10\x00\x00\x00WEBPVP8X", b"BM", b"II*\x00",
          b"MM\x00*", b"GIF89a", b"GIF87a", b""]


@FAST
@given(magic=st.sampled_from(_MAGIC), tail=st.binary(max_size=600))
def test_random_bytes_behind_real_magic_numbers(magic: bytes, tail: bytes) -> None:
    _check(magic + tail)


# --- arrays --------------------------------------------------------------------------------

_DTYPES = st.one_of(
    hnp.unsigned_integer_dtypes(endianness="="), hnp.integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="), hnp.floating_dtypes(endianness=">"),
    hnp.unsigned_integer_dtypes(endianness=">", sizes=(16,)),
    hnp.complex_number_dtypes(), hnp.boolean_dtypes(), hnp.datetime64_dtypes(),
    hnp.timedelta64_dtypes(), hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
)


@FAST
@given(arr=hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_any_array_gives_an_image_or_invalid_image(arr: np.ndarray) -> None:
    before = arr.copy()
    out = _check(arr)
    np.testing.assert_array_equal(arr, before)  # the input is never modified
    if out is not None:
        assert out.shape[:2] == arr.shape[:2]
        assert not np.shares_memory(out, arr)


@FAST
@given(arr=hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12),
                                          st.sampled_from([1, 3, 4]))),
       flip=st.booleans(), transpose=st.booleans())
def test_views_decode_like_their_contiguous_copies(arr: np.ndarray, flip: bool,
                                                   transpose: bool) -> None:
    view = arr[::-1, ::-2] if flip else arr
    view = view.transpose(1, 0, 2) if transpose else view
    np.testing.assert_array_equal(load_image(view), load_image(np.ascontiguousarray(view)))
    if view.shape[2] == 3:
        np.testing.assert_array_equal(load_image(view), view)  # BGR uint8 is taken as is


@FAST
@given(arr=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)),
                      elements=st.floats(allow_nan=True, allow_infinity=True, width=64)))
def test_float_arrays_in_unit_range_or_refused(arr: np.ndarray) -> None:
    finite = bool(np.isfinite(arr).all())
    if finite and arr.min() >= 0.0 and arr.max() <= 1.0:
        out = load_image(arr)
        np.testing.assert_array_equal(out[..., 0], np.rint(arr.astype(np.float32) * 255))
    else:
        with pytest.raises(InvalidImage):
            load_image(arr)


@pytest.mark.parametrize("shape", [(10**6, 10**6), (50_000, 50_000, 3), (20_001, 1, 4),
                                   (7000, 7000), (2**40, 2)])
def test_huge_zero_stride_views_are_refused_without_allocating(shape: tuple[int, ...]) -> None:
    view = as_strided(np.ones(1, np.float64), shape=shape, strides=(0,) * len(shape))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with pytest.raises(ImageTooLarge):
            load_image(view)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"refusing a declared {shape} array allocated {peak} bytes"


@pytest.mark.parametrize("dtype", ["u1", "u2", "i8", "f2", "f4", "f8"])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_array_conversion_memory_is_proportional_to_pixels(dtype: str,
                                                           channels: int | None) -> None:
    """Numpy memory per pixel while converting a (zero-stride) 400x500 array stays bounded."""
    shape = (400, 500) if channels is None else (400, 500, channels)
    view = as_strided(np.ones(1, dtype), shape=shape, strides=(0,) * len(shape))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = load_image(view)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.shape == (400, 500, 3)
    # measured: 14-55 bytes per pixel (the float32 white composite of BGRA is the largest)
    assert peak / (400 * 500) < 64


@pytest.mark.parametrize("source", [
    "/definitely/not/here.jpg", "bad\x00path.png", ".", io.StringIO("text mode"), 42, None,
    3.5, [1, 2, 3], {"a": 1}, object(), np.float64(1.0),
])
def test_other_sources_are_invalid_image(source: Any) -> None:
    with pytest.raises(InvalidImage):
        load_image(source)


@FAST
@given(name=st.text(min_size=1, max_size=40))
def test_random_paths_are_invalid_image(name: str) -> None:
    _check(name)


@pytest.mark.parametrize("dtype", [">u2", "<u2", ">f4", ">i4"])
def test_non_native_byte_order_reads_like_native(dtype: str) -> None:
    arr = np.full((2, 3), 65535 if "u2" in dtype else (0.5 if "f" in dtype else 200), dtype=dtype)
    native = arr.astype(arr.dtype.newbyteorder("="))
    np.testing.assert_array_equal(load_image(arr), load_image(native))


def test_atheris_target_short_run(tmp_path: Path, data_dir: Path) -> None:
    """1,000 coverage-guided inputs through fuzz/fuzz_image.py (the long run is 10^5)."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("atheris")
    script = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_image.py"
    env = dict(os.environ, KYC_DATA_DIR=str(data_dir), KYC_FUZZ_SUMMARY=str(tmp_path / "s.json"))
    subprocess.run([sys.executable, str(script), "--make-corpus", str(tmp_path / "corpus")],
                   env=env, check=True, capture_output=True)
    proc = subprocess.run(
        [sys.executable, str(script), "-runs=1000", "-seed=7", "-len_control=0",
         "-max_len=65536", "-rss_limit_mb=2048", str(tmp_path / "corpus")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["inputs"] == 1000
    assert summary["failures"] == {}, summary["examples"]
