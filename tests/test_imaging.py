"""Tests for sightline.imaging: every input is built on the fly (Pillow, struct, zlib) except the
committed face photos under tests/data/faces."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from sightline.config import ImagingConfig
from sightline.imaging import (
    IMAGE_SUFFIXES,
    ImageError,
    LoadedImage,
    Skipped,
    find_photos,
    load_image,
    load_many,
    read_bytes_limited,
)

FACES = Path(__file__).parent / "data" / "faces"
PHOTO = FACES / "gallery" / "biden" / "biden.jpg"
W, H = 16, 12
WHITE = (255, 255, 255)
RED = (255, 0, 0)


# --------------------------------------------------------------------------- builders


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(mode: str, color: object, fmt: str, **kw: object) -> bytes:
    return encode(Image.new(mode, (W, H), color), fmt, **kw)


def palette(fmt: str, *, transparent: bool = False) -> bytes:
    im = Image.new("P", (W, H), 1)
    im.putpalette([0, 0, 0, 10, 200, 30])
    return encode(im, fmt, **({"transparency": 1} if transparent else {}))


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, *, depth: int = 8, color_type: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand; without ``rows`` only the first scanline is stored (tiny on disk
    whatever the declared size: decoding it would fail, so only a header check can reject it)."""
    channels = {0: 1, 2: 3}[color_type]
    if rows is None:
        rows = b"\x00" + bytes(min(width, 256) * channels * depth // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def gif_screen(width: int, height: int) -> bytes:
    """A 1x1 GIF whose logical screen (the size Pillow reports) is declared ``width`` x ``height``."""
    data = palette("GIF")
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def png_rgb16(value: tuple[int, int, int]) -> bytes:
    row = b"\x00" + struct.pack(">HHH", *value) * W
    return raw_png(W, H, depth=16, rows=row * H)


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP1 segment carrying ``payload`` inserted right after SOI."""
    assert jpeg[:2] == b"\xff\xd8" and len(payload) <= 65533
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def marked(width: int = 32, height: int = 16) -> np.ndarray:
    """Black (height, width) RGB with an 8x8 red block in the stored top-left corner."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:8, :8] = RED
    return a


def corners(rgb: np.ndarray) -> dict[str, np.ndarray]:
    return {"TL": rgb[:8, :8], "TR": rgb[:8, -8:], "BL": rgb[-8:, :8], "BR": rgb[-8:, -8:]}


def exif_with(orientation: int, **extra: object) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    for tag, value in extra.items():
        ex[int(tag.removeprefix("t"))] = value
    return ex


def code_of(source: object, **kw: object) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kw)  # type: ignore[arg-type]
    return info.value.code


# --------------------------------------------------------------------------- formats and modes

