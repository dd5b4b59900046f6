"""The landmark stage: dlib's 5-point shape predictor (~1 ms per face)."""

from __future__ import annotations

import numpy as np

from sightline.types import Faces, Image
from sightline.vision.backends.models import SHAPE_5, model_path


class Landmarker:
    """``landmarks(image, faces) -> Faces`` with ``kps`` (N, 5, 2) float32 pixel coordinates.

    Points, dlib's order: subject's right eye outer/inner corner, left eye outer/inner, nose base.
    """

    def __init__(self) -> None:
        import dlib

        self._sp = dlib.shape_predictor(str(model_path(SHAPE_5)))

    def landmarks(self, image: Image, faces: Faces) -> Faces:
        import dlib

        if len(faces) == 0:
            return faces.with_kps(np.zeros((0, 5, 2), np.float32))
        kps = np.zeros((len(faces), 5, 2), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(faces.xyxy):
            left, top, right, bottom = (round(float(v)) for v in (x1, y1, x2, y2))
            rect = dlib.rectangle(left, top, right - 1, bottom - 1)
            shape = self._sp(image, rect)
            kps[i] = [(shape.part(j).x, shape.part(j).y) for j in range(5)]
        return faces.with_kps(kps)
