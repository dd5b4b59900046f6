"""Print JSON: the converted faceres model vs TensorFlow.js (check.js) on a few committed face photos.

    npm ci --prefix tools/tfjs-check && .venv/bin/python tools/tfjs-check/compare.py > out.json

Needs the installed model (``sightline models install``) and node.
"""

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from sightline.config import EngineConfig
from sightline.models.human_models import locate
from sightline.vision.embed import faceres
from sightline.vision.engine import FaceEngine

eng = FaceEngine.from_config(EngineConfig(threads=1))
photos = [
    "tests/data/faces/gallery/obama/obama.jpg",
    "tests/data/faces/gallery/rose_leslie/img1.jpg",
    "tests/data/faces/probes/alex_lacamoire1.jpg",
    "tests/data/faces/gallery/biden/biden.jpg",
]
cr = []
for p in photos:
    img = np.asarray(Image.open(p).convert("RGB"))
    f = eng.analyze(img, embed=False)[0]
    cr.append(faceres.crops(img, [f.xyxy])[0])
arr = np.stack(cr)
x = faceres.preprocess(arr)
d = Path(tempfile.mkdtemp())
(d / "in.f32").write_bytes(x.astype("<f4").tobytes())
out = subprocess.run(
    [
        "node",
        "tools/tfjs-check/check.js",
        str(locate().model_json),
        str(d / "in.f32"),
        str(len(x)),
        faceres.OUTPUT_NODE,
        str(d / "o.f32"),
    ],
    capture_output=True,
    text=True,
    check=True,
)
want = np.frombuffer((d / "o.f32").read_bytes(), "<f4").reshape(len(x), -1)
got = faceres.FaceresEmbedder(threads=1).embed(arr)
print(
    json.dumps(
        {
            "faces": photos,
            "tfjs": json.loads(out.stdout.strip().splitlines()[-1]),
            "max_abs_diff": float(np.abs(got - want).max()),
            "max_abs_value": float(np.abs(want).max()),
            "cosine_min": float(
                min((g @ w) / np.linalg.norm(g) / np.linalg.norm(w) for g, w in zip(got, want, strict=True))
            ),
        },
        indent=1,
    )
)