FORMATS_AND_MODES: list[tuple[str, Callable[[], bytes], str, tuple[int, int, int], int]] = [
    # id, encoded bytes, expected format, expected RGB everywhere, tolerance
    ("jpeg-rgb", lambda: solid("RGB", (200, 30, 60), "JPEG", quality=95), "JPEG", (200, 30, 60), 6),
    ("jpeg-gray", lambda: solid("L", 100, "JPEG"), "JPEG", (100, 100, 100), 2),
    ("jpeg-cmyk", lambda: solid("CMYK", (0, 255, 255, 0), "JPEG", quality=95), "JPEG", RED, 6),
    ("png-rgb", lambda: solid("RGB", (200, 30, 60), "PNG"), "PNG", (200, 30, 60), 0),
    ("png-gray", lambda: solid("L", 100, "PNG"), "PNG", (100, 100, 100), 0),
    ("png-bilevel", lambda: solid("1", 1, "PNG"), "PNG", WHITE, 0),
    ("png-palette", lambda: palette("PNG"), "PNG", (10, 200, 30), 0),
    ("png-palette-transparent", lambda: palette("PNG", transparent=True), "PNG", WHITE, 0),
    ("png-rgba-opaque", lambda: solid("RGBA", (*RED, 255), "PNG"), "PNG", RED, 0),
    ("png-rgba-clear-on-white", lambda: solid("RGBA", (*RED, 0), "PNG"), "PNG", WHITE, 0),
    ("png-rgba-half", lambda: solid("RGBA", (*RED, 128), "PNG"), "PNG", (255, 127, 127), 1),
    ("png-la-clear", lambda: solid("LA", (0, 0), "PNG"), "PNG", WHITE, 0),
    ("png-la-opaque", lambda: solid("LA", (50, 255), "PNG"), "PNG", (50, 50, 50), 0),
    ("png-i16-scaled-not-clipped", lambda: solid("I;16", 25700, "PNG"), "PNG", (100, 100, 100), 0),
    ("png-i16-max", lambda: solid("I;16", 65535, "PNG"), "PNG", WHITE, 0),
    ("png-rgb16", lambda: png_rgb16((0xC8C8, 0x1E1E, 0x3C3C)), "PNG", (200, 30, 60), 1),
    ("webp-rgb", lambda: solid("RGB", (200, 30, 60), "WEBP", lossless=True), "WEBP", (200, 30, 60), 0),
    ("webp-rgba-clear", lambda: solid("RGBA", (*RED, 0), "WEBP", lossless=True), "WEBP", WHITE, 0),
    ("bmp-rgb", lambda: solid("RGB", (200, 30, 60), "BMP"), "BMP", (200, 30, 60), 0),
    ("bmp-gray", lambda: solid("L", 100, "BMP"), "BMP", (100, 100, 100), 0),
    ("bmp-palette", lambda: palette("BMP"), "BMP", (10, 200, 30), 0),
    ("tiff-rgb", lambda: solid("RGB", (200, 30, 60), "TIFF"), "TIFF", (200, 30, 60), 0),
    ("tiff-cmyk", lambda: solid("CMYK", (0, 255, 255, 0), "TIFF"), "TIFF", RED, 0),
    ("tiff-i16", lambda: solid("I;16", 25700, "TIFF"), "TIFF", (100, 100, 100), 0),
    ("tiff-int32", lambda: solid("I", 25700, "TIFF"), "TIFF", (100, 100, 100), 0),
    ("tiff-float-unit", lambda: solid("F", 0.5, "TIFF"), "TIFF", (128, 128, 128), 0),
    ("tiff-float-255", lambda: solid("F", 100.0, "TIFF"), "TIFF", (100, 100, 100), 0),
    ("tiff-rgba-clear", lambda: solid("RGBA", (*RED, 0), "TIFF"), "TIFF", WHITE, 0),
    ("gif-palette", lambda: palette("GIF"), "GIF", (10, 200, 30), 0),
    ("gif-transparent", lambda: palette("GIF", transparent=True), "GIF", WHITE, 0),
]


@pytest.mark.parametrize(
    ("make", "fmt", "color", "tol"),
    [pytest.param(*case[1:], id=case[0]) for case in FORMATS_AND_MODES],
)
def test_every_format_and_mode_becomes_8bit_rgb(make, fmt, color, tol) -> None:
    img = load_image(make(), name="x")
    assert img.format == fmt
    assert img.size == (W, H)
    assert img.rgb.shape == (H, W, 3) and img.rgb.dtype == np.uint8
    assert img.rgb.flags.c_contiguous and not img.rgb.flags.writeable
    diff = np.abs(img.rgb.astype(int) - np.array(color)).max()
    assert diff <= tol, f"got {img.rgb[0, 0]}, expected {color}"


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF", "MPO"])
def test_multi_frame_files_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (W, H), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)
    img = load_image(data)
    assert img.format == ("JPEG" if fmt == "MPO" else fmt)  # MPO (phone JPEG) is reported as JPEG
    assert np.abs(img.rgb.astype(int) - RED).max() <= 4


# --------------------------------------------------------------------------- EXIF orientation

# orientation -> (width and height swapped?, where the stored top-left corner must end up)
ORIENTATIONS = [
    (1, False, "TL"),
    (2, False, "TR"),
    (3, False, "BR"),
    (4, False, "BL"),
    (5, True, "TL"),
    (6, True, "TR"),
    (7, True, "BR"),
    (8, True, "BL"),
    (0, False, "TL"),
    (9, False, "TL"),  # invalid values: left as stored
]


@pytest.mark.parametrize(("orientation", "swapped", "corner"), ORIENTATIONS)
def test_exif_orientation_is_applied(orientation: int, swapped: bool, corner: str) -> None:
    data = encode(Image.fromarray(marked()), "PNG", exif=exif_with(orientation))
    img = load_image(data)
    assert img.size == ((16, 32) if swapped else (32, 16))
    assert img.rgb.shape[1::-1] == img.size
    for where, block in corners(img.rgb).items():
        assert (block == RED).all() if where == corner else (block == 0).all(), where


