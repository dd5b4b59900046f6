"""A corpus of bad (and awkward-but-valid) photos, built on the fly, with the expected outcome of each.

Two entry points:

- :func:`corpus` (stable API, used by ``tests/cli/test_cli.py``): file name -> (bytes, expected
  ``ImageError`` code) for the photos that must be *refused*.
- :func:`full_corpus` (``tests/security/``): every :class:`BadInput` -- the refused ones above plus more
  refused ones (polyglots that start as something else, bombs in other formats, damaged EXIF-less
  headers, non-images) and the awkward photos that must be *accepted*: CMYK JPEG, 16-bit PNG (grey and
  RGB), animated GIF / APNG (first frame), wrong extension, huge or garbage EXIF blocks, a JPEG with a
  ZIP or HTML appended (a polyglot is judged by what it starts with, see ``sightline.imaging``).

Expected outcomes (:attr:`BadInput.expect`):

- ``"accepted"``: decodes, one face of the fixture person is found (enrolment adds a template, search
  finds one face);
- ``"no_face"``: decodes, but there is no face in it (enrolment skips it with code ``no_face``, search
  answers zero faces);
- anything else: the :class:`sightline.imaging.ImageError` code the photo is refused with.

Sources: the committed fixture photo (``tests/data/faces/gallery/biden/biden.jpg``, shrunk to 640 px
tall so every entry decodes in milliseconds) and hand-built headers (a 30000x30000 PNG of a few hundred
bytes). Everything is deterministic (same bytes on every call).
"""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURE_JPEG = Path(__file__).parent / "data" / "faces" / "gallery" / "biden" / "biden.jpg"

#: The expected outcomes that are not ImageError codes.
ACCEPTED = "accepted"
NO_FACE = "no_face"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30000) -> bytes:
    """A PNG whose header declares side x side RGB pixels (900 Mpx) in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def corpus() -> dict[str, tuple[bytes, str]]:
    """The refused photos of the CLI tests: file name -> (bytes, expected ImageError code). Stable."""
    jpeg = FIXTURE_JPEG.read_bytes()
    return {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "bomb.png": (bomb_png(), "too_many_pixels"),
        "notes.jpg": (b"this is not a photo\n" * 20, "not_an_image"),
        "page.png": (b"<!doctype html><script>alert(1)</script>", "not_an_image"),
        "scan.jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported_format"),
        "garbage.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt"),
        # a file name that is not valid UTF-8 (Linux allows any bytes)
        os.fsdecode(b"invalid-utf8-\xff.jpg"): (b"\xff\xd8\xff", "corrupt"),
    }


def printable(name: str) -> str:
    """How a name is shown to people and in JSON: undecodable bytes become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class BadInput:
    """One corpus entry.

    name:   the file name (written to disk as is; may hold undecodable bytes as surrogates).
    data:   the file's bytes.
    expect: ``"accepted"``, ``"no_face"`` or the expected ImageError code (see the module docstring).
    what:   one line saying what the entry is, for reports.
    """

    name: str
    data: bytes
    expect: str
    what: str

    @property
    def refused(self) -> bool:
        return self.expect not in (ACCEPTED, NO_FACE)


# -- builders -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _face_rgb() -> np.ndarray:
    """The fixture face, (640, W, 3) uint8 RGB (shrunk from 2204 px tall)."""
    with Image.open(FIXTURE_JPEG) as im:
        im = im.convert("RGB")
        scale = 640 / im.height
        return np.asarray(im.resize((round(im.width * scale), 640), Image.LANCZOS))


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def face_jpeg() -> bytes:
    """The shrunk fixture face as a plain baseline JPEG."""
    return _encode(Image.fromarray(_face_rgb()), "JPEG", quality=90)


def cmyk_jpeg() -> bytes:
    return _encode(Image.fromarray(_face_rgb()).convert("CMYK"), "JPEG", quality=90)


def grey16_png() -> bytes:
    """16-bit greyscale PNG (values 0..65535, the full range used)."""
    grey = np.asarray(Image.fromarray(_face_rgb()).convert("L")).astype(np.uint16) * 257
    return _encode(Image.fromarray(grey), "PNG")


def rgb48_png() -> bytes:
    """16-bit-per-channel RGB PNG (Pillow cannot write these, so the PNG is built by hand)."""
    rgb = _face_rgb().astype(">u2") * 257
    h, w = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def animated(fmt: str) -> bytes:
    """A 3-frame animation (GIF or APNG) whose FIRST frame is the face and the others plain grey."""
    face = Image.fromarray(_face_rgb())
    grey = Image.new("RGB", face.size, (128, 128, 128))
    frames = [face, grey, grey.copy()]
    if fmt == "GIF":
        frames = [f.quantize(256) for f in frames]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=200, loop=0)


def huge_exif_jpeg() -> bytes:
    """A JPEG with a ~60 KB EXIF block (an ImageDescription of 60000 characters) and orientation 1."""
    exif = Image.Exif()
    exif[0x010E] = "A" * 60_000
    exif[0x0112] = 1
    return _encode(Image.fromarray(_face_rgb()), "JPEG", quality=90, exif=exif.tobytes())


