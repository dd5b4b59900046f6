"""Governance costs, measured: audit append and verify rates, sealing overhead, index load and key rotation.

    python -m sightline.governance.bench --templates 10000 --audit 20000 --out docs/results/governance_bench.json

Prints one JSON document (and writes it to ``--out``). Works in a temporary data directory with synthetic
128-D descriptors and 12 kB crops (the size of a 320 px JPEG face crop); nothing leaves that directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _audit(data: Path, n: int) -> dict[str, Any]:
    from sightline.gallery.store import GalleryStore
    from sightline.governance.audit import AuditLog

    with GalleryStore.open(data) as store:
        log = AuditLog(store)
        t0 = time.perf_counter()
        for i in range(n):
            log.record("bench", "search.photo", reason="bench", client="10.0.0.1", details={"faces": 1, "i": i})
        t_append = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = 1000
        for start in range(0, n, batch):
            with store.transaction():
                for i in range(start, min(n, start + batch)):
                    log.record("bench", "camera.update", details={"i": i})
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = log.verify()
        t_verify = time.perf_counter() - t0
        assert report.ok and report.entries == 2 * n
    return {
        "entries": n,
        "append_per_s_own_transaction": n / t_append,
        "append_per_s_1000_per_transaction": n / t_batched,
        "verify_entries_per_s": 2 * n / t_verify,
        "verify_s": t_verify,
    }


def _crypto(data: Path, templates: int, dim: int, crop_bytes: int) -> dict[str, Any]:
    from sightline.gallery.store import GalleryStore
    from sightline.governance.audit import AuditLog
    from sightline.governance.keys import rotate_key

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(templates, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    crop = rng.integers(0, 255, crop_bytes, dtype=np.uint8).tobytes()
    out: dict[str, Any] = {"templates": templates, "dim": dim, "crop_bytes": crop_bytes}
    for encrypt in (False, True):
        d = data / ("sealed" if encrypt else "plain")
        with GalleryStore.open(d, encrypt=encrypt) as store:
            t0 = time.perf_counter()
            with store.transaction():
                for i in range(0, templates, 100):
                    pid = store.add_person(f"p{i}").id
                    for j in range(i, min(templates, i + 100)):
                        store.add_template(
                            pid, model="m", descriptor=vecs[j], quality=0.9, photo_sha256=f"{j:064x}", crop_jpeg=crop
                        )
            t_write = time.perf_counter() - t0
            loads = []
            for _ in range(3):
                t0 = time.perf_counter()
                _, _, mat = store.load_descriptors("m")
                loads.append(time.perf_counter() - t0)
            assert mat.shape == (templates, dim)
            key = "sealed" if encrypt else "plain"
            out[f"{key}_write_templates_per_s"] = templates / t_write
            out[f"{key}_load_descriptors_s"] = min(loads)
            if encrypt:
                t0 = time.perf_counter()
                report = rotate_key(store, d, audit=AuditLog(store), actor="bench")
                out["rotate_s"] = time.perf_counter() - t0
                out["rotate_blobs"] = sum(report.resealed.values())
                out["rotate_blobs_per_s"] = out["rotate_blobs"] / out["rotate_s"]
    out["load_overhead_x"] = out["sealed_load_descriptors_s"] / out["plain_load_descriptors_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--templates", type=int, default=10_000, help="Templates (descriptor + crop) to seal and load")
    p.add_argument("--dim", type=int, default=128, help="Descriptor dimension")
    p.add_argument("--crop-bytes", type=int, default=12_000, help="Bytes per face crop")
    p.add_argument("--audit", type=int, default=20_000, help="Audit entries appended per mode")
    p.add_argument("--out", type=Path, default=None, help="Also write the JSON here")
    args = p.parse_args(argv)
    if min(args.templates, args.dim, args.crop_bytes, args.audit) < 1:
        p.error("every count must be >= 1")
    saved = os.environ.pop("SIGHTLINE_KEY", None)
    try:
        with tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp:
            result = {
                "command": " ".join(
                    ["python -m sightline.governance.bench", *(argv if argv is not None else sys.argv[1:])]
                ),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "audit": _audit(Path(tmp) / "audit", args.audit),
                "encryption": _crypto(Path(tmp), args.templates, args.dim, args.crop_bytes),
            }
    finally:
        if saved is not None:
            os.environ["SIGHTLINE_KEY"] = saved
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
