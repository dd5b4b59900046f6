"""Face detectors, one file per backend, registered by name in ``detectors``."""

from __future__ import annotations

import abc

from sightline.registry import Registry
from sightline.types import Faces, Image


def _load() -> None:
    from sightline.registry import import_backends

    import_backends(__name__, __path__)


class FaceDetector(abc.ABC):
    """Finds faces in an RGB image.

    ``detect(image)`` takes (H, W, 3) uint8 RGB and returns ``Faces`` with ``xyxy`` in that image's
    pixels and ``kps=None``. Implementations are stateless between calls (safe to reuse, not
    necessarily thread-safe) and load their model in ``__init__``.
    """

    name: str = "?"

    @abc.abstractmethod
    def detect(self, image: Image) -> Faces: ...


#: name -> FaceDetector subclass; constructors take ``(upsample: int, **backend_options)``.
detectors: Registry[type[FaceDetector]] = Registry("detector", loader=_load)
