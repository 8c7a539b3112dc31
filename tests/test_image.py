"""Safe image input: every refusal is a typed error, every conversion gives 8-bit BGR."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from kyc.errors import (
    EmptyImage,
    ImageTooLarge,
    InvalidImage,
    KycError,
    TruncatedImage,
    UnsupportedImage,
)
from kyc.image import ImageHeader, ImageLimits, load_image, probe_image

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)  # H=40, W=60, RGB order


def encode(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_only(width: int, height: int, *, colour_type: int = 2) -> bytes:
    """A PNG that declares ``width`` x ``height`` with one tiny IDAT and an IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Path:
    """A real colour JPEG without EXIF rotation."""
    return data_dir / "faces" / "face_recognition_examples" / "examples" / "obama-480p.jpg"


# --- every accepted source ------------------------------------------------------------------


def test_path_bytes_file_object_and_views_give_the_same_pixels(photo: Path) -> None:
    data = photo.read_bytes()
    ref = load_image(photo)
    assert ref.shape == (480, 853, 3) and ref.dtype == np.uint8 and ref.flags.c_contiguous
    for source in (
        str(photo),
        data,
        bytearray(data),
        memoryview(data),
        io.BytesIO(data),
        Image.open(photo),
    ):
        assert np.array_equal(load_image(source), ref), type(source)
    with photo.open("rb") as fh:
        assert np.array_equal(load_image(fh), ref)


