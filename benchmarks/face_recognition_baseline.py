"""Peer-library baseline: the `face_recognition` library, with its defaults, on the LFW pairs.

Standalone script, not part of the package and not run by the tests. It needs face_recognition
installed in its own virtualenv (its dlib and model packages must not mix with ours):

    python3.11 -m venv /tmp/frvenv
    /tmp/frvenv/bin/pip install dlib-bin face_recognition_models 'setuptools<81' numpy pillow click
    /tmp/frvenv/bin/pip install --no-deps face_recognition

What is run, exactly as a face_recognition user would (its api.py defaults):
    img = face_recognition.load_image_file(path)           # PIL, RGB
    encs = face_recognition.face_encodings(img)            # HOG detector, upsample 1,
                                                           # 5-point landmarks (model="small"),
                                                           # num_jitters=1
    enc = encs[0] if encs else None                        # the usual `[0]`; no face -> None
    score = -face_recognition.face_distance([enc_a], enc_b)[0]
A pair with an image where no face was found scores NaN, which the protocol counts as "different"
(the same rule Sightline's own `sightline eval lfw` follows). Accuracy is measured with Sightline's
protocol code (`sightline.eval.lfw`, pure numpy, imported from ../src) and also at the library's fixed
default tolerance (`compare_faces(tolerance=0.6)`: same iff distance <= 0.6).

Speed: wall time of load + detect + landmarks + encode over every distinct image, one process,
sequential, decode included (as `sightline eval embed` counts it).

Usage (prints one JSON object on stdout):
    nice -n 10 /tmp/frvenv/bin/python benchmarks/face_recognition_baseline.py \\
        --root /work/shared/data/lfw/lfw-deepfunneled --pairs /work/shared/data/lfw/pairs.txt
    nice -n 10 /tmp/frvenv/bin/python benchmarks/face_recognition_baseline.py --embed-rate DIR [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sightline.eval.lfw import accuracy_at_threshold, evaluate_lfw
from sightline.eval.pairs import read_pairs

# the same suffixes `sightline eval embed` walks (sightline.imaging.IMAGE_SUFFIXES)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
DEFAULT_TOLERANCE = 0.6


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    for pkg in ("face_recognition", "face_recognition_models", "dlib-bin", "numpy", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "?"
    return out


def encode_all(paths: list[Path], progress_every: int = 250) -> tuple[np.ndarray, float]:
    """(N, 128) float64 encodings (NaN rows where no face), wall seconds for all of them."""
    import face_recognition

    enc = np.full((len(paths), 128), np.nan)
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = face_recognition.load_image_file(str(p))
        encs = face_recognition.face_encodings(img)
        if encs:
            enc[i] = encs[0]
        if progress_every and (i + 1) % progress_every == 0:
            el = time.perf_counter() - t0
            msg = f"{i + 1}/{len(paths)} images, {el:.0f} s, {(i + 1) / el:.2f} /s"
            print(msg, file=sys.stderr, flush=True)
    return enc, time.perf_counter() - t0


def dataset_files(root: Path) -> list[Path]:
    """Every photo at ROOT/NAME/*, sorted (as `sightline eval embed` lists them)."""
    found = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and p.parent.parent == root
        and not p.name.startswith(".")
        and not p.parent.name.startswith(".")
    ]
    return sorted(found)


def run_pairs(root: Path, pairs_file: Path, limit: int | None) -> dict[str, object]:
    pairs = read_pairs(pairs_file)
    rel = pairs.image_paths()[:limit] if limit else pairs.image_paths()
    index = {r: i for i, r in enumerate(rel)}
    keep = np.array([a in index and b in index for a, b in pairs.path_pairs()])
    enc, seconds = encode_all([root / r for r in rel])
    pp = [pq for pq, k in zip(pairs.path_pairs(), keep, strict=True) if k]
    a = np.array([index[x] for x, _ in pp], dtype=np.int64)
    b = np.array([index[y] for _, y in pp], dtype=np.int64)
    # face_distance = Euclidean norm of the difference; NaN propagates where a face is missing
    scores = -np.linalg.norm(enc[a] - enc[b], axis=1)
    no_face = int(np.isnan(enc[:, 0]).sum())
    result = evaluate_lfw(scores, pairs.is_same[keep], pairs.folds[keep], images_without_face=no_face)
    return {
        "library": "face_recognition",
        "settings": "face_encodings(img)[0] defaults: hog, upsample 1, 5-point landmarks, num_jitters 1; "
        "score = -face_distance",
        "root": str(root),
        "pairs_file": str(pairs_file),
        "protocol": f"LFW {result.n_folds}-fold (threshold chosen on the other folds, tested on the held-out "
        "one); missing face = different",
        **result.to_dict(),
        "fold_threshold_as_distance": [None if t is None else -t for t in result.to_dict()["fold_threshold"]],
        "accuracy_at_default_tolerance_0.6": round(
            accuracy_at_threshold(scores, pairs.is_same[keep], -DEFAULT_TOLERANCE, pairs.folds[keep]), 6
        ),
        "accuracy_at_default_tolerance_kind": "mean of per-fold accuracies, same iff distance <= 0.6",
        "images": len(rel),
        "seconds": round(seconds, 1),
        "photos_per_second": round(len(rel) / seconds, 3),
        "versions": _versions(),
    }


def run_embed_rate(root: Path, limit: int | None) -> dict[str, object]:
    files = dataset_files(root)[:limit] if limit else dataset_files(root)
    enc, seconds = encode_all(files)
    return {
        "library": "face_recognition",
        "mode": "embed-rate (every ROOT/NAME/* photo, as `sightline eval embed`)",
        "root": str(root),
        "images": len(files),
        "no_face": int(np.isnan(enc[:, 0]).sum()),
        "seconds": round(seconds, 1),
        "photos_per_second": round(len(files) / seconds, 3),
        "versions": _versions(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/work/shared/data/lfw/lfw-deepfunneled"))
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/lfw/pairs.txt"))
    ap.add_argument("--embed-rate", type=Path, metavar="DIR", help="time every ROOT/NAME/* photo of DIR")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (smoke runs)")
    args = ap.parse_args()
    if args.embed_rate is not None:
        out = run_embed_rate(args.embed_rate, args.limit)
    else:
        out = run_pairs(args.root, args.pairs, args.limit)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
