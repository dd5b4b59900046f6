"""The best shot of a track: its highest-quality face, kept as an aligned chip and a JPEG crop.

    keeper = BestShot()
    if keeper.offer(frame.image, xyxy, quality, chip, frame.ts):   # True: a new best
        ...
    keeper.shot.crop_jpeg                                          # JPEG bytes of the best so far

The crop is the face box grown by ``grow`` (0.4 = 40% wider and taller, centred) and clipped to
the frame, cut from the ORIGINAL full-resolution frame (not the downscaled detection image), then
shrunk to at most ``max_side`` pixels so that stored alerts stay small (~10-30 kB). It is
encoded only when a shot becomes the best, so a track costs one encode per improvement, not one
per frame. The chip (150x150 aligned) is kept for the embedder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sightline.imaging import Box, encode_crop, grow_box
from sightline.types import Chip, Image, Quality

__all__ = ["BestShot", "Box", "Shot", "encode_crop", "grow_box"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Shot:
    """One face of a track: quality, where and when, the JPEG crop and the aligned chip.

    quality: overall quality score in [0, 1] (``Quality.score``); details in ``detail``.
    ts: frame time, epoch s; xyxy: face box in full-frame pixels.
    """

    quality: float
    ts: float
    xyxy: Box
    crop_jpeg: bytes = field(repr=False)
    chip: Chip = field(repr=False)
    detail: Quality | None = None
    #: (224, 224, 3) uint8 crop of the original frame for engines whose descriptor needs one
    #: (``FaceEngine.needs_crops``, model "fusion"); None otherwise.
    model_crop: np.ndarray | None = field(default=None, repr=False)


class BestShot:
    """Keeps the best shot of one track by quality score (strictly better replaces).

    grow: crop margin as a fraction of the box size (0.4 = 40%), in [0, 4].
    max_side: longest side of the stored crop, pixels, in [32, 4096].
    jpeg_quality: Pillow JPEG quality, in [1, 95].
    """

    def __init__(self, *, grow: float = 0.4, max_side: int = 320, jpeg_quality: int = 85) -> None:
        if not 0.0 <= grow <= 4.0:
            raise ValueError(f"grow must be in [0, 4] (fraction of the box size), got {grow}")
        if not 32 <= max_side <= 4096:
            raise ValueError(f"max_side must be in [32, 4096] pixels, got {max_side}")
        if not 1 <= jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95], got {jpeg_quality}")
        self.grow = grow
        self.max_side = max_side
        self.jpeg_quality = jpeg_quality
        self.shot: Shot | None = None
        self.encodes = 0  # JPEG encodes done, one per new best

    @property
    def quality(self) -> float:
        """Quality of the best shot so far; -1.0 before the first offer."""
        return -1.0 if self.shot is None else self.shot.quality

    def offer(
        self,
        image: Image,
        xyxy: Box,
        quality: Quality,
        chip: Chip,
        ts: float,
        model_crop: Callable[[], np.ndarray] | None = None,
    ) -> bool:
        """Consider one face of the track; returns True when it became the best shot (then its
        crop was cut from ``image``, the full-resolution frame, and encoded, and ``model_crop()``,
        when given, was called for the descriptor model's crop of it)."""
        if self.shot is not None and quality.score <= self.shot.quality:
            return False
        jpeg = encode_crop(image, xyxy, grow=self.grow, max_side=self.max_side, jpeg_quality=self.jpeg_quality)
        self.encodes += 1
        crop = None if model_crop is None else np.asarray(model_crop(), np.uint8)
        self.shot = Shot(float(quality.score), float(ts), xyxy, jpeg, np.array(chip, np.uint8), quality, crop)
        return True