@pytest.mark.parametrize(("orientation", "corner"), [(6, "TR"), (8, "BL")])
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
def test_exif_orientation_in_other_formats(fmt: str, orientation: int, corner: str) -> None:
    img = load_image(encode(Image.fromarray(marked()), fmt, exif=exif_with(orientation), quality=95))
    assert img.size == (16, 32)
    means = {k: v.reshape(-1, 3).mean(axis=0) for k, v in corners(img.rgb).items()}
    assert means[corner][0] > 200 and means[corner][1:].max() < 40
    assert all(m.max() < 40 for k, m in means.items() if k != corner)


def test_huge_exif_block_still_loads_and_is_honoured() -> None:
    ex = exif_with(8, t270="x" * 2_000_000)  # 270 = ImageDescription, 2 MB
    data = encode(Image.fromarray(marked()), "PNG", exif=ex)
    assert len(data) > 2_000_000
    img = load_image(data)
    assert img.size == (16, 32) and (corners(img.rgb)["BL"] == RED).all()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"Exif\x00\x00" + bytes(range(256)) * 255, id="max-size-garbage"),
        pytest.param(b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x12\x01" * 1000, id="ifd-claims-65535"),
        pytest.param(b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0", id="ifd-offset-past-end"),
    ],
)
def test_broken_exif_is_ignored_not_fatal(payload: bytes) -> None:
    data = with_app1(encode(Image.fromarray(marked()), "JPEG", quality=95), payload[:65533])
    img = load_image(data)
    assert img.size == (32, 16)  # orientation taken as 1


# --------------------------------------------------------------------------- errors


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(p)
    assert (info.value.code, info.value.name) == ("empty", "empty.jpg")
    assert str(info.value) == f"empty.jpg: {info.value.reason}"
    assert code_of(b"") == "empty"


@pytest.mark.parametrize("as_path", [True, False])
def test_file_larger_than_limit(tmp_path: Path, as_path: bool) -> None:
    data = solid("RGB", RED, "BMP")  # 16x12 BMP: 630 bytes
    data += bytes(2000)  # trailing bytes after the image still count towards the limit
    p = tmp_path / "big.bmp"
    p.write_bytes(data)
    limits = ImagingConfig(max_file_bytes=1024)
    assert code_of(p if as_path else data, limits=limits) == "too_large"
    assert load_image(p if as_path else data, limits=ImagingConfig(max_file_bytes=4096)).size == (W, H)


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        pytest.param(lambda: raw_png(30_000, 30_000), None, id="30000x30000-beyond-pillow-guard"),
        pytest.param(lambda: raw_png(9_000, 9_000), None, id="9000x9000-just-over-80Mpx"),
        pytest.param(lambda: raw_png(101, 100), ImagingConfig(max_pixels=10_000), id="configured-limit"),
        pytest.param(lambda: gif_screen(20_000, 20_000), None, id="gif-logical-screen"),
    ],
)
def test_too_many_pixels_is_rejected_from_the_header(data, limits) -> None:
    encoded = data()
    assert len(encoded) < 2000  # tiny on disk; decoding would fail as truncated, not as too big
    assert code_of(encoded, limits=limits) == "too_many_pixels"


def test_pixel_limit_is_inclusive() -> None:
    assert load_image(
        raw_png(100, 100, rows=(b"\x00" + bytes(300)) * 100), limits=ImagingConfig(max_pixels=10_000)
    ).size == (100, 100)


def _cut(data: bytes, n: int) -> bytes:
    return data[:n]


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def noise(fmt: str) -> bytes:
    """64x64 random pixels: incompressible, so half the file is half the pixels."""
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), fmt)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(lambda: _cut(PHOTO.read_bytes(), PHOTO.stat().st_size // 2), "truncated", id="jpeg-half"),
        pytest.param(lambda: _cut(PHOTO.read_bytes(), 200), "truncated", id="jpeg-in-header"),
        pytest.param(lambda: _cut(solid("RGB", RED, "PNG"), 50), "truncated", id="png-mid-idat"),
        pytest.param(lambda: _half(noise("GIF")), "truncated", id="gif-half"),
        pytest.param(lambda: _half(noise("WEBP")), "truncated", id="webp-half"),
        pytest.param(lambda: _half(noise("TIFF")), "truncated", id="tiff-half"),
        pytest.param(lambda: _half(noise("BMP")), "truncated", id="bmp-half"),
        pytest.param(lambda: raw_png(W, H)[:29] + b"\0\0\0\0" + raw_png(W, H)[33:], "corrupt", id="png-bad-crc"),
        pytest.param(lambda: b"\x89PNG\r\n\x1a\n" + b"garbage" * 4, "truncated", id="png-chunk-past-end"),
        pytest.param(lambda: b"GIF89a/*\x01\x00\x00\x00*/=1;alert(1)", "corrupt", id="gif-js-polyglot"),
    ],
)
def test_truncated_or_corrupt(make, code: str) -> None:
    assert not ImageFile.LOAD_TRUNCATED_IMAGES, "another test or import set Pillow's global"
    with pytest.raises(ImageError) as info:
        load_image(make(), name="bad.jpg")
    assert info.value.code == code
    assert str(info.value).startswith("bad.jpg: ")


