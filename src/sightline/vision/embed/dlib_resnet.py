"""dlib's 128-D ResNet face descriptor run by dlib (reference backend; ~58 ms per chip on one core)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sightline.types import F32, Chip
from sightline.vision.backends.models import RESNET, model_path
from sightline.vision.embed import Embedder, embedders


@embedders.register("dlib")
class DlibResnetEmbedder(Embedder):
    """``embed(chips)`` -> (N, 128) float32 raw descriptors (norm ~1, compared by cosine after L2)."""

    name = "dlib"
    dim = 128
    model = "dlib_resnet_v1"
    provider = "dlib-cpu"

    def __init__(self, **_: object) -> None:
        import dlib

        self._net = dlib.face_recognition_model_v1(str(model_path(RESNET)))

    def embed(self, chips: Sequence[Chip]) -> F32:
        arr = self._stack(chips)
        if len(arr) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self._net.compute_face_descriptor(list(arr))
        return np.asarray([np.asarray(v) for v in out], dtype=np.float32)
