"""Locate the dlib model files installed by the ``face_recognition_models`` package.

That package cannot be imported on current setuptools (it imports ``pkg_resources``), so its
folder is found with ``importlib.util.find_spec`` instead. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing; the message says which package provides it."""


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the face_recognition_models package is not installed (pip install face_recognition_models)"
        )
    return Path(spec.origin).parent / "models"


def model_path(filename: str) -> Path:
    """Absolute path of one of the model files (``SHAPE_5``, ``RESNET``, ``MMOD``)."""
    p = models_dir() / filename
    if not p.is_file():
        raise ModelNotFoundError(f"model file {p} is missing; reinstall face_recognition_models")
    return p