def test_damaged_png_data_is_corrupt() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(pixels), "PNG"))
    i = data.index(b"IDAT") + 30
    data[i : i + 2] = bytes(b ^ 0xFF for b in data[i : i + 2])
    assert code_of(bytes(data)) == "corrupt"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"hello, this is a text file\n", "not_an_image", id="text"),
        pytest.param(b"<html><body>hi</body></html>", "not_an_image", id="html"),
        pytest.param(b"PK\x03\x04" + bytes(100), "not_an_image", id="zip"),
        pytest.param(b"%PDF-1.7\n1 0 obj\n", "unsupported_format", id="pdf"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 12\n", "unsupported_format", id="eps"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported_format", id="svg"),
        pytest.param(b'<?xml version="1.0"?>\n<svg/>', "unsupported_format", id="svg-xml"),
        pytest.param(b"\x00\x00\x00\x18ftypheic" + bytes(12), "unsupported_format", id="heic"),
        pytest.param(b"\x00\x00\x00\x1cftypavif" + bytes(12), "unsupported_format", id="avif"),
    ],
)
def test_non_images_and_unsupported_formats(data: bytes, code: str) -> None:
    assert code_of(data) == code


@pytest.mark.parametrize("fmt", ["EPS", "PSD", "ICO", "PCX", "TGA"])
def test_formats_pillow_reads_but_we_refuse(fmt: str) -> None:
    """Real files Pillow would open (EPS would then run Ghostscript on load) never reach their plugin."""
    im = Image.new("RGB", (W, H), RED)
    data = encode(im, fmt) if fmt != "PSD" else _psd()
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow alone would accept it
    assert code_of(data) in {"unsupported_format", "not_an_image"}


