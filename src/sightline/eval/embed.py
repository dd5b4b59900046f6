"""Embed an identity-folder dataset (``ROOT/NAME/*.jpg``) with the enrollment pipeline.

Each photo is labelled with one person, so where several faces are found the subject's face is
taken (``pick_subject``), and where the main detector finds none the fallback (MMOD) is tried
before giving up. The npz written has exactly: ``names`` (identity per image), ``paths``
(relative to ROOT), ``embeddings`` (N x D float32, a row of NaN where no face was found),
``seconds`` (float, wall time of the embedding work). With ``model="fusion"`` it also holds each
part, L2-normalised (``part_dlib_resnet_v1`` (N, 128), ``part_faceres_hse_v1`` (N, 1024)), from which
``sightline models fit-fusion`` measures the fusion parameters and single-model scores can be read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from sightline.config import ImagingConfig
from sightline.imaging import ImageError, find_photos, load_image
from sightline.types import F32
from sightline.vision.engine import FaceEngine, pick_subject

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class EmbeddedSet:
    """names: (N,) str; paths: (N,) str relative to root; embeddings: (N, D) float32 (NaN rows
    where no face was found or the file was unusable); seconds: wall time of the work."""

    names: np.ndarray
    paths: np.ndarray
    embeddings: F32
    seconds: float
    errors: tuple[tuple[str, str], ...] = ()
    parts: dict[str, F32] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return int(np.isnan(self.embeddings[:, 0]).sum()) if len(self.embeddings) else 0

    def save(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = {f"part_{k}": v for k, v in self.parts.items()}
        np.savez(
            out,
            names=self.names,
            paths=self.paths,
            embeddings=self.embeddings,
            seconds=np.float64(self.seconds),
            **extra,
        )

    @classmethod
    def load(cls, path: Path) -> EmbeddedSet:
        with np.load(path, allow_pickle=False) as z:
            parts = {k[5:]: z[k].astype(np.float32) for k in z.files if k.startswith("part_")}
            return cls(z["names"], z["paths"], z["embeddings"].astype(np.float32), float(z["seconds"]), parts=parts)


def dataset_files(root: Path) -> list[Path]:
    """Every photo under ``root/NAME/``, sorted; the folder name is the identity."""
    return [p for p in find_photos([root]) if p.parent.parent == root]


def embed_files(
    engine: FaceEngine,
    root: Path,
    files: Sequence[Path],
    *,
    subject: Literal["largest", "central"] = "central",
    imaging: ImagingConfig | None = None,
    progress: Callable[[int], None] | None = None,
    subject_mode: bool = True,
) -> EmbeddedSet:
    """Embed ``files`` (under ``root``) one subject face each; see the module docstring.

    subject_mode: detect coarse to fine as enrollment does (``FaceEngine.detect(subject=True)``);
    False scans every photo at the configured upsampling (finds small background faces too).
    """
    emb = np.full((len(files), engine.dim), np.nan, np.float32)
    fusion = engine.fusion
    parts = (
        {name: np.full((len(files), d), np.nan, np.float32) for name, d in zip(fusion.parts, fusion.dims, strict=True)}
        if fusion is not None
        else {}
    )
    errors: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        try:
            img = load_image(path, limits=imaging)
        except ImageError as exc:
            errors.append((str(path), str(exc)))
            logger.warning("skipped %s", exc)
        else:
            faces = engine.analyze(img.rgb, embed=False, fallback=True, subject=subject_mode)
            face = pick_subject(faces, img.rgb.shape, subject)
            if face is not None and face.chip is not None:
                box = np.asarray([face.xyxy], np.float32)
                if fusion is None:
                    emb[i] = engine.embed_chips(face.chip[None])[0]
                else:
                    from sightline.vision.embed.fusion import fuse

                    crops = engine.model_crops(img.rgb, box)
                    assert crops is not None
                    a, b = engine.embed_parts(face.chip[None], crops)
                    emb[i] = fuse(a, b, fusion)[0]
                    parts[fusion.parts[0]][i], parts[fusion.parts[1]][i] = a[0], b[0]
        if progress is not None:
            progress(i + 1)
    seconds = time.perf_counter() - t0
    rel = [str(p.relative_to(root)) for p in files]
    names = [p.parent.name for p in files]
    return EmbeddedSet(np.array(names), np.array(rel), emb, seconds, tuple(errors), parts)
