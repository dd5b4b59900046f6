"""Shared fixtures: the committed sample faces and engines built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"
GALLERY = FACES / "gallery"
PROBES = FACES / "probes"
LFW_MINI = DATA / "lfw_mini"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="session")
def dlib_engine():
    """The reference engine (dlib backend, HOG, upsample 1, mirror averaging)."""
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    return FaceEngine.from_config(EngineConfig(backend="dlib"))


@pytest.fixture(scope="session")
def engine():
    """The default engine ('auto' backend: onnx where available)."""
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    return FaceEngine.from_config(EngineConfig())
