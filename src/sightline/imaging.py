"""Decode photos safely: allowed formats only, limits checked before pixels are decoded, clear errors.

Every photo that enters Sightline (enrollment, search, evaluation) goes through :func:`load_image`,
which returns a :class:`LoadedImage` holding an (H, W, 3) uint8 RGB array with the EXIF orientation
applied, or raises :class:`ImageError` naming the file, a short reason and a machine-readable code.

Rules, in the order they are applied:

1. **Size on disk.** The file is ``stat``-ed and read with a bound (``ImagingConfig.max_file_bytes``);
   a zero-byte file is ``'empty'``, a larger one ``'too_large'``, a missing, unreadable or non-regular
   file (FIFO, device) ``'unreadable'``. The whole file is read once into memory: the bytes give the
   ``sha256`` (used to detect duplicate enrollment) and Pillow decodes from them (no second open).
2. **Content sniffing, not extensions.** Pillow identifies the bytes, restricted to an allow-list
   (:data:`ALLOWED_FORMATS`: JPEG (and MPO, the multi-picture JPEG phones write, reported as JPEG),
   PNG, WebP, BMP, TIFF, GIF). A ``.png`` holding JPEG bytes decodes; a text file named ``.jpg`` is
   ``'not_an_image'``. Formats Pillow knows but we refuse are never handed to their plugins: EPS/PS
   would run Ghostscript, PDF/SVG are documents. Known-but-refused formats (PDF, PostScript/EPS, SVG,
   HEIC/HEIF/AVIF, JPEG 2000, JPEG XL, PSD) are recognised by their magic bytes and reported as
   ``'unsupported_format'`` so the user knows to convert them; bytes that start like an allowed format
   but that Pillow cannot identify are ``'corrupt'``.
3. **Pixel count before decoding.** ``Image.open`` only parses the header; the declared width x height
   is checked against ``ImagingConfig.max_pixels`` *before* ``load()`` so a 30000 x 30000 bomb costs a
   few bytes of parsing, never gigabytes. Pillow's own process-wide guard (``Image.MAX_IMAGE_PIXELS``)
   still applies as a second line: its ``DecompressionBombError`` (above 2x that limit, about 179
   Mpx by default) is reported as ``'too_many_pixels'`` too, so configuring ``max_pixels`` above it
   only helps if the application also raises ``Image.MAX_IMAGE_PIXELS`` at start-up. We never mutate
   that global, and we do not use ``warnings.catch_warnings`` (it swaps process-global state and is
   not thread-safe before Python 3.14): Pillow's ``DecompressionBombWarning`` can only fire above
   ``Image.MAX_IMAGE_PIXELS`` (about 89 Mpx), which our check rejects anyway with the default
   ``max_pixels`` (80 Mpx); with a larger configured limit the warning is merely logged by Python.
4. **Truncated and corrupt data** raise ``'truncated'`` / ``'corrupt'`` with Pillow's reason. We rely on
   ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` being False (Pillow's default); we do not mutate it, but if
   another library in the process sets it, a warning is logged because half-decoded photos could then
   be accepted.
5. **First frame only** for multi-frame files (animated GIF/PNG/WebP, multi-page TIFF, MPO).
6. **Mode conversion to 8-bit RGB.** Grayscale, palette, CMYK, YCbCr and bilevel go through Pillow's
   ``convert('RGB')``. Anything with transparency (RGBA, LA, PA, premultiplied RGBa, palette or
   grayscale with a transparent colour) is **composited on white** rather than having its alpha
   dropped: dropping alpha exposes whatever colour the encoder left under transparent pixels (often
   black, sometimes noise), whereas white is what a viewer shows and what ID-photo cut-outs assume.
   High-bit-depth grayscale is scaled, not clipped (Pillow's ``convert('L')`` clips 16-bit values at
   255): ``I;16*`` and ``I`` (32-bit int, which is how some Pillow versions and TIFF deliver 16-bit
   data) are read as 0..65535 and divided by 257; ``F`` (float) is read as 0..1 when its maximum is
   at most 1, else as 0..255, and clipped. LAB and HSV use Pillow's channel conversion (approximate).
7. **EXIF orientation** (tag 274, values 2..8) is applied after conversion, so ``size`` and the array
   are upright. A broken or huge EXIF block never fails the photo: the orientation is then taken as 1
   (as stored) and a debug line is logged.

Polyglots: a file is judged by what it starts with. Data after the end of the image (a ZIP appended
to a JPEG, HTML after a GIF's trailer) is ignored, exactly as browsers and viewers do; the JPEG part
decodes and ``sha256`` covers the whole file. A file that starts as something else (HTML, a ZIP) with
an image inside is ``'not_an_image'``. Whoever serves stored originals back over HTTP must therefore
send them with a fixed image content type and ``X-Content-Type-Options: nosniff`` (or re-encode).

Thread-safety: no global state is read-modified-written; each call works on its own bytes and
``Image`` object, so calls may run concurrently with different limits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, UnidentifiedImageError

from sightline.config import ImagingConfig
from sightline.types import Image

logger = logging.getLogger(__name__)

#: Pillow format names tried when identifying bytes. MPO (JPEG with extra frames, written by phone
#: cameras) needs no entry: Pillow's JPEG opener detects it and returns an MPO image.
ALLOWED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

#: File suffixes kept when walking folders (compared lower-case). Explicitly named files are always
#: tried whatever their suffix, because formats are sniffed from content.
IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: Machine-readable error codes carried by :class:`ImageError`.
ERROR_CODES: Final[frozenset[str]] = frozenset(
    {
        "empty",
        "too_large",
        "too_many_pixels",
        "not_an_image",
        "unsupported_format",
        "corrupt",
        "truncated",
        "unreadable",
    }
)

_ORIENTATION_TAG: Final = 0x0112
_TRANSPOSE: Final[dict[int, PILImage.Transpose]] = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_WHITE: Final = (255, 255, 255, 255)

#: Magic bytes of formats we accept: bytes starting like this that Pillow cannot identify are corrupt.
_ALLOWED_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)


def _sniff_refused(head: bytes) -> str | None:
    """The name of a known image/document format we refuse, from the first bytes, else None."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"%PDF-"):
        return "PDF"
    if stripped.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS"
    low = stripped[:1024].lower()
    if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
        return "SVG"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in {b"avif", b"avis"}:
            return "AVIF"
        if brand in {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}:
            return "HEIC/HEIF"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head.startswith(b"8BPS"):
        return "PSD"
    return None


