"""Configuration: pydantic models, ``extra="forbid"``; every field has a unit, bounds and a description.

Config is data, never rewritten by validators. Build the services from it:
``engine = FaceEngine.from_config(cfg.engine)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DATA_DIR_ENV = "SIGHTLINE_DATA_DIR"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImagingConfig(_Model):
    """Limits applied to every photo before and while it is decoded."""

    max_file_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, le=2**31, description="Largest accepted photo file, bytes"
    )
    max_pixels: int = Field(
        80_000_000, ge=10_000, le=1_000_000_000,
        description="Largest accepted width x height, pixels (decompression-bomb guard)",
    )


class EngineConfig(_Model):
    """The face engine: detector, landmarks, alignment and descriptor."""

    backend: Literal["auto", "dlib", "onnx"] = Field(
        "auto",
        description="Runtime for the neural networks: 'dlib' is the reference, 'onnx' the fast one; "
        "'auto' picks onnx where onnxruntime and its backend are available, else dlib",
    )
    detector: Literal["hog", "mmod"] = Field(
        "hog", description="Face detector: 'hog' (fast, frontal faces) or 'mmod' (CNN, more poses, slower)"
    )
    upsample: int = Field(
        1, ge=0, le=3,
        description="Times the image is upsampled 2x before detection; each step finds faces half as "
        "small and costs about 4x the time",
    )
    fallback_detector: Literal["none", "mmod"] = Field(
        "mmod",
        description="Detector retried on a photo where the main one finds no face "
        "(photos only, never on live video)",
    )
    min_face_px: float = Field(
        20.0, ge=8.0, le=4096.0, description="Faces whose box is narrower than this, in pixels, are ignored"
    )
    flip_average: bool = Field(
        True,
        description="Average the descriptor of the chip and its mirror image (2x descriptor cost; "
        "measured to help on LFW, see docs/BENCHMARKS.md)",
    )
    threads: int = Field(
        0, ge=0, le=256, description="CPU threads for the onnx backend; 0 = all cores"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Chips per descriptor batch")


def default_data_dir() -> Path:
    """``$SIGHTLINE_DATA_DIR`` if set, else the user data dir (``~/.local/share/sightline`` on Linux)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("sightline", appauthor=False))


def default_cache_dir() -> Path:
    """User cache dir for derived files (converted models); safe to delete."""
    env = os.environ.get("SIGHTLINE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sightline", appauthor=False))


class Settings(_Model):
    """Everything a Sightline process needs; the CLI builds it from flags and the environment."""

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the gallery database lives")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    imaging: ImagingConfig = Field(default_factory=ImagingConfig)
