"""Shared fixtures: the committed sample faces and engines built once per session.

Also the suite's own rules: under ``CI=true`` a skip is a failure (``tests/plugins/ci_strict.py``); every
test process (each pytest-xdist worker too) gets its own ``SIGHTLINE_DATA_DIR`` so no test can touch the
user's gallery or another worker's; the timing-sensitive files carry the ``timing`` marker that
``make test-stress`` repeats under load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"
GALLERY = FACES / "gallery"
PROBES = FACES / "probes"
LFW_MINI = DATA / "lfw_mini"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

pytest_plugins = ["pytester", "tests.plugins.ci_strict"]

#: Files whose tests wait on real time (pacing, reconnects, streams, sockets, delivery retries): the set
#: ``make test-stress`` repeats with a CPU burner running. They must pass however slow the machine is.
TIMING_SENSITIVE = (
    "tests/video/test_capture.py",
    "tests/video/test_sources.py",
    "tests/video/test_watch_e2e.py",
    "tests/video/test_worker.py",
    "tests/events/test_bus.py",
    "tests/events/test_delivery.py",
    "tests/server/test_serve_cli.py",
)


_DATA_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing: waits on real time; repeated under load by make test-stress")
    # One data dir per test process (xdist workers included): a CLI run that forgets --data-dir writes here,
    # never into ~/.local/share/sightline or a directory another worker uses.
    if "SIGHTLINE_DATA_DIR" not in os.environ:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        config.stash[_DATA_DIR] = tempfile.mkdtemp(prefix=f"sightline-test-{worker}-")
        os.environ["SIGHTLINE_DATA_DIR"] = config.stash[_DATA_DIR]


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_DATA_DIR, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop("SIGHTLINE_DATA_DIR", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix() if Path(str(item.path)).is_relative_to(root) else ""
        if rel in TIMING_SENSITIVE:
            item.add_marker(pytest.mark.timing)


def rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="session")
def dlib_engine():
    """The reference engine (dlib backend, HOG, upsample 1, mirror averaging)."""
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    return FaceEngine.from_config(EngineConfig(backend="dlib"))


@pytest.fixture(scope="session")
def engine():
    """The default engine ('auto' backend: onnx where available)."""
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    return FaceEngine.from_config(EngineConfig())