def _sniff_allowed(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _ALLOWED_MAGIC:
        if head.startswith(magic):
            return fmt
    return None


class ImageError(ValueError):
    """A photo that cannot be used.

    name:   the file name, or the label given for bytes.
    reason: short human text, e.g. ``"image file is truncated (3 bytes not processed)"``.
    code:   machine-readable, one of :data:`ERROR_CODES`: ``'empty'``, ``'too_large'``,
            ``'too_many_pixels'``, ``'not_an_image'``, ``'unsupported_format'``, ``'corrupt'``,
            ``'truncated'``, ``'unreadable'``.

    ``str(e) == f"{name}: {reason}"``.
    """

    def __init__(self, name: str, reason: str, code: str):
        if code not in ERROR_CODES:
            raise ValueError(f"code must be one of {sorted(ERROR_CODES)}, got {code!r}")
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.code = code

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str, str]]:  # picklable across processes
        return (type(self), (self.name, self.reason, self.code))


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo.

    name:   file name (or the label given for bytes).
    rgb:    (H, W, 3) uint8 RGB, C-contiguous, read-only, EXIF orientation applied.
    sha256: hex digest of the original encoded bytes (whole file, trailing data included).
    format: Pillow format name of the decoded data, e.g. ``'JPEG'`` (MPO is reported as ``'JPEG'``).
    size:   (width, height) in pixels after orientation; equals ``rgb.shape[1::-1]``.
    """

    name: str
    rgb: Image
    sha256: str
    format: str
    size: tuple[int, int]


@dataclass(frozen=True)
class Skipped:
    """A file :func:`load_many` could not use: ``name``, ``reason`` and ``code`` as in :class:`ImageError`."""

    name: str
    reason: str
    code: str


def read_bytes_limited(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, at most ``max_bytes`` bytes.

    The size is checked with ``stat`` before reading and again while reading (a file growing in
    between is caught: at most ``max_bytes + 1`` bytes are ever read). Raises :class:`ImageError`
    with code ``'too_large'`` past the limit, ``'unreadable'`` for a missing, unreadable or
    non-regular file (a FIFO would block, a device never ends). An empty file is returned as ``b""``.
    """
    p = Path(path)
    name = p.name or str(p)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(name, "not a regular file", "unreadable")
        if st.st_size > max_bytes:
            raise ImageError(name, f"file is {st.st_size} bytes, more than the limit of {max_bytes} bytes", "too_large")
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(name, "file not found", "unreadable") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read file ({exc.strerror or exc})", "unreadable") from exc
    if len(data) > max_bytes:
        raise ImageError(name, f"file is more than the limit of {max_bytes} bytes", "too_large")
    return data


_truncated_flag_warned = False


