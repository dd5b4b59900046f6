"""Face descriptors, one file per backend, registered by name in ``embedders``.

An embedder owns its default threshold and score calibration (``Calibration``), because a
threshold only means something for the model that produced the scores.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from sightline.registry import Registry
from sightline.types import F32, Chip


def _load() -> None:
    from sightline.registry import import_backends

    import_backends(__name__, __path__)


class Embedder(abc.ABC):
    """Turns aligned face chips into descriptors.

    ``embed(chips)`` takes a sequence of (150, 150, 3) uint8 RGB chips aligned as
    ``sightline.vision.align`` does (dlib's ``get_face_chip`` geometry) and returns (N, D) float32
    raw descriptors, in the model's own space (not normalised): the engine normalises and
    mirror-averages. An empty sequence returns shape (0, D).
    """

    name: str = "?"
    #: descriptor length
    dim: int = 128
    #: model family whose calibration applies (same weights => same calibration)
    model: str = "dlib_resnet_v1"
    #: where the computation runs, e.g. "dlib-cpu", "CPUExecutionProvider"
    provider: str = "?"

    @abc.abstractmethod
    def embed(self, chips: Sequence[Chip]) -> F32: ...

    @staticmethod
    def _stack(chips: Sequence[Chip], size: int = 150) -> np.ndarray:
        if not len(chips):
            return np.zeros((0, size, size, 3), np.uint8)
        arr = np.ascontiguousarray(np.stack(list(chips)))
        if arr.dtype != np.uint8 or arr.shape[1:] != (size, size, 3):
            raise ValueError(f"chips must be (N, {size}, {size}, 3) uint8, got {arr.shape} {arr.dtype}")
        return arr


#: name -> Embedder subclass; constructors take ``(**backend_options)``.
embedders: Registry[type[Embedder]] = Registry("embedder", loader=_load)
