"""Draw the console's icons with Pillow (committed under ``static/icons``; run again only to change them).

    python -m sightline.server.ui.icons        # rewrites static/icons/*.png and icon.svg

The mark is a sighting reticle: a ring, a centre dot and four ticks, accent blue on the dark theme.
``maskable-512.png`` keeps the mark inside the central 80 % safe zone that launchers may crop to a circle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

BG = (15, 23, 32, 255)
ACCENT = (59, 164, 255, 255)
ICON_DIR = Path(__file__).parent / "static" / "icons"

SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect width="64" height="64" rx="14" fill="#0f1720"/>
<g fill="none" stroke="#3ba4ff" stroke-width="4.5" stroke-linecap="round">
<circle cx="32" cy="32" r="17"/><path d="M32 8v8M32 48v8M8 32h8M48 32h8"/></g>
<circle cx="32" cy="32" r="6.5" fill="#3ba4ff"/>
</svg>
"""


def draw_mark(size: int, *, scale: float = 1.0, rounded: bool = True) -> Image.Image:
    """An RGBA ``size`` x ``size`` icon; ``scale`` < 1 shrinks the mark toward the centre (maskable)."""
    k = 4  # draw large, then downsample: smooth edges without antialiasing support in ImageDraw
    s = size * k
    im = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if rounded:
        d.rounded_rectangle((0, 0, s - 1, s - 1), radius=int(s * 0.22), fill=BG)
    else:
        d.rectangle((0, 0, s - 1, s - 1), fill=BG)
    c = s / 2
    u = s / 64 * scale  # one unit of the 64-unit design grid
    w = max(1, round(4.5 * u))
    r = 17 * u
    d.ellipse((c - r, c - r, c + r, c + r), outline=ACCENT, width=w)
    for x0, y0, x1, y1 in ((0, -24, 0, -16), (0, 16, 0, 24), (-24, 0, -16, 0), (16, 0, 24, 0)):
        d.line((c + x0 * u, c + y0 * u, c + x1 * u, c + y1 * u), fill=ACCENT, width=w)
    dot = 6.5 * u
    d.ellipse((c - dot, c - dot, c + dot, c + dot), fill=ACCENT)
    return im.resize((size, size), Image.Resampling.LANCZOS)


def write_icons(out: Path = ICON_DIR) -> list[Path]:
    """Write icon-192.png, icon-512.png, maskable-512.png and icon.svg into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, img in (
        ("icon-192.png", draw_mark(192)),
        ("icon-512.png", draw_mark(512)),
        ("maskable-512.png", draw_mark(512, scale=0.72, rounded=False)),
    ):
        path = out / name
        img.save(path, optimize=True)
        written.append(path)
    svg = out / "icon.svg"
    svg.write_text(SVG, encoding="utf-8")
    written.append(svg)
    logger.info("wrote %d icons to %s", len(written), out)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    write_icons()
