#!/usr/bin/env bash
# Photos per second of `sightline eval embed` against the face_recognition library on the same
# images, measured back to back in one run (the machine is shared: compare the ratio).
#
#   benchmarks/embed_rate.sh [DIR] [N]     # default: the LFW folder of ../shared/data, first 2000 images
#
# Needs face_recognition in its own venv (see benchmarks/face_recognition_baseline.py):
#   python3.11 -m venv /tmp/frvenv
#   /tmp/frvenv/bin/pip install dlib-bin face_recognition_models 'setuptools<81' numpy pillow click
#   /tmp/frvenv/bin/pip install --no-deps face_recognition
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-../shared/data/lfw/lfw-deepfunneled}
N=${2:-2000}
FR=${FR_PYTHON:-/tmp/frvenv/bin/python}
tmp=$(mktemp -d)
.venv/bin/sightline eval embed "$DIR" --limit "$N" --out "$tmp/s.npz" --json > "$tmp/sightline.json"
"$FR" benchmarks/face_recognition_baseline.py --embed-rate "$DIR" --limit "$N" > "$tmp/fr.json"
.venv/bin/python - "$tmp/sightline.json" "$tmp/fr.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); f = json.load(open(sys.argv[2]))
print(json.dumps({
    "images": s["images"],
    "sightline_photos_per_second": s["photos_per_second"],
    "sightline_backend": s["backend"], "sightline_scan": s["scan"], "sightline_flip_average": s["flip_average"],
    "face_recognition_photos_per_second": f["photos_per_second"],
    "speedup": round(s["photos_per_second"] / f["photos_per_second"], 2),
    "sightline_no_face": s["no_face"], "face_recognition_no_face": f.get("no_face"),
}, indent=2))
PY
rm -rf "$tmp"
