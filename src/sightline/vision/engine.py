"""FaceEngine: detect -> landmarks -> align -> embed, one object built from ``EngineConfig``.

    engine = FaceEngine.from_config(EngineConfig(backend="dlib"))
    faces = engine.analyze(image)            # list[FaceRecord], largest face first
    sims = faces[0].embedding @ other.T      # cosine similarity, higher is closer

Descriptor models (``EngineConfig.model``): "dlib" embeds the 150x150 aligned chip only;
"fusion" also embeds a 224x224 box crop of the original image with faceres and concatenates the
two, weighted so that the plain cosine of two templates is the fused score
(``sightline.vision.embed.fusion``). Callers that embed faces later than they see the image (the
live worker's best shots) keep ``engine.model_crops(image, xyxy)`` beside the chip when
``engine.needs_crops`` and pass them to ``embed_chips(chips, crops=...)``.

Models load in the constructor (once); the engine holds no per-image state. It is not
thread-safe: give each worker thread its own engine.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from sightline.config import EngineConfig
from sightline.types import F32, FaceRecord, Faces, Image
from sightline.vision import align, quality
from sightline.vision.detect import FaceDetector, detectors
from sightline.vision.embed import Embedder, embedders
from sightline.vision.landmarks import Landmarker

if TYPE_CHECKING:
    from sightline.vision.calibration import Calibration
    from sightline.vision.embed.faceres import FaceresEmbedder
    from sightline.vision.embed.fusion import FusionParams

logger = logging.getLogger(__name__)

#: longest image side (pixels) the detector scans; larger photos are scanned downscaled and the
#: boxes mapped back (landmarks and chips still come from the full-resolution image).
DETECT_MAX_SIDE = 1600


def resolve_backend(requested: Literal["auto", "dlib", "onnx"]) -> Literal["dlib", "onnx"]:
    """'auto' -> 'onnx' when its backend is registered (onnxruntime importable), else 'dlib'."""
    if requested != "auto":
        return requested
    return "onnx" if "onnx" in embedders.names() else "dlib"


def l2_normalize(x: F32) -> F32:
    """Rows scaled to unit length; (N, D) float32. Zero rows stay zero."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class FaceEngine:
    """The face pipeline. Build with :meth:`from_config`; stages are injectable for tests."""

    def __init__(
        self,
        detector: FaceDetector,
        landmarker: Landmarker,
        embedder: Embedder,
        config: EngineConfig,
        fallback_detector: FaceDetector | None = None,
        coarse_detector: FaceDetector | None = None,
        crop_embedder: FaceresEmbedder | None = None,
        fusion: FusionParams | None = None,
    ) -> None:
        if (crop_embedder is None) != (fusion is None):
            raise ValueError("crop_embedder and fusion must be given together (model='fusion') or not at all")
        self.detector = detector
        self.landmarker = landmarker
        self.embedder = embedder
        self.config = config
        self.fallback_detector = fallback_detector
        self.coarse_detector = coarse_detector
        self.crop_embedder = crop_embedder
        self.fusion = fusion

    @classmethod
    def from_config(cls, config: EngineConfig | None = None) -> FaceEngine:
        cfg = config or EngineConfig()
        backend = resolve_backend(cfg.backend)
        try:
            embedder = embedders.get(backend)(threads=cfg.threads, batch_size=cfg.batch_size)
        except Exception:
            if cfg.backend != "auto" or backend == "dlib":
                raise
            logger.warning("onnx backend unavailable, using the dlib reference backend", exc_info=True)
            backend = "dlib"
            embedder = embedders.get("dlib")()
        det_name = "hog" if cfg.detector == "hog" else f"mmod-{backend}"
        detector = detectors.get(det_name)(upsample=cfg.upsample, threads=cfg.threads)
        coarse = _LazyDetector(det_name, upsample=0, threads=cfg.threads) if cfg.upsample > 0 else None
        fallback = None
        if cfg.fallback_detector == "mmod" and cfg.detector != "mmod":
            fallback = _LazyDetector(f"mmod-{backend}", upsample=cfg.upsample, threads=cfg.threads)
        crop_embedder = fusion = None
        if cfg.model == "fusion":
            from sightline.vision.embed import fusion as fusion_mod
            from sightline.vision.embed.faceres import FaceresEmbedder

            # raises ModelNotInstalledError naming `sightline models install` when faceres is absent
            crop_embedder = FaceresEmbedder(threads=cfg.threads, batch_size=cfg.batch_size)
            fusion = fusion_mod.load_builtin()
        logger.info(
            "face engine: model=%s detector=%s embedder=%s provider=%s", cfg.model, det_name, backend, embedder.provider
        )
        return cls(detector, Landmarker(), embedder, cfg, fallback, coarse, crop_embedder, fusion)

    # ---- facts about the model -------------------------------------------------------------
    @property
    def model(self) -> str:
        """Model family of the descriptors (templates of different models never mix)."""
        return self.fusion.model if self.fusion is not None else self.embedder.model

    @property
    def dim(self) -> int:
        return sum(self.fusion.dims) if self.fusion is not None else self.embedder.dim

    @property
    def needs_crops(self) -> bool:
        """True when descriptors need ``model_crops`` of the original image besides the chips."""
        return self.crop_embedder is not None

    @property
    def backend(self) -> str:
        return self.embedder.name

    @property
    def provider(self) -> str:
        return self.embedder.provider

    @functools.cached_property
    def calibration(self) -> Calibration:
        """Impostor-score calibration of this model: default threshold and similarity -> est. FMR."""
        from sightline.vision.calibration import load_builtin

        return load_builtin(self.model)

    # ---- stages ------------------------------------------------------------------------------
    def detection_scale(self, shape: tuple[int, ...], width: int | None = None) -> float:
        """Factor (<= 1) at which the detector scans an image of ``shape`` (H, W, ...): its longest
        side capped at ``DETECT_MAX_SIDE``, and its width at ``width`` pixels when given."""
        h, w = shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        return scale if width is None else min(scale, width / w)

    def detect(
        self,
        image: Image,
        *,
        fallback: bool = False,
        subject: bool = False,
        width: int | None = None,
        min_face_px: float | None = None,
    ) -> Faces:
        """Faces with landmarks, boxes in ``image`` pixels, smaller than ``min_face_px`` dropped.

        width: scan a copy scaled to at most this many pixels wide (live video: detection cost
        grows with the pixels scanned); boxes and landmarks are still in full-resolution pixels.
        min_face_px: shorter box side kept, ``image`` pixels (default: the engine config's).

        fallback: when the main detector finds nothing, retry with the fallback detector (MMOD):
        for photos, where a miss costs more than the ~10x slower retry.
        subject: the photo is about its main face(s) (enrollment, dataset photos): scan coarse to
        fine — without upsampling first (~4x cheaper), at the configured upsampling only when that
        finds nothing. Small background faces may then go unreported; never use it for search.
        """
        scale = self.detection_scale(image.shape, width)
        min_px = self.config.min_face_px if min_face_px is None else min_face_px
        faces = Faces.empty()
        if subject and self.coarse_detector is not None:
            faces = self._run_detector(self.coarse_detector, image, scale, min_px)
        if len(faces) == 0:
            faces = self._run_detector(self.detector, image, scale, min_px)
        if len(faces) == 0 and fallback and self.fallback_detector is not None:
            faces = self._run_detector(self.fallback_detector, image, scale, min_px)
        return self.landmarker.landmarks(image, faces)

    def _run_detector(self, det: FaceDetector, image: Image, scale: float, min_face_px: float) -> Faces:
        h, w = image.shape[:2]
        if scale < 1.0:
            from PIL import Image as PILImage

            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(PILImage.fromarray(image).resize(size, PILImage.BILINEAR))
            faces = det.detect(small).scaled(1.0 / scale)
        else:
            faces = det.detect(image)
        if len(faces) == 0:
            return faces
        faces = Faces(np.clip(faces.xyxy, 0, [w, h, w, h]).astype(np.float32), faces.score)
        keep = np.minimum(faces.widths, faces.heights) >= min_face_px
        return faces.take(keep)

    def model_crops(self, image: Image, xyxy: np.ndarray) -> np.ndarray | None:
        """(N, 224, 224, 3) uint8 crops of ``image`` around the (N, 4) boxes that the crop model
        (faceres) embeds, or None when the engine's model needs none (model="dlib")."""
        if self.crop_embedder is None:
            return None
        from sightline.vision.embed.faceres import crops

        return crops(image, xyxy)

    def embed_chips(self, chips: Sequence[np.ndarray] | np.ndarray, crops: np.ndarray | None = None) -> F32:
        """(N, 150, 150, 3) uint8 chips -> (N, D) float32 L2-normalised descriptors.

        With ``flip_average`` the chip and its mirror image are embedded in one batch and their
        raw descriptors averaged before normalising (2x the descriptor cost).
        crops: (N, 224, 224, 3) from :meth:`model_crops`, required when ``needs_crops``
        (model="fusion": the result is the fused 1152-D template), ignored otherwise.
        """
        arr = np.asarray(chips, dtype=np.uint8).reshape(-1, align.CHIP_SIZE, align.CHIP_SIZE, 3)
        if self.fusion is None:
            return self._embed_dlib(arr)
        if crops is None:
            raise ValueError(
                f"model {self.model!r} embeds the face crop of the original image too: pass "
                "crops=engine.model_crops(image, xyxy) (or use embed_faces(image, xyxy, chips))"
            )
        from sightline.vision.embed.fusion import fuse

        a, b = self.embed_parts(arr, crops)
        return fuse(a, b, self.fusion)

    def embed_parts(self, chips: np.ndarray, crops: np.ndarray) -> tuple[F32, F32]:
        """Fusion only: the two L2-normalised parts, (N, 128) dlib and (N, 1024) faceres."""
        if self.crop_embedder is None:
            raise ValueError(f"model {self.model!r} has no crop model")
        cr = np.asarray(crops, dtype=np.uint8)
        if cr.ndim != 4 or len(cr) != len(chips):
            raise ValueError(f"crops must be (N, 224, 224, 3) with N = {len(chips)} chips, got {cr.shape}")
        return self._embed_dlib(chips), self._embed_mirrored(self.crop_embedder.embed, cr, self.crop_embedder.dim)

    def embed_faces(self, image: Image, xyxy: np.ndarray, chips: np.ndarray) -> F32:
        """(N, D) descriptors of the faces at (N, 4) ``xyxy`` in ``image``, whose aligned chips
        (``align.chips(image, faces)``) are ``chips``; works for every model."""
        return self.embed_chips(chips, crops=self.model_crops(image, np.asarray(xyxy)))

    def _embed_dlib(self, arr: np.ndarray) -> F32:
        return self._embed_mirrored(lambda b: self.embedder.embed(list(b)), arr, self.embedder.dim)

    def _embed_mirrored(self, fn, arr: np.ndarray, dim: int) -> F32:  # type: ignore[no-untyped-def]
        """Batches of ``arr`` (N, S, S, 3) through ``fn`` -> (N, dim) L2-normalised, mirror-averaged
        (raw outputs of the image and its mirror averaged before normalising) with ``flip_average``."""
        if len(arr) == 0:
            return np.zeros((0, dim), np.float32)
        bs = self.config.batch_size
        parts = []
        for i in range(0, len(arr), bs):
            batch = arr[i : i + bs]
            if self.config.flip_average:
                both = np.concatenate([batch, np.ascontiguousarray(batch[:, :, ::-1])])
                raw = fn(both)
                raw = (raw[: len(batch)] + raw[len(batch) :]) / 2
            else:
                raw = fn(batch)
            parts.append(raw)
        return l2_normalize(np.concatenate(parts).astype(np.float32))

    def analyze(
        self, image: Image, *, embed: bool = True, fallback: bool = True, subject: bool = False
    ) -> list[FaceRecord]:
        """Every face in an RGB (H, W, 3) uint8 image, largest first, with quality and descriptor.

        subject=True: only the photo's main faces are wanted (see :meth:`detect`).
        """
        faces = self.detect(image, fallback=fallback, subject=subject)
        if len(faces) == 0:
            return []
        chips = align.chips(image, faces)
        embs = self.embed_faces(image, faces.xyxy, chips) if embed else None
        records = []
        assert faces.kps is not None
        for i in range(len(faces)):
            x1, y1, x2, y2 = (float(v) for v in faces.xyxy[i])
            q = quality.assess(min(x2 - x1, y2 - y1), faces.kps[i], chips[i])
            records.append(
                FaceRecord(
                    xyxy=(x1, y1, x2, y2),
                    kps=faces.kps[i],
                    det_score=float(faces.score[i]),
                    quality=q,
                    embedding=None if embs is None else embs[i],
                    chip=chips[i],
                )
            )
        records.sort(key=lambda r: r.area, reverse=True)
        return records


