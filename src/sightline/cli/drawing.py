"""Draw detected faces (boxes, landmarks, quality) on a copy of a photo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sightline.types import FaceRecord, Image


def draw_faces(image: Image, faces: Sequence[FaceRecord], out: Path) -> None:
    """Write ``image`` with each face's box, 5 landmarks and quality to ``out`` (format by suffix)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    canvas = PILImage.fromarray(image).copy()
    d = ImageDraw.Draw(canvas)
    w = max(2, round(max(image.shape[:2]) / 400))
    for i, f in enumerate(faces):
        x1, y1, x2, y2 = f.xyxy
        d.rectangle([x1, y1, x2, y2], outline=(0, 255, 0), width=w)
        for x, y in f.kps:
            d.ellipse([x - w, y - w, x + w, y + w], fill=(255, 0, 0))
        d.text((x1 + w, max(0, y1 - 12 - w)), f"#{i} q={f.quality.score:.2f}", fill=(0, 255, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