def _psd() -> bytes:
    """A minimal 1x1 RGB PSD (Pillow cannot write PSD)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 1, 1, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)
    return header + sections + struct.pack(">H", 0) + b"\xff\x00\x00"


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", ".jpg"), ("JPEG", ".png"), ("WEBP", ".gif"), ("BMP", "")])
def test_content_not_extension_decides(tmp_path: Path, fmt: str, suffix: str) -> None:
    p = tmp_path / f"photo{suffix}"
    p.write_bytes(solid("RGB", RED, fmt))
    img = load_image(p)
    assert (img.format, img.name, img.size) == (fmt, p.name, (W, H))


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("not a photo")
    with pytest.raises(ImageError) as info:
        load_image(p)
    assert (info.value.code, info.value.name) == ("not_an_image", "notes.jpg")


@pytest.mark.parametrize(
    "trailer",
    [
        pytest.param(b"PK\x03\x04" + bytes(200) + b"PK\x05\x06" + bytes(18), id="zip-appended"),
        pytest.param(b"<script>alert(1)</script>", id="html-appended"),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "PNG"])
def test_polyglot_trailing_data_is_ignored(fmt: str, trailer: bytes) -> None:
    """Documented rule: the image part decodes, data after its end is ignored, sha256 covers all."""
    clean = palette(fmt) if fmt == "GIF" else solid("RGB", (200, 30, 60), fmt)
    img = load_image(clean + trailer)
    assert np.array_equal(img.rgb, load_image(clean).rgb)
    assert img.sha256 == hashlib.sha256(clean + trailer).hexdigest() != load_image(clean).sha256


def test_image_after_other_content_is_not_an_image() -> None:
    assert code_of(b"<html>" + solid("RGB", RED, "JPEG")) == "not_an_image"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(lambda p: p, "unreadable", id="missing"),
        pytest.param(lambda p: (p.mkdir(), p)[1], "unreadable", id="directory"),
        pytest.param(lambda p: (os.mkfifo(p), p)[1], "unreadable", id="fifo-never-opened"),
    ],
)
def test_unreadable_paths(tmp_path: Path, make, code: str) -> None:
    path = make(tmp_path / "x.jpg")
    with pytest.raises(ImageError) as info:
        read_bytes_limited(path, 10_000)
    assert info.value.code == code
    assert code_of(path) == code


def test_read_bytes_limited_boundary(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 1024)
    assert read_bytes_limited(p, 1024) == b"x" * 1024
    with pytest.raises(ImageError) as info:
        read_bytes_limited(p, 1023)
    assert info.value.code == "too_large" and "1023" in info.value.reason


def test_image_error_contract() -> None:
    e = ImageError("a.jpg", "file is empty", "empty")
    assert isinstance(e, ValueError) and str(e) == "a.jpg: file is empty"
    again = pickle.loads(pickle.dumps(e))
    assert (again.name, again.reason, again.code) == ("a.jpg", "file is empty", "empty")
    with pytest.raises(ValueError, match="code must be one of"):
        ImageError("a.jpg", "x", "nope")


# --------------------------------------------------------------------------- real photos


@pytest.mark.parametrize("path", sorted(FACES.glob("*/**/*.jp*g")), ids=lambda p: p.name)
def test_real_photos(path: Path) -> None:
    img = load_image(path)
    assert isinstance(img, LoadedImage)
    assert img.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (img.name, img.format) == (path.name, "JPEG")
    with Image.open(path) as ref:
        assert img.rgb.shape[:2] in {ref.size[::-1], ref.size}  # swapped only if EXIF-rotated
    with pytest.raises(ValueError):
        img.rgb[0, 0, 0] = 1  # read-only


def test_name_label_for_bytes_and_paths() -> None:
    data = PHOTO.read_bytes()
    assert load_image(data).name == "<bytes>"
    assert load_image(data, name="upload-7").name == "upload-7"
    assert load_image(PHOTO, name="label").name == "label"


def test_concurrent_loads_with_different_limits() -> None:
    small = ImagingConfig(max_pixels=10_000)
    jobs = [(PHOTO, None), (PHOTO, small), (solid("RGB", RED, "PNG"), small)] * 4

    def run(job: tuple[object, ImagingConfig | None]) -> str:
        try:
            return load_image(job[0], limits=job[1]).format  # type: ignore[arg-type]
        except ImageError as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, jobs))
    assert got == ["JPEG", "too_many_pixels", "PNG"] * 4


# --------------------------------------------------------------------------- batches


def test_load_many_reports_and_skips_bad_files(tmp_path: Path) -> None:
    files = {
        "a.png": solid("RGB", RED, "PNG"),
        "b.jpg": b"just text",
        "c.jpg": PHOTO.read_bytes(),
        "d.png": b"",
        "f.jpg": _cut(PHOTO.read_bytes(), 5000),
        "g.gif": palette("GIF"),
    }
    for n, data in files.items():
        (tmp_path / n).write_bytes(data)
    paths = [tmp_path / n for n in ["a.png", "b.jpg", "c.jpg", "d.png", "e-missing.jpg", "f.jpg", "g.gif"]]
    got = list(load_many(paths, limits=ImagingConfig()))
    assert [g.name for g in got] == [p.name for p in paths]
    assert [type(g).__name__ for g in got] == [
        "LoadedImage",
        "Skipped",
        "LoadedImage",
        "Skipped",
        "Skipped",
        "Skipped",
        "LoadedImage",
    ]
    skipped = [g for g in got if isinstance(g, Skipped)]
    assert [s.code for s in skipped] == ["not_an_image", "empty", "unreadable", "truncated"]
    assert all(s.reason for s in skipped)


def test_find_photos_walks_folders(tmp_path: Path) -> None:
    layout = [
        "b/z.JPG",
        "b/a.png",
        "a/x.jpeg",
        "a/deep/y.WebP",
        "a/.hidden.jpg",
        ".git/objects/p.jpg",
        "a/notes.txt",
        "a/raw.heic",
        "c.tiff",
    ]
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    explicit = tmp_path / "a" / "notes.txt"  # named explicitly: kept whatever its suffix
    got = find_photos([tmp_path, explicit])
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    assert rel == ["a/deep/y.WebP", "a/x.jpeg", "b/a.png", "b/z.JPG", "c.tiff", "a/notes.txt"]
    assert {p.suffix.lower() for p in got[:-1]} <= IMAGE_SUFFIXES


def test_find_photos_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        find_photos([tmp_path, tmp_path / "nope"])