def pick_subject(
    records: Sequence[FaceRecord],
    image_shape: tuple[int, ...],
    rule: Literal["largest", "central"] = "largest",
) -> FaceRecord | None:
    """The face a single-subject photo is about.

    'largest': the biggest box. 'central': among faces at least 80% as large as the biggest, the
    one nearest the image centre (dataset photos are centred on their subject; a bystander can
    be as large).
    """
    if not records:
        return None
    if rule == "largest" or len(records) == 1:
        return max(records, key=lambda r: r.area)
    h, w = image_shape[:2]
    big = max(r.area for r in records)
    near = [r for r in records if r.area >= 0.8 * big]

    def off_centre(r: FaceRecord) -> float:
        x1, y1, x2, y2 = r.xyxy
        return ((x1 + x2) / 2 - w / 2) ** 2 + ((y1 + y2) / 2 - h / 2) ** 2

    return min(near, key=off_centre)


class _LazyDetector(FaceDetector):
    """Builds the wrapped detector on first use (the MMOD fallback is rarely needed)."""

    def __init__(self, name: str, **kwargs: object) -> None:
        self.name = name
        self._kwargs = kwargs
        self._det: FaceDetector | None = None

    def detect(self, image: Image) -> Faces:
        if self._det is None:
            self._det = detectors.get(self.name)(**self._kwargs)
        return self._det.detect(image)
