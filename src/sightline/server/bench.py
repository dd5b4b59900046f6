"""HTTP API latency benchmark: a real ``sightline serve`` (uvicorn, one process) on a throw-away data dir.

    python -m sightline.server.bench --searches 20 > out/bench_api.json

Enrolls the bundled sample faces (``tests/data/faces/gallery``, 5 persons) through the API, then times,
over real HTTP on localhost: login (argon2id verify + session), ``GET /api/alerts``, and
``POST /api/search`` with each probe of ``tests/data/faces/probes`` in turn (decode, detect, embed,
match, audit). Prints one JSON document: per operation n, mean, p50, p90 and max in milliseconds,
plus the machine's CPU count. Run it on a quiet machine; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * (len(ms) - 1) + 0.5))], 1)

    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 1),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "max_ms": round(ms[-1], 1),
    }


def run(searches: int, logins: int, repo: Path) -> dict[str, Any]:
    import httpx
    import uvicorn

    from sightline.config import ServerConfig
    from sightline.server.app import create_app
    from sightline.server.services import Services

    faces = repo / "tests" / "data" / "faces"
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = ServerConfig(
            data_dir=Path(tmp), port=port, start_cameras=False, search_rate_per_min=100_000, search_burst=10_000
        )
        services = Services.open(cfg)
        services.users.add("bench-sup", "bench-password-1", "supervisor")
        server = uvicorn.Server(
            uvicorn.Config(create_app(cfg, services), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            base = f"http://127.0.0.1:{port}"
            login_s = []
            for _ in range(logins):
                with httpx.Client(base_url=base) as c:
                    t0 = time.perf_counter()
                    r = c.post("/api/auth/login", json={"username": "bench-sup", "password": "bench-password-1"})
                    login_s.append(time.perf_counter() - t0)
                    r.raise_for_status()
            c = httpx.Client(base_url=base, timeout=60)
            csrf = c.post("/api/auth/login", json={"username": "bench-sup", "password": "bench-password-1"}).json()[
                "csrf_token"
            ]
            c.headers["X-CSRF-Token"] = csrf
            c.post("/api/watchlists", json={"name": "bench"}).raise_for_status()
            enroll_s = []
            for person in sorted(p for p in (faces / "gallery").iterdir() if p.is_dir()):
                pid = c.post(
                    "/api/persons", json={"name": person.name, "watchlists": ["bench"], "reason": "benchmark"}
                ).json()["id"]
                files = [("files", (p.name, p.read_bytes())) for p in sorted(person.iterdir())]
                t0 = time.perf_counter()
                c.post(f"/api/persons/{pid}/photos", files=files, data={"reason": "benchmark"}).raise_for_status()
                enroll_s.append((time.perf_counter() - t0) / len(files))
            probes = sorted((faces / "probes").glob("*.jpg"))
            search_s, list_s = [], []
            for i in range(searches):
                p = probes[i % len(probes)]
                t0 = time.perf_counter()
                c.post(
                    "/api/search",
                    files={"file": (p.name, p.read_bytes())},
                    data={"reason": "benchmark", "watchlist": "bench"},
                ).raise_for_status()
                search_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                c.get("/api/alerts").raise_for_status()
                list_s.append(time.perf_counter() - t0)
            c.close()
        finally:
            server.should_exit = True
            thread.join(10)
            services.close()
    return {
        "benchmark": "api_latency",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "engine": {"backend": services.engine.backend, "model": services.engine.model},  # type: ignore[attr-defined]
        "login": _stats(login_s),
        "enroll_per_photo": _stats(enroll_s),
        "search_photo": _stats(search_s),
        "list_alerts": _stats(list_s),
        "probes": [p.name for p in probes],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--searches", type=int, default=20)
    ap.add_argument("--logins", type=int, default=5)
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[3]
    result = run(max(1, args.searches), max(1, args.logins), repo)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
