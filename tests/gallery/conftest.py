"""A tiny deterministic face engine for gallery tests, and helpers that write photos it understands.

A fake photo is a small PNG whose first pixel says what is in it: red = number of faces, green =
identity seed of the first face (face i has seed + i), blue = variant (a different photo of the
same people). Descriptors are a fixed random direction per seed plus a little per-variant noise,
so photos of one seed are > 0.94 similar and photos of different seeds ~0 +- 0.18 (at most 0.57
among seeds 1..40), against the fake default threshold of 0.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from sightline.gallery import Gallery, GalleryStore
from sightline.types import FaceRecord, Image, Quality

FAKE_DIM = 32


def fake_embedding(seed: int, variant: int = 0) -> np.ndarray:
    """The fake engine's (FAKE_DIM,) float32 unit descriptor of face ``seed`` in photo ``variant``."""
    base = np.random.default_rng(seed).normal(size=FAKE_DIM)
    noise = np.random.default_rng(10_000 + 1000 * seed + variant).normal(size=FAKE_DIM)
    v = base + 0.15 * noise
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass(frozen=True)
class FakeCalibration:
    default_threshold: float = 0.6

    def est_fmr(self, similarity: float) -> float:
        return float(10 ** (-8 * max(similarity, 0.0)))


class FakeEngine:
    """Reads the faces off the first pixel (see the module docstring). ``quality`` overrides the
    quality score per variant (to make the store refuse a template on purpose)."""

    model = "fake_v1"
    dim = FAKE_DIM

    def __init__(self, quality: dict[int, float] | None = None) -> None:
        self.calibration = FakeCalibration()
        self.quality = quality or {}
        self.calls = 0

    def analyze(self, image: Image, *, embed: bool = True, subject: bool = False) -> list[FaceRecord]:
        self.calls += 1
        n, seed, variant = (int(v) for v in image[0, 0, :3])
        q = self.quality.get(variant, 0.9)
        faces = []
        for i in range(n):
            side = 100.0 - 10 * i  # the first face is the largest
            faces.append(
                FaceRecord(
                    xyxy=(10.0, 10.0, 10.0 + side, 10.0 + side),
                    kps=np.zeros((5, 2), np.float32),
                    det_score=1.0,
                    quality=Quality(size_px=side, sharpness=1.0, frontal=1.0, score=q),
                    embedding=fake_embedding(seed + i, variant) if embed else None,
                )
            )
        return faces


def write_photo(path: Path, seed: int, variant: int = 0, faces: int = 1) -> Path:
    """A 16x16 PNG the fake engine reads as ``faces`` faces of ``seed`` (..seed+faces-1), photo ``variant``."""
    arr = np.full((16, 16, 3), 200, np.uint8)
    arr[0, 0] = (faces, seed, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(arr).save(path, format="PNG")
    return path


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def store(tmp_path: Path):
    s = GalleryStore.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def gallery(tmp_path: Path, fake_engine: FakeEngine):
    g = Gallery.open(tmp_path / "data", fake_engine)
    yield g
    g.close()
