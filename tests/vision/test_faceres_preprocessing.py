"""benchmarks/faceres_preprocessing.py: its resize and its centering analysis on tiny synthetic data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from sightline.eval.pairs import image_relpath

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "faceres_preprocessing.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("faceres_preprocessing", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_resize_without_antialiasing_is_two_tap_bilinear(bench):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    np.testing.assert_array_equal(bench.resize_bilinear_noaa(img, 8), img)
    # 2x down with half-pixel centres samples midway between pixel pairs: the mean of each 2x2 block
    half = bench.resize_bilinear_noaa(img, 4).astype(int)
    blocks = img.astype(float).reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    assert np.abs(half - blocks).max() <= 0.5 + 1e-9
    # 4x down takes 2 of every 4 pixels, unlike an antialiased (area-like) filter
    img2 = np.zeros((8, 8, 3), np.uint8)
    img2[:, ::4] = 255  # columns 0 and 4 bright: the samples at 1.5 and 5.5 miss them
    assert bench.resize_bilinear_noaa(img2, 2).max() == 0


def _write_set(tmp_path: Path, n_people: int = 40, per: int = 4) -> tuple[Path, Path]:
    """npz with unit parts (dlib-like and faceres-like: one large shared offset) + a 2-fold pairs file."""
    rng = np.random.default_rng(1)
    names, paths, a, b = [], [], [], []
    for p in range(n_people):
        ida, idb = rng.normal(size=128), rng.normal(size=1024)
        for k in range(per):
            names.append(f"P{p:03d}")
            paths.append(image_relpath(f"P{p:03d}", k + 1))
            a.append(ida + 1.2 * rng.normal(size=128))
            # non-negative, mostly a shared activation of varying strength (like a ReLU6 average) + identity + noise
            b.append(np.abs(8.0 * rng.uniform(0.5, 1.5) + 0.3 * idb + rng.normal(size=1024)))
    ua, ub = (np.asarray(x) / np.linalg.norm(np.asarray(x), axis=1, keepdims=True) for x in (a, b))
    ua, ub = ua.astype(np.float32), ub.astype(np.float32)
    npz = tmp_path / "set.npz"
    np.savez(
        npz,
        names=np.array(names),
        paths=np.array(paths),
        embeddings=np.concatenate([ua, ub], axis=1),
        seconds=np.float64(0),
        part_dlib_resnet_v1=ua,
        part_faceres_hse_v1=ub,
    )
    lines = ["2"]
    for fold in range(2):
        people = range(fold * n_people // 2, (fold + 1) * n_people // 2)
        lines += [f"P{p:03d}\t1\t2" for p in people]
        lines += [f"P{p:03d}\t3\tP{p + 1 if p + 1 in people else people[0]:03d}\t4" for p in people]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return npz, pairs


def test_centering_analysis_reports_every_variant_and_centering_helps_an_offset_descriptor(bench, tmp_path):
    npz, pairs = _write_set(tmp_path)
    out = json.loads(json.dumps(bench.centering(npz, pairs), default=float))
    for key in ("dlib", "faceres", "faceres_centred", "faceres_centred_crossfit", "fusion", "fusion_faceres_centred"):
        assert 0.0 <= out[key]["accuracy_mean"] <= 1.0, key
    assert set(out["fusion"]["all_pairs"]) == {"fnmr_at_fmr_0.001", "fnmr_at_fmr_0.0001", "fnmr_at_fmr_1e-05"}
    # the shared offset of varying strength hides identity in the faceres cosine; centering removes it
    assert out["faceres_centred"]["auc"] > out["faceres"]["auc"]
    assert out["fusion_faceres_centred"]["mu"][1] < 0.1 < out["fusion"]["mu"][1]


def test_centering_refuses_an_npz_with_missing_faces(bench, tmp_path):
    npz, pairs = _write_set(tmp_path, n_people=6, per=4)
    z = dict(np.load(npz))
    z["part_faceres_hse_v1"][0] = np.nan
    np.savez(npz, **z)
    with pytest.raises(SystemExit, match="without a face"):
        bench.centering(npz, pairs)
