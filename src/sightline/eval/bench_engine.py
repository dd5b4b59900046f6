"""Speed of the two network runtimes, measured side by side in one run: dlib-bin vs ONNX Runtime.

Figures (milliseconds, median of ``repeats`` timed runs after one untimed warm-up):

- ``descriptor_ms_*``: ResNet descriptor time per face, one call over a batch of ``BATCH`` aligned
  150x150 chips cut from real faces (dlib's ``get_face_chip``, 5 landmarks, padding 0.25);
- ``mmod_ms_<W>x<H>_*``: MMOD CNN detection per frame (upsample 0), frames made from a real photo
  resized to fit and padded (black) to exactly 640x480 and 1280x720.

dlib runs through the ``dlib`` module directly (dlib-bin: one thread, no BLAS, whatever ``threads``
says); onnx runs through ``OnnxResnetEmbedder`` / ``OnnxMmodDetector`` with ``threads`` intra-op
threads. Speedups are dlib / onnx. The same run checks that both give the same answer
(``descriptor_max_abs_diff``, ``mmod_same_boxes``). On a shared machine, run it alone: figures
from concurrent runs are not comparable.

Cost of one run: about (BATCH x 0.06 s + 1 s + 3 s) x (repeats + 1) for the dlib side.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: chips per descriptor call
BATCH = 32
FRAME_SIZES = ((640, 480), (1280, 720))
#: photos used when no image_dir is given: the repository's committed test faces (a source checkout)
DEFAULT_IMAGE_DIR = Path(__file__).resolve().parents[3] / "tests" / "data" / "faces"


def _time_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, best) wall time of ``fn`` in ms over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def _cpu_info() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable, "machine": platform.machine()}


def _load_photos(image_dir: Path | None, limit: int = 12) -> tuple[list[np.ndarray], str]:
    from sightline.imaging import ImageError, find_photos, load_image

    folder = image_dir if image_dir is not None else DEFAULT_IMAGE_DIR
    if not folder.is_dir():
        if image_dir is not None:
            raise FileNotFoundError(f"image_dir {image_dir} is not a folder")
        logger.warning("no photos at %s; benchmarking on synthetic images", folder)
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)], "synthetic"
    photos = []
    for p in find_photos([folder])[:limit]:
        try:
            photos.append(np.asarray(load_image(p).rgb))
        except ImageError as exc:
            logger.warning("skipping %s: %s", p, exc)
    if not photos:
        raise ValueError(f"no usable photos in {folder}")
    return photos, str(folder)


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to fit inside width x height (aspect kept), pad with black to exactly that size."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR))
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def _chips(photos: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` aligned chips of the faces in ``photos`` (repeated to fill), cut by dlib itself."""
    import dlib

    from sightline.vision.backends.models import SHAPE_5, model_path

    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(model_path(SHAPE_5)))
    chips: list[np.ndarray] = []
    for img in photos:
        h, w = img.shape[:2]
        if max(h, w) > 800:  # HOG on a smaller copy is enough to find the face; cut from that copy
            img = _fit(img, round(w * 800 / max(h, w)), round(h * 800 / max(h, w)))
        for rect in hog(img, 1):
            chips.append(np.asarray(dlib.get_face_chip(img, sp(img, rect), size=150, padding=0.25)))
        if len(chips) >= n:
            break
    if not chips:  # no face anywhere (synthetic input): timing does not depend on content
        chips = [np.ascontiguousarray(_fit(photos[0], 150, 150))]
    return [chips[i % len(chips)] for i in range(n)]


def bench_engine(*, threads: int, repeats: int, image_dir: Path | None) -> dict[str, Any]:
    """Measure descriptor and MMOD time for dlib and onnx in this process; returns a flat dict.

    threads: onnx intra-op threads (0 = all cores); repeats: timed runs per figure (>= 1);
    image_dir: photos to use (default: the repository's test faces, else synthetic images).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    import dlib
    import onnxruntime as ort

    from sightline.vision.backends.models import MMOD, RESNET, model_path
    from sightline.vision.detect.mmod_onnx import OnnxMmodDetector
    from sightline.vision.embed.onnx_resnet import OnnxResnetEmbedder

    photos, source = _load_photos(image_dir)
    chips = _chips(photos, BATCH)
    result: dict[str, Any] = {
        "threads": threads,
        "repeats": repeats,
        "statistic": "median of repeats after one warm-up (best_ms: the minimum)",
        "images": source,
        "descriptor_batch": BATCH,
        "onnxruntime_version": ort.__version__,
        "dlib_version": dlib.__version__,
        "cpu": _cpu_info(),
        "best_ms": {},
    }

    # descriptor
    dnet = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    emb = OnnxResnetEmbedder(threads=threads, batch_size=BATCH)
    result["provider"] = emb.provider
    ref = np.array([np.asarray(v) for v in dnet.compute_face_descriptor(chips)], np.float32)
    result["descriptor_max_abs_diff"] = float(np.abs(emb.embed(chips) - ref).max())
    med, best = _time_ms(lambda: dnet.compute_face_descriptor(chips), repeats)
    result["descriptor_ms_dlib"], result["best_ms"]["descriptor_dlib"] = med / BATCH, best / BATCH
    med, best = _time_ms(lambda: emb.embed(chips), repeats)
    result["descriptor_ms_onnx"], result["best_ms"]["descriptor_onnx"] = med / BATCH, best / BATCH
    result["descriptor_speedup"] = result["descriptor_ms_dlib"] / result["descriptor_ms_onnx"]

    # MMOD
    cnn = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))
    det = OnnxMmodDetector(upsample=0, threads=threads)
    same = True
    for w, h in FRAME_SIZES:
        frame = _fit(photos[0], w, h)
        key = f"{w}x{h}"
        theirs = sorted((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1) for d in cnn(frame, 0))
        ours = sorted(tuple(int(v) for v in b) for b in det.detect(frame).xyxy)
        same = same and theirs == ours
        result[f"mmod_faces_{key}"] = len(theirs)
        med, best = _time_ms(lambda frame=frame: cnn(frame, 0), repeats)
        result[f"mmod_ms_{key}_dlib"], result["best_ms"][f"mmod_{key}_dlib"] = med, best
        med, best = _time_ms(lambda frame=frame: det.detect(frame), repeats)
        result[f"mmod_ms_{key}_onnx"], result["best_ms"][f"mmod_{key}_onnx"] = med, best
        result[f"mmod_speedup_{key}"] = result[f"mmod_ms_{key}_dlib"] / result[f"mmod_ms_{key}_onnx"]
    result["mmod_same_boxes"] = same
    result["mmod_provider"] = det.provider
    logger.info(
        "bench engine (threads=%s): descriptor %.1fx, mmod 640x480 %.1fx",
        threads,
        result["descriptor_speedup"],
        result["mmod_speedup_640x480"],
    )
    return result


if __name__ == "__main__":  # a runner for measuring by hand: python -m sightline.eval.bench_engine 1 3
    import json
    import sys

    logging.basicConfig(level=logging.INFO)
    args = sys.argv[1:]
    out = bench_engine(
        threads=int(args[0]) if args else 1,
        repeats=int(args[1]) if len(args) > 1 else 3,
        image_dir=Path(args[2]) if len(args) > 2 else None,
    )
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
