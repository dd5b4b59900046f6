"""The converted faceres model against TensorFlow.js itself (pure-JS CPU backend, tools/tfjs-check).

Needs node and ``npm ci --prefix tools/tfjs-check`` (``make models`` does both steps of the setup);
skipped on a workstation without them, a failure in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sightline.vision.embed import faceres
from tests.conftest import GALLERY, PROBES, rgb
from tests.vision.test_faceres import require_faceres

TOOL = Path(__file__).resolve().parents[2] / "tools" / "tfjs-check"


def _require_node() -> str:
    node = shutil.which("node")
    missing = "node is not installed" if node is None else None
    if node is not None and not (TOOL / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        missing = f"{TOOL}/node_modules missing: run `npm ci --prefix {TOOL}` (make models)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    assert node is not None
    return node


def test_converted_faceres_matches_tfjs_within_1e4(tmp_path, engine):
    node = _require_node()
    inst = require_faceres()
    crops = []
    for photo in (GALLERY / "obama/obama.jpg", GALLERY / "rose_leslie/img1.jpg", PROBES / "alex_lacamoire1.jpg"):
        img = rgb(photo)
        face = engine.analyze(img, embed=False)[0]
        crops.append(faceres.crops(img, [face.xyxy])[0])
    arr = np.stack(crops)
    x = faceres.preprocess(arr)
    (tmp_path / "in.f32").write_bytes(x.astype("<f4").tobytes())
    proc = subprocess.run(
        [node, str(TOOL / "check.js"), str(inst.model_json), str(tmp_path / "in.f32"), str(len(x)),
         faceres.OUTPUT_NODE, str(tmp_path / "out.f32")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] == "cpu" and info["shape"] == [len(x), faceres.DIM]
    want = np.frombuffer((tmp_path / "out.f32").read_bytes(), "<f4").reshape(len(x), faceres.DIM)
    got = faceres.FaceresEmbedder(threads=1).embed(arr)
    assert np.abs(want).max() > 0.1  # a real, non-degenerate output
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
