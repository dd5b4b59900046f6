"""dlib's HOG + linear SVM frontal face detector (CPU, fast, frontal and near-frontal faces only)."""

from __future__ import annotations

import numpy as np

from sightline.types import Faces, Image
from sightline.vision.detect import FaceDetector, detectors


@detectors.register("hog")
class HogDetector(FaceDetector):
    """HOG detector. ``score`` is the SVM margin (0 at the default threshold, ~0-3 typical).

    upsample: each step doubles the image before scanning: finds faces down to ~40 px / 2^upsample,
    at ~4x the time per step. ``adjust_threshold`` < 0 finds more faces with more false alarms.
    """

    name = "hog"

    def __init__(self, upsample: int = 1, adjust_threshold: float = 0.0, **_: object) -> None:
        import dlib

        if not 0 <= upsample <= 3:
            raise ValueError(f"upsample must be in [0, 3], got {upsample}")
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold
        self._det = dlib.get_frontal_face_detector()

    def detect(self, image: Image) -> Faces:
        rects, scores, _ = self._det.run(image, self.upsample, self.adjust_threshold)
        if not rects:
            return Faces.empty()
        xyxy = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32)
        return Faces(xyxy, np.asarray(scores, np.float32))