def _insert_after_soi(jpeg: bytes, segments: list[bytes]) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def _app(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def garbage_exif_jpeg() -> bytes:
    """An APP1 'Exif' segment full of random bytes (an IFD offset pointing nowhere)."""
    rnd = random.Random(6).randbytes(4000)
    return _insert_after_soi(face_jpeg(), [_app(0xE1, b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0" + rnd)])


def exif_flood_jpeg(segments: int = 40) -> bytes:
    """About 2.6 MB of APP1/APP2 segments (each at the 65533-byte limit) before the image data."""
    body = random.Random(7).randbytes(65_000)
    segs = [_app(0xE1 if i % 2 else 0xE2, b"Exif\x00\x00" + body if i % 2 else body) for i in range(segments)]
    return _insert_after_soi(face_jpeg(), segs)


def _zip_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
        z.writestr("index.html", "<html><script>alert(1)</script></html>")
    return buf.getvalue()


def bomb_gif(side: int = 65535) -> bytes:
    """A GIF whose screen and first frame declare side x side pixels (4.3 Gpx) in a few dozen bytes."""
    head = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def bomb_jpeg(side: int = 65000) -> bytes:
    """The fixture JPEG with its frame header (SOF0) patched to declare side x side pixels."""
    data = bytearray(face_jpeg())
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", side, side)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker in the fixture JPEG")


@lru_cache(maxsize=1)
def _full() -> tuple[BadInput, ...]:
    jpeg = face_jpeg()
    png = _encode(Image.fromarray(_face_rgb()), "PNG")
    webp = _encode(Image.fromarray(_face_rgb()), "WEBP", quality=90)
    blank = _encode(Image.new("RGB", (64, 64), (128, 128, 128)), "PNG")
    whats = {
        "empty.jpg": "zero-byte file",
        "truncated.jpg": "JPEG cut in half",
        "bomb.png": "decompression bomb: PNG header declaring 30000x30000 px",
        "notes.jpg": "a text file named .jpg (non-image)",
        "page.png": "an HTML page named .png",
        "scan.jpg": "a PDF named .jpg",
        "garbage.png": "PNG signature followed by garbage",
        os.fsdecode(b"invalid-utf8-\xff.jpg"): "file name that is not valid UTF-8, 3 bytes of JPEG",
    }
    entries = [BadInput(n, d, code, whats[n]) for n, (d, code) in corpus().items()]
    entries += [
        # refused
        BadInput("truncated.png", png[: len(png) // 2], "truncated", "PNG cut in half"),
        BadInput("truncated.webp", webp[: len(webp) // 2], "truncated", "WebP cut in half"),
        BadInput("bomb.gif", bomb_gif(), "too_many_pixels", "decompression bomb: GIF declaring 65535x65535 px"),
        BadInput("bomb.jpg", bomb_jpeg(), "too_many_pixels", "decompression bomb: JPEG SOF declaring 65000x65000 px"),
        BadInput(
            "archive.jpg", _zip_of("face.jpg", jpeg), "not_an_image", "polyglot: a ZIP (holding a JPEG) named .jpg"
        ),
        BadInput(
            "html-first.jpg",
            b"<html><body><script>alert(1)</script>" + jpeg,
            "not_an_image",
            "polyglot: HTML followed by a JPEG",
        ),
        BadInput("program.jpg", b"\x7fELF\x02\x01\x01" + bytes(200), "not_an_image", "an ELF executable named .jpg"),
        BadInput("noise.jpg", random.Random(1).randbytes(4096), "not_an_image", "4 KB of random bytes"),
        BadInput(
            "vector.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported_format", "SVG"
        ),
        BadInput("phone.jpg", b"\x00\x00\x00\x18ftypheic" + bytes(64), "unsupported_format", "HEIC header"),
        BadInput("header-only.jpg", jpeg[:200], "truncated", "JPEG of 200 bytes (headers only)"),
        # accepted (valid images, awkward)
        BadInput("cmyk.jpg", cmyk_jpeg(), ACCEPTED, "CMYK JPEG"),
        BadInput("grey16.png", grey16_png(), ACCEPTED, "16-bit greyscale PNG"),
        BadInput("rgb48.png", rgb48_png(), ACCEPTED, "16-bit-per-channel RGB PNG"),
        BadInput("animated.gif", animated("GIF"), ACCEPTED, "animated GIF, face on the first frame"),
        BadInput("animated.png", animated("PNG"), ACCEPTED, "animated PNG (APNG), face on the first frame"),
        BadInput("jpeg-named.png", jpeg, ACCEPTED, "wrong extension: JPEG bytes named .png"),
        BadInput("png-named.gif", png, ACCEPTED, "wrong extension: PNG bytes named .gif"),
        BadInput("webp-named.txt", webp, ACCEPTED, "wrong extension: WebP bytes named .txt"),
        BadInput("huge-exif.jpg", huge_exif_jpeg(), ACCEPTED, "JPEG with a 60 KB EXIF block"),
        BadInput("garbage-exif.jpg", garbage_exif_jpeg(), ACCEPTED, "JPEG with an EXIF block of random bytes"),
        BadInput(
            "exif-flood.jpg", exif_flood_jpeg(), ACCEPTED, "JPEG with 40 maximum-size APP1/APP2 segments (2.6 MB)"
        ),
        BadInput("with-zip.jpg", jpeg + _zip_of("x.txt", b"hello"), ACCEPTED, "polyglot: JPEG with a ZIP appended"),
        BadInput(
            "with-html.jpg",
            jpeg + b"<html><script>alert(document.cookie)</script></html>",
            ACCEPTED,
            "polyglot: JPEG with HTML/script appended",
        ),
        # decodes, nothing to find
        BadInput("blank.png", blank, NO_FACE, "a plain grey 64x64 PNG (no face)"),
        BadInput("one-pixel.gif", _encode(Image.new("P", (1, 1)), "GIF"), NO_FACE, "a 1x1 GIF"),
    ]
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return tuple(entries)


def full_corpus() -> list[BadInput]:
    """Every entry (refused, accepted, no face), in a stable order. See the module docstring."""
    return list(_full())


def by_name() -> dict[str, BadInput]:
    return {e.name: e for e in _full()}