def test_decoded_jpeg_matches_opencv(photo: Path) -> None:
    ours = load_image(photo).astype(np.int16)
    theirs = cv2.imread(str(photo), cv2.IMREAD_COLOR).astype(np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1


def test_format_is_sniffed_not_taken_from_the_file_name(data_dir: Path) -> None:
    webp_named_jpg = data_dir / "faces" / "celebrities13" / "img47.jpg"
    assert probe_image(webp_named_jpg.read_bytes()).format == "webp"
    img = load_image(webp_named_jpg)
    assert img.shape == (1800, 1350, 3)
    theirs = cv2.imread(str(webp_named_jpg), cv2.IMREAD_COLOR)
    assert np.abs(img.astype(np.int16) - theirs).mean() < 1.0


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_round_trip_exactly(fmt: str, kw: dict[str, Any]) -> None:
    out = load_image(encode(Image.fromarray(RGB), fmt, **kw))
    assert np.array_equal(out, bgr(RGB))


def test_channel_order_is_bgr() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255  # RGB red
    out = load_image(encode(Image.fromarray(red), "PNG"))
    assert out[0, 0].tolist() == [0, 0, 255]


def test_lossy_formats_decode_close_to_the_original() -> None:
    smooth = np.repeat(np.repeat(RGB[::8, ::8], 8, 0), 8, 1)[:40, :60]
    for fmt, kw in (("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})):
        out = load_image(encode(Image.fromarray(smooth), fmt, **kw))
        assert out.shape == (40, 60, 3)
        assert np.abs(out.astype(np.int16) - bgr(smooth)).mean() < 12, fmt


def test_gif_palette_image() -> None:
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = load_image(encode(pal, "GIF"))
    assert np.array_equal(out, bgr(np.asarray(pal.convert("RGB"))))


# --- EXIF orientation -----------------------------------------------------------------------

_INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    upright = Image.fromarray(RGB)
    stored = upright if orientation == 1 else upright.transpose(_INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(encode(stored, "PNG", exif=exif))
    assert np.array_equal(out, bgr(RGB))


def test_real_phone_photos_stored_rotated_are_turned_upright(data_dir: Path) -> None:
    path = data_dir / "pad" / "silent_face_samples" / "images" / "sample" / "image_T1.jpg"
    with Image.open(path) as im:
        assert im.size == (640, 480) and im.getexif().get(0x0112) == 6
    out = load_image(path)
    assert out.shape == (640, 480, 3)  # portrait after rotation
    theirs = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV applies EXIF independently
    assert theirs.shape == out.shape
    assert np.abs(out.astype(np.int16) - theirs).max() <= 1


def test_an_invalid_orientation_value_leaves_the_pixels_as_stored(data_dir: Path) -> None:
    path = data_dir / "pad" / "silent_face_samples" / "images" / "sample" / "image_T2.jpg"
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 0
    assert load_image(path).shape == (2160, 1617, 3)


# --- pixel modes ----------------------------------------------------------------------------


def test_grey_becomes_three_equal_channels() -> None:
    grey = RGB[..., 0]
    for fmt in ("PNG", "JPEG", "TIFF"):
        out = load_image(encode(Image.fromarray(grey, "L"), fmt))
        assert out.shape == (40, 60, 3)
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
        if fmt != "JPEG":
            assert np.array_equal(out[..., 0], grey)


def test_bilevel_image() -> None:
    bits = Image.fromarray(RGB[..., 0] > 127)
    assert bits.mode == "1"
    out = load_image(encode(bits, "PNG"))
    assert set(np.unique(out).tolist()) == {0, 255}
    assert np.array_equal(out[..., 0] == 255, RGB[..., 0] > 127)


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)  # RGB under the alpha
    rgba[..., 3] = [[0, 128, 255], [255, 0, 64]]
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")).astype(np.float64)
    a = rgba[..., 3:4] / 255.0
    expected = np.rint(rgba[..., :3] * a + 255.0 * (1.0 - a))[..., ::-1]
    assert np.array_equal(out, expected)
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white, not black
    assert out[0, 2].tolist() == [0, 100, 200]  # opaque -> the colour itself


def test_real_rgba_png_from_the_examples(data_dir: Path) -> None:
    path = data_dir / "faces" / "face_recognition_examples" / "examples" / "alex-lacamoire.png"
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        rgba = np.asarray(im).astype(np.float64)
    a = rgba[..., 3:4] / 255.0
    expected = np.rint(rgba[..., :3] * a + 255.0 * (1.0 - a))[..., ::-1]
    assert np.array_equal(load_image(path), expected)


def test_grey_with_alpha_is_composited_on_white() -> None:
    la = np.stack([np.full((2, 2), 10, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)], -1)
    out = load_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 10, 10]


def test_palette_with_a_transparent_colour() -> None:
    pal = Image.new("P", (3, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putdata([0, 1, 0])
    out = load_image(encode(pal, "PNG", transparency=0))
    assert out[0].tolist() == [[255, 255, 255], [0, 255, 0], [255, 255, 255]]
    assert load_image(encode(pal, "PNG"))[0, 0].tolist() == [0, 0, 255]


def test_cmyk_jpeg_converts_like_pillow() -> None:
    cmyk = Image.fromarray(RGB).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
        expected = bgr(np.asarray(im.convert("RGB")))
    assert np.array_equal(load_image(data), expected)


def test_16_bit_grey_png_is_scaled_to_8_bits() -> None:
    grey16 = RNG.integers(0, 65536, (30, 20), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", grey16)
    assert ok
    with Image.open(io.BytesIO(buf.tobytes())) as im:
        assert im.mode.startswith("I;16")
    out = load_image(buf.tobytes())
    expected = np.rint(grey16 / 257.0).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


def test_16_bit_colour_png_keeps_its_colours() -> None:
    colour16 = RNG.integers(0, 65536, (30, 20, 3), dtype=np.uint16)  # BGR
    ok, buf = cv2.imencode(".png", colour16)
    assert ok
    out = load_image(buf.tobytes()).astype(np.int16)
    assert np.abs(out - np.rint(colour16 / 257.0)).max() <= 1


def test_32_bit_integer_grey_is_read_as_16_bit_data() -> None:
    values = np.array([[0, 257, 65535, 70000]], np.int32)
    out = load_image(encode(Image.fromarray(values, "I"), "TIFF"))
    assert out[0, :, 0].tolist() == [0, 1, 255, 255]


def test_float_grey_tiff() -> None:
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert load_image(encode(Image.fromarray(unit, "F"), "TIFF"))[0, :, 0].tolist() == [0, 128, 255]
    wide = np.array([[-5.0, 100.0, 300.0]], np.float32)
    assert load_image(encode(Image.fromarray(wide, "F"), "TIFF"))[0, :, 0].tolist() == [0, 100, 255]
    bad = np.array([[0.0, np.nan]], np.float32)
    with pytest.raises(InvalidImage, match="NaN"):
        load_image(encode(Image.fromarray(bad, "F"), "TIFF"))


# --- ndarray input --------------------------------------------------------------------------


def test_uint8_arrays_keep_their_values_and_are_copied() -> None:
    src = bgr(RGB)
    out = load_image(src)
    assert np.array_equal(out, src) and not np.shares_memory(out, src)
    strided = src[::2, ::3]
    assert np.array_equal(load_image(strided), strided) and load_image(strided).flags.c_contiguous


def test_grey_arrays_in_two_and_three_dimensions() -> None:
    g = RGB[..., 1]
    assert np.array_equal(load_image(g), np.repeat(g[..., None], 3, 2))
    assert np.array_equal(load_image(g[..., None]), np.repeat(g[..., None], 3, 2))


def test_bgra_arrays_are_composited_on_white() -> None:
    bgra = np.zeros((1, 2, 4), np.uint8)
    bgra[..., :3] = (10, 20, 30)
    bgra[..., 3] = (0, 255)
    assert load_image(bgra)[0].tolist() == [[255, 255, 255], [10, 20, 30]]


def test_uint16_float_and_small_int_arrays() -> None:
    assert load_image(np.array([[0, 257, 65535]], np.uint16))[0, :, 0].tolist() == [0, 1, 255]
    assert load_image(np.array([[0.0, 0.5, 1.0]], np.float64))[0, :, 0].tolist() == [0, 128, 255]
    assert load_image(np.array([[0, 7, 255]], np.int64))[0, :, 0].tolist() == [0, 7, 255]


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.zeros((0, 5, 3), np.uint8), EmptyImage, "no pixels"),
        (np.zeros((5, 0), np.uint8), EmptyImage, "no pixels"),
        (np.zeros(5, np.uint8), InvalidImage, "1 dimensions"),
        (np.zeros((2, 5, 5, 3), np.uint8), InvalidImage, "4 dimensions"),
        (np.zeros((5, 5, 2), np.uint8), InvalidImage, "2 channels"),
        (np.zeros((5, 5, 5), np.uint8), InvalidImage, "5 channels"),
        (np.array([[0.0, np.nan]]), InvalidImage, "NaN or infinite"),
        (np.array([[0.0, np.inf]], np.float32), InvalidImage, "NaN or infinite"),
        (np.array([[0.0, 255.0]]), InvalidImage, r"\[0, 1\]"),
        (np.array([[-0.1, 0.5]]), InvalidImage, r"\[0, 1\]"),
        (np.array([[0, 300]], np.int32), InvalidImage, "0..255"),
        (np.array([[-1, 3]], np.int16), InvalidImage, "0..255"),
        (np.zeros((2, 2), bool), InvalidImage, "dtype bool"),
        (np.zeros((2, 2), complex), InvalidImage, "dtype complex"),
        (np.zeros((2, 2), object), InvalidImage, "dtype object"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, error: type[KycError], message: str) -> None:
    with pytest.raises(error, match=message):
        load_image(array)


def test_huge_arrays_are_refused_before_any_work() -> None:
    view = np.broadcast_to(np.uint8(0), (30_000, 30_000))  # no memory behind it
    with pytest.raises(ImageTooLarge, match="30000x30000"):
        load_image(view)


# --- refusals before decoding ---------------------------------------------------------------


@pytest.mark.parametrize("source", [b"", bytearray(), memoryview(b""), io.BytesIO(b"")])
def test_empty_input_is_refused(source: Any) -> None:
    with pytest.raises(EmptyImage, match="empty"):
        load_image(source)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(EmptyImage):
        load_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.7\n...", "PDF"),
        (b"PK\x03\x04" + b"\x00" * 30, "ZIP"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00", "video"),
        (b"<!DOCTYPE html><html>", "HTML"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "not WebP"),
        (b"hello, this is not an image", "not a recognised image"),
        (bytes(range(256)), "not a recognised image"),
    ],
)
def test_non_images_are_unsupported(data: bytes, message: str) -> None:
    with pytest.raises(UnsupportedImage, match=message):
        load_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused(fmt: str, keep: float) -> None:
    data = encode(Image.fromarray(RGB), fmt)
    with pytest.raises(TruncatedImage):
        load_image(data[: int(len(data) * keep)])


def test_truncated_real_photos_are_refused(photo: Path, data_dir: Path) -> None:
    data = photo.read_bytes()
    for cut in (20, 600, len(data) // 3, len(data) - 2):
        with pytest.raises(TruncatedImage):
            load_image(data[:cut])
    # a truncated file padded with zeros (a broken upload) is still truncated
    with pytest.raises(TruncatedImage, match="end-of-image"):
        load_image(data[: len(data) // 2] + b"\x00" * 4096)
    png = data_dir / "faces" / "face_recognition_examples" / "examples" / "alex-lacamoire.png"
    raw = png.read_bytes()
    for cut in (30, len(raw) // 2, len(raw) - 1):
        with pytest.raises(TruncatedImage):
            load_image(raw[:cut])


def test_truncated_files_stay_refused_when_pillow_is_told_to_load_them(
    photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = photo.read_bytes()
    with pytest.raises(TruncatedImage):
        load_image(data[: len(data) // 2])
    assert load_image(data).shape == (480, 853, 3)  # complete files still load
    with pytest.raises(UnsupportedImage, match="LOAD_TRUNCATED_IMAGES"):
        load_image(encode(Image.fromarray(RGB), "BMP"))


def test_bytes_after_the_end_of_a_jpeg_are_tolerated(photo: Path) -> None:
    data = photo.read_bytes()
    assert np.array_equal(load_image(data + b"\x00" * 100 + b"trailer"), load_image(data))


def test_corrupt_compressed_data_is_refused_with_a_typed_error() -> None:
    data = bytearray(encode(Image.fromarray(RGB), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = b"\xff" * 40
    with pytest.raises(InvalidImage, match="PNG"):
        load_image(bytes(data))


def test_malformed_jpeg_structure_is_refused(photo: Path) -> None:
    with pytest.raises(InvalidImage, match="before any image data"):
        load_image(b"\xff\xd8\xff\xd9")
    with pytest.raises(InvalidImage, match="no SOF"):
        load_image(b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 6 + b"\xff\xd9")
    with pytest.raises(InvalidImage, match="expected a marker"):
        load_image(b"\xff\xd8\xff\xe0\x00\x04ab\x12\x34")


def test_a_30000_square_png_header_is_refused_without_allocating() -> None:
    bomb = png_header_only(30_000, 30_000)
    assert probe_image(bomb) == ImageHeader("png", 30_000, 30_000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match="30000x30000"):
            load_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the decoded image would need 2.7 GB


def test_pixel_limit_without_a_side_over_the_limit() -> None:
    tall = png_header_only(19_000, 19_000)  # 361 MP, each side under 20000
    with pytest.raises(ImageTooLarge, match="361000000 pixels; the limit is 40000000"):
        load_image(tall)


def _jpeg_with_size(photo: bytes, width: int, height: int) -> bytes:
    data = bytearray(photo)
    pos = 2
    while True:
        marker = data[pos + 1]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, pos + 5, height, width)
            return bytes(data)
        pos += 2 + length


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "bmp", "gif", "tiff"])
def test_oversized_headers_of_every_format_are_refused(fmt: str, photo: Path) -> None:
    if fmt == "jpeg":
        data = _jpeg_with_size(photo.read_bytes(), 30_000, 30_000)
    elif fmt == "webp":
        vp8x = struct.pack("<I", 0) + (29_999).to_bytes(3, "little") * 2
        body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x
        data = b"RIFF" + struct.pack("<I", len(body)) + body
    elif fmt == "bmp":
        data = b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 30_000, -30_000) + b"\x00" * 30
    elif fmt == "gif":
        data = b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + b"\x00" * 10
    else:
        entries = struct.pack("<HHII", 256, 4, 1, 30_000) + struct.pack("<HHII", 257, 4, 1, 30_000)
        data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\x00" * 4
    header = probe_image(data)
    assert header.format == fmt and header.width * header.height >= 30_000 * 30_000
    with pytest.raises(ImageTooLarge):
        load_image(data)


def test_configurable_limits(photo: Path) -> None:
    data = photo.read_bytes()
    with pytest.raises(ImageTooLarge, match="limit is 100000"):
        load_image(data, limits=ImageLimits(max_pixels=100_000))
    with pytest.raises(ImageTooLarge, match="per side"):
        load_image(photo, limits=ImageLimits(max_side=800))
    for source in (data, photo, io.BytesIO(data)):
        with pytest.raises(ImageTooLarge, match="1000"):
            load_image(source, limits=ImageLimits(max_bytes=1000))
    with pytest.raises(ImageTooLarge):
        load_image(np.zeros((10, 10), np.uint8), limits=ImageLimits(max_pixels=99))
    assert load_image(data, limits=ImageLimits(max_pixels=480 * 853)).shape == (480, 853, 3)
    with pytest.raises(ValueError, match="positive"):
        ImageLimits(max_pixels=0)
    with pytest.raises(ValueError, match="subset"):
        ImageLimits(formats=("jpeg", "heic"))


def test_formats_can_be_restricted(photo: Path) -> None:
    selfie_only = ImageLimits(formats=("jpeg", "png", "webp"))
    assert load_image(photo, limits=selfie_only).shape == (480, 853, 3)
    with pytest.raises(UnsupportedImage, match="TIFF images are not accepted"):
        load_image(encode(Image.fromarray(RGB), "TIFF"), limits=selfie_only)


def test_pillows_own_bomb_checks_never_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.fromarray(RGB), "PNG")  # 2400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # warns above 2000, fails above 4000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(data).shape == (40, 60, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLarge, match="too large"):
        load_image(data)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (12345, "from int"),
        ([1, 2, 3], "from list"),
        (io.StringIO("text"), "text mode"),
    ],
)
def test_unusable_sources_are_refused(source: Any, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        load_image(source)


def test_missing_paths_and_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage, match="not found"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(InvalidImage, match="not a regular file"):
        load_image(tmp_path)
    with pytest.raises(InvalidImage, match="cannot read"):
        load_image("photo\x00.jpg")


# --- probe_image ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kw", "name"),
    [
        ("JPEG", {}, "jpeg"),
        ("JPEG", {"progressive": True}, "jpeg"),
        ("PNG", {}, "png"),
        ("WEBP", {"quality": 80}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
        ("WEBP", {"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"}, "webp"),
        ("BMP", {}, "bmp"),
        ("TIFF", {}, "tiff"),
        ("GIF", {}, "gif"),
    ],
)
def test_probe_reads_the_declared_size(fmt: str, kw: dict[str, Any], name: str) -> None:
    img = Image.fromarray(RGB)
    assert probe_image(encode(img, fmt, **kw)) == ImageHeader(name, 60, 40)


def test_probe_of_a_big_endian_tiff() -> None:
    data = encode(Image.fromarray(RGB[..., 0], "L").convert("I;16B"), "TIFF")
    assert data[:2] == b"MM"
    assert probe_image(data) == ImageHeader("tiff", 60, 40)
    assert load_image(data).shape == (40, 60, 3)


def test_probe_refuses_empty_and_unknown_input() -> None:
    with pytest.raises(EmptyImage):
        probe_image(b"")
    with pytest.raises(UnsupportedImage):
        probe_image(b"GIF12a")
    with pytest.raises(TruncatedImage):
        probe_image(b"\x89PNG\r\n\x1a\n\x00\x00")


# --- never a crash --------------------------------------------------------------------------


def _small_samples() -> list[bytes]:
    img = Image.fromarray(RGB[:16, :16])
    return [
        encode(img, "JPEG"),
        encode(img, "PNG"),
        encode(img, "WEBP"),
        encode(img, "GIF"),
        encode(img, "BMP"),
        encode(img, "TIFF"),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(_small_samples()),
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
)
def test_mangled_images_give_an_image_or_a_typed_error(
    sample: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(sample[: max(cut, 1)] if cut < len(sample) else sample)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        out = load_image(bytes(data))
    except KycError as exc:
        assert isinstance(exc, InvalidImage) and exc.message
    else:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_typed_error(data: bytes) -> None:
    try:
        load_image(data)
    except KycError as exc:
        assert isinstance(exc, InvalidImage)


def test_module_examples_run() -> None:
    import doctest

    import kyc.image

    assert doctest.testmod(kyc.image).failed == 0
