"""``make demo``: the photo job end to end on bundled sample faces, in a throw-away data dir.

Enrolls a small watchlist from ``tests/data/faces/gallery`` (5 people), searches each probe
photo in ``tests/data/faces/probes`` and prints the results with what each score means.
Run from the repository root; the data dir is ``./out/demo`` unless SIGHTLINE_DATA_DIR is set.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def main() -> int:
    from sightline.cli.main import app

    root = Path(__file__).resolve().parents[3]
    faces = root / "tests" / "data" / "faces"
    if not faces.is_dir():
        print(f"sample faces not found at {faces}; run `make demo` from a source checkout", file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("SIGHTLINE_DATA_DIR", root / "out" / "demo"))
    if data_dir == root / "out" / "demo" and data_dir.exists():
        shutil.rmtree(data_dir)
    base = ["--data-dir", str(data_dir)]
    steps: list[tuple[str, list[str]]] = [
        (
            "Enroll 5 people from tests/data/faces/gallery into watchlist 'demo'",
            [*base, "enroll", "--watchlist", "demo", str(faces / "gallery")],
        ),
        ("The watchlist", [*base, "watchlist", "show", "demo"]),
    ]
    for probe in sorted((faces / "probes").glob("*.jpg")):
        steps.append((f"Search {probe.name}", [*base, "search", "--watchlist", "demo", "--top", "3", str(probe)]))
    steps.append(
        (
            "Verify two photos of Joe Biden",
            [*base, "verify", str(faces / "gallery/biden/biden.jpg"), str(faces / "gallery/biden/biden2.jpg")],
        )
    )
    for title, argv in steps:
        print(f"\n\033[1m$ sightline {' '.join(a if a != str(data_dir) else 'DATA' for a in argv)}\033[0m")
        print(f"# {title}")
        try:
            app(argv, standalone_mode=False)
        except SystemExit as exc:  # typer.Exit from commands that answer "no"
            if exc.code not in (0, 1, None):
                return int(exc.code)
        except Exception as exc:
            print(f"demo step failed: {exc}", file=sys.stderr)
            return 1
    print(f"\nDemo data is in {data_dir} (delete it freely).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
