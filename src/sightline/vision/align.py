"""5-point landmarks -> aligned face chips, the geometry dlib's descriptor was trained on.

``chips(image, faces)`` returns (N, 150, 150, 3) uint8: each face rotated upright and scaled so
that the landmarks land where dlib's ``get_face_chip`` puts them (padding 0.25 around the face).
Every backend's descriptor consumes these same chips, so backends are comparable chip for chip.
"""

from __future__ import annotations

import numpy as np

from sightline.types import Faces, Image

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _dlib_shapes(faces: Faces):  # -> dlib.full_object_detections
    import dlib

    if faces.kps is None:
        raise ValueError("faces have no landmarks (kps); run the landmark stage first")
    shapes = dlib.full_object_detections()
    for box, kps in zip(faces.xyxy, faces.kps, strict=True):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        rect = dlib.rectangle(x1, y1, x2 - 1, y2 - 1)
        pts = [dlib.point(round(float(x)), round(float(y))) for x, y in kps]
        shapes.append(dlib.full_object_detection(rect, pts))
    return shapes


def chips(image: Image, faces: Faces, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """Aligned chips, (N, size, size, 3) uint8 RGB, in the order of ``faces``."""
    import dlib

    if len(faces) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    out = dlib.get_face_chips(np.ascontiguousarray(image), _dlib_shapes(faces), size=size, padding=padding)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in out])
