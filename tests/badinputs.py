"""A corpus of bad photos, built on the fly, for the CLI (and later the API) to reject cleanly.

Each entry: file name -> (bytes, expected ImageError code). Sources: the committed fixture photos
(for truncation) and hand-built headers (a 30000x30000 PNG of a few hundred bytes).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

FIXTURE_JPEG = Path(__file__).parent / "data" / "faces" / "gallery" / "biden" / "biden.jpg"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30000) -> bytes:
    """A PNG whose header declares side x side RGB pixels (900 Mpx) in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def corpus() -> dict[str, tuple[bytes, str]]:
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
