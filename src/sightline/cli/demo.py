"""``make demo``: the photo job end to end on the bundled sample faces, then the console with a live camera.

1. Enrolls a watchlist 'demo' from ``tests/data/faces/gallery`` (5 people), searches each probe photo in
   ``tests/data/faces/probes`` and prints the results with what each score means (the CLI demo).
2. Creates a demo admin and a demo operator with random passwords, printed once (there is no default
   password anywhere), and a camera 'demo-cam' playing a clip made now with ffmpeg from the sample faces,
   in a loop, so alerts appear in the console.
3. Starts ``sightline serve`` on http://localhost:8080/ (``--port``; 0 = any free port) until Ctrl-C.

Run from the repository root; the data dir is ``./out/demo`` (wiped first) unless SIGHTLINE_DATA_DIR is
set. ``--no-serve`` stops after step 2; ``--duration S`` stops the server after S seconds (tests).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

#: Faces shown by the demo camera, each for CLIP_FACE_S seconds between CLIP_GAP_S of grey.
CLIP_PEOPLE = ("obama/obama.jpg", "biden/biden.jpg", "kit_harington/john1.jpeg", "rose_leslie/img1.jpg")
CLIP_FACE_S = 4.0
CLIP_GAP_S = 2.0


def _cli_tour(app, data_dir: Path, faces: Path) -> int:
    base = ["--data-dir", str(data_dir)]
    steps: list[tuple[str, list[str]]] = [
        (
            "Enroll 5 people from tests/data/faces/gallery into watchlist 'demo'",
            [*base, "enroll", "--reason", "demo", "--watchlist", "demo", str(faces / "gallery")],
        ),
        ("The watchlist", [*base, "watchlist", "show", "demo"]),
    ]
    for probe in sorted((faces / "probes").glob("*.jpg")):
        steps.append(
            (
                f"Search {probe.name}",
                [*base, "search", "--reason", "demo", "--watchlist", "demo", "--top", "3", str(probe)],
            )
        )
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
    return 0


def _console_setup(data_dir: Path, faces: Path) -> dict[str, str]:
    """Demo users (random passwords) and the demo camera; returns {username: password}."""
    from sightline.config import CameraConfig
    from sightline.eval.clips import make_face_clip
    from sightline.gallery.store import GalleryStore
    from sightline.governance.audit import AuditLog
    from sightline.server.auth import UserStore
    from sightline.video.cameras import CameraStore

    segments: list[tuple[Path | None, float]] = []
    for rel in CLIP_PEOPLE:
        segments += [(None, CLIP_GAP_S), (faces / "gallery" / rel, CLIP_FACE_S)]
    clip = make_face_clip(data_dir / "demo-clip.mp4", segments, size=(960, 540), fps=15)
    store = GalleryStore.open(data_dir)
    try:
        users = UserStore(store)
        creds = {}
        for name, role in (("demo-admin", "admin"), ("demo-operator", "operator")):
            password = secrets.token_urlsafe(12)
            u = users.add(name, password, role)
            AuditLog(store).record(
                "cli:demo", "user.create", target=f"user:{u.id}", client="cli", details={"role": role}
            )
            creds[name] = password
        cams = CameraStore(store)
        cams.add(CameraConfig(id="demo-cam", url=str(clip.path), loop=True, analysis_fps=4.0))
        AuditLog(store).record("cli:demo", "camera.create", target="camera:demo-cam", client="cli")
    finally:
        store.close()
    return creds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIGHTLINE_DEMO_PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-serve", action="store_true", help="Prepare everything but do not start the server")
    parser.add_argument("--duration", type=float, default=None, help="Stop the server after this many seconds")
    parser.add_argument("--skip-tour", action="store_true", help="Skip the CLI search tour (enroll only)")
    args = parser.parse_args(argv)

    from sightline.cli.main import app

    root = Path(__file__).resolve().parents[3]
    faces = root / "tests" / "data" / "faces"
    if not faces.is_dir():
        print(f"sample faces not found at {faces}; run `make demo` from a source checkout", file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("SIGHTLINE_DATA_DIR", root / "out" / "demo"))
    if data_dir == root / "out" / "demo" and data_dir.exists():
        shutil.rmtree(data_dir)
    tour = _cli_tour_enroll_only if args.skip_tour else _cli_tour
    code = tour(app, data_dir, faces)
    if code:
        return code

    print("\n\033[1m# The console\033[0m")
    try:
        creds = _console_setup(data_dir, faces)
    except Exception as exc:
        print(f"demo console setup failed: {exc}", file=sys.stderr)
        return 1
    print("Demo users (passwords are random and shown only now):")
    for name, password in creds.items():
        print(f"  {name:14s} {password}")
    print("Camera 'demo-cam' plays a loop of the sample faces; watch alerts appear on the Live alerts page.")
    print(f"Demo data is in {data_dir} (delete it freely).")
    if args.no_serve:
        return 0

    from sightline.cli.main import CliState
    from sightline.cli.serve import serve_cmd
    from sightline.config import Settings

    port = args.port
    if port and not _port_free(args.host, port):
        print(f"port {port} is in use; using a free port instead (or pass --port N)")
        port = 0

    def ready(url: str) -> None:
        print(f"\nOpen {url} and log in as demo-operator (search, review) or demo-admin (users). Ctrl-C stops.")
        sys.stdout.flush()

    serve_cmd(
        CliState(Settings(data_dir=data_dir)),
        args.host,
        port,
        start_cameras=True,
        metrics_public=False,
        secure_cookies=False,
        on_ready=ready,
        duration_s=args.duration,
    )
    return 0


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _cli_tour_enroll_only(app, data_dir: Path, faces: Path) -> int:
    try:
        app(
            ["--data-dir", str(data_dir), "enroll", "--reason", "demo", "--watchlist", "demo", str(faces / "gallery")],
            standalone_mode=False,
        )
    except SystemExit as exc:
        if exc.code not in (0, None):
            return int(exc.code)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
