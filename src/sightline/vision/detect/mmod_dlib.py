"""dlib's MMOD CNN face detector run by dlib itself (reference; ~1 s per 640x480 frame on one core)."""

from __future__ import annotations

import numpy as np

from sightline.types import Faces, Image
from sightline.vision.backends.models import MMOD, model_path
from sightline.vision.detect import FaceDetector, detectors


@detectors.register("mmod-dlib")
class DlibMmodDetector(FaceDetector):
    """MMOD CNN detector (more poses and occlusion than HOG). ``score`` is the MMOD confidence.

    upsample: each step doubles the image; the network's smallest face is ~40 px, so upsample=1
    finds ~20 px faces at ~4x the time.
    """

    name = "mmod-dlib"

    def __init__(self, upsample: int = 0, **_: object) -> None:
        import dlib

        if not 0 <= upsample <= 3:
            raise ValueError(f"upsample must be in [0, 3], got {upsample}")
        self.upsample = upsample
        self._det = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))

    def detect(self, image: Image) -> Faces:
        dets = self._det(image, self.upsample)
        if not dets:
            return Faces.empty()
        xyxy = np.array(
            [[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in dets], np.float32
        )
        return Faces(xyxy, np.array([d.confidence for d in dets], np.float32))