def _warn_if_truncated_images_allowed() -> None:
    global _truncated_flag_warned
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _truncated_flag_warned:
        _truncated_flag_warned = True
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process (set by other code): "
            "truncated photos may be accepted half-decoded"
        )


def _high_bit_to_l(im: PILImage.Image) -> PILImage.Image:
    """16/32-bit integer or float grayscale -> 8-bit 'L', scaled (see the module docstring, rule 6)."""
    arr = np.asarray(im)
    if im.mode == "F":
        f = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if f.size and f.max() <= 1.0 else 1.0
        out = np.clip(np.rint(f * scale), 0, 255)
    else:
        out = (np.clip(arr.astype(np.int64), 0, 65535) + 128) // 257
    return PILImage.fromarray(np.ascontiguousarray(out.astype(np.uint8)))


def _to_rgb(im: PILImage.Image) -> PILImage.Image:
    """Any loaded frame -> 8-bit 'RGB'; transparency composited on white."""
    if im.mode in _HIGH_BIT_MODES or im.mode == "F":
        im = _high_bit_to_l(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _orientation(im: PILImage.Image, name: str) -> int:
    """EXIF orientation 1..8, or 1 where absent, invalid or unreadable (never raises)."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # a damaged EXIF block must not cost the photo
        logger.debug("%s: ignoring unreadable EXIF (%s)", name, exc)
        return 1
    if isinstance(value, tuple) and value:
        value = value[0]
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _failure_code(text: str, data: bytes) -> str:
    """'truncated' when Pillow says so or a RIFF (WebP) container declares more bytes than there
    are (libwebp only says "could not create decoder object"), else 'corrupt'."""
    if "truncated" in text.lower():
        return "truncated"
    if data[:4] == b"RIFF" and len(data) >= 8 and struct.unpack("<I", data[4:8])[0] + 8 > len(data):
        return "truncated"
    return "corrupt"


def _decode(data: bytes, name: str, limits: ImagingConfig) -> tuple[PILImage.Image, str]:
    """Identify, check the declared size, load the first frame. Returns (RGB image, format)."""
    head = data[:1024]
    PILImage.init()  # idempotent; registers the plugins so a missing one (no libwebp) is skipped
    formats = tuple(f for f in ALLOWED_FORMATS if f in PILImage.OPEN)
    try:
        im = PILImage.open(io.BytesIO(data), formats=formats)
    except PILImage.DecompressionBombError as exc:
        raise ImageError(name, f"too many pixels ({exc})", "too_many_pixels") from None
    except UnidentifiedImageError:
        refused = _sniff_refused(head)
        if refused is not None:
            raise ImageError(
                name,
                f"{refused} is not a supported format (accepted: JPEG, PNG, WebP, BMP, TIFF, GIF)",
                "unsupported_format",
            ) from None
        looks_like = _sniff_allowed(head)
        if looks_like is not None:
            raise ImageError(name, f"starts like {looks_like} but its header is damaged", "corrupt") from None
        raise ImageError(name, "not an image (content is not a recognised image format)", "not_an_image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError) as exc:
        text = str(exc) or type(exc).__name__
        code = _failure_code(text, data)
        raise ImageError(name, f"header is {code} ({text})", code) from None

    # Not closed with `with`: the data lives in a BytesIO (no handle to leak) and closing would
    # free the pixels of an RGB frame that _to_rgb returns as is.
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"declares an empty size {width}x{height}", "corrupt")
    if width * height > limits.max_pixels:
        raise ImageError(
            name,
            f"{width}x{height} = {width * height} pixels, more than the limit of {limits.max_pixels}",
            "too_many_pixels",
        )
    _warn_if_truncated_images_allowed()
    try:
        im.load()  # the first frame: open() leaves multi-frame files on frame 0
    except PILImage.DecompressionBombError as exc:
        raise ImageError(name, f"too many pixels ({exc})", "too_many_pixels") from None
    except MemoryError:
        raise ImageError(name, f"not enough memory to decode {width}x{height}", "unreadable") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError) as exc:
        text = str(exc) or type(exc).__name__
        code = _failure_code(text, data)
        raise ImageError(name, f"{fmt} data is {code} ({text})", code) from None
    orientation = _orientation(im, name)
    try:
        rgb = _to_rgb(im)
    except (ValueError, OSError) as exc:
        raise ImageError(
            name, f"pixel mode {im.mode} cannot be converted to RGB ({exc})", "unsupported_format"
        ) from None
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        rgb = rgb.transpose(method)
    return rgb, fmt


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    limits: ImagingConfig | None = None,
    name: str | None = None,
) -> LoadedImage:
    """Decode a photo file (path) or encoded bytes into an upright 8-bit RGB :class:`LoadedImage`.

    ``name`` labels the result and errors (default: the file name for a path, ``"<bytes>"`` for
    bytes). ``limits`` defaults to ``ImagingConfig()`` (50 MiB, 80 Mpx). Cost: one read of the file,
    one decode of the first frame at full resolution (about 3 bytes of RAM per pixel for the result,
    plus the decoder's own frame). Raises :class:`ImageError` for anything unusable; see the module
    docstring for the rules and codes.
    """
    lim = limits if limits is not None else ImagingConfig()
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        data = bytes(source)
        if len(data) > lim.max_file_bytes:
            raise ImageError(
                label, f"{len(data)} bytes, more than the limit of {lim.max_file_bytes} bytes", "too_large"
            )
    else:
        path = Path(source)
        label = name if name is not None else (path.name or str(path))
        try:
            data = read_bytes_limited(path, lim.max_file_bytes)
        except ImageError as exc:
            raise ImageError(label, exc.reason, exc.code) from None
    if not data:
        raise ImageError(label, "file is empty (0 bytes)", "empty")
    digest = hashlib.sha256(data).hexdigest()
    rgb_image, fmt = _decode(data, label, lim)
    arr = np.ascontiguousarray(np.asarray(rgb_image, dtype=np.uint8))
    if arr.ndim != 3 or arr.shape[2] != 3:  # defensive: _to_rgb always yields RGB
        raise ImageError(label, f"decoded to an unexpected shape {arr.shape}", "corrupt")
    arr.setflags(write=False)
    return LoadedImage(name=label, rgb=arr, sha256=digest, format=fmt, size=(arr.shape[1], arr.shape[0]))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def find_photos(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand ``paths`` into photo files, in the order given.

    A file is kept as given, whatever its suffix (content is sniffed when loading). A folder is
    walked recursively, in sorted order, keeping files whose suffix is in :data:`IMAGE_SUFFIXES`
    (case-insensitive); hidden files and folders (name starting with ``.``) are skipped, and folder
    symlinks are not followed (no loops). No de-duplication. Raises ``FileNotFoundError`` naming the
    first path that does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {os.fspath(raw)}")
        if not p.is_dir():
            found.append(p)
            continue
        walked: list[Path] = []
        for root, dirs, files in os.walk(p, followlinks=False):
            dirs[:] = [d for d in dirs if not _is_hidden(d)]
            walked.extend(
                Path(root, f) for f in files if not _is_hidden(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES
            )
        found.extend(sorted(walked))
    return found


def load_many(paths: Iterable[Path], *, limits: ImagingConfig | None = None) -> Iterator[LoadedImage | Skipped]:
    """Load each path in turn, yielding exactly one item per path, in order.

    A usable photo yields a :class:`LoadedImage`, an unusable one a :class:`Skipped` (logged at
    warning) and the batch goes on; this never raises for a bad file. Names are file names, so
    ``zip(paths, load_many(paths))`` recovers the full path. Lazy: one decoded photo in memory at a
    time unless the caller keeps them.
    """
    for path in paths:
        try:
            yield load_image(path, limits=limits)
        except ImageError as exc:
            logger.warning("skipped %s: %s (%s)", os.fspath(path), exc.reason, exc.code)
            yield Skipped(name=exc.name, reason=exc.reason, code=exc.code)


# -- face crops -------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]


def grow_box(xyxy: Box, grow: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by ``grow`` of its size (split evenly on both sides), rounded outwards to
    whole pixels and clipped to a ``width`` x ``height`` image. Never empty for a box inside it."""
    x1, y1, x2, y2 = xyxy
    dx, dy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
    ix1 = max(0, math.floor(x1 - dx))
    iy1 = max(0, math.floor(y1 - dy))
    ix2 = min(width, math.ceil(x2 + dx))
    iy2 = min(height, math.ceil(y2 + dy))
    return ix1, iy1, max(ix2, min(width, ix1 + 1)), max(iy2, min(height, iy1 + 1))


def encode_crop(image: Image, xyxy: Box, *, grow: float = 0.4, max_side: int = 320, jpeg_quality: int = 85) -> bytes:
    """JPEG bytes of the grown face box cut from ``image`` ((H, W, 3) uint8 RGB), longest side at
    most ``max_side`` pixels (shrunk with a high-quality filter; never enlarged)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = grow_box(xyxy, grow, w, h)
    im = PILImage.fromarray(np.ascontiguousarray(image[y1:y2, x1:x2]))
    longest = max(im.size)
    if longest > max_side:
        scale = max_side / longest
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), PILImage.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=jpeg_quality)
    return buf.getvalue()
