"""The CLI end to end on real photos and a real SQLite gallery in a temp data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from tests.badinputs import corpus, printable
from tests.conftest import GALLERY, PROBES

runner = CliRunner()


def run(data_dir: Path, *args: str, code: int | None = 0) -> dict | list:
    res = runner.invoke(app, ["--data-dir", str(data_dir), *args, "--json"])
    if code is not None:
        assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gallery")
    out = run(d, "enroll", "--reason", "case 1", "--watchlist", "demo", str(GALLERY))
    assert out["persons_enrolled"] == 5 and out["templates_added"] == 9, out
    return d


@pytest.mark.parametrize(
    ("probe", "expected"),
    [("obama1.jpg", "obama"), ("alex_lacamoire1.jpg", "alex_lacamoire"), ("johnsnow_test1.jpg", "kit_harington")],
)
def test_search_finds_the_enrolled_person(enrolled, probe, expected):
    out = run(enrolled, "search", "--reason", "case 1", "--watchlist", "demo", str(PROBES / probe))
    assert len(out["faces"]) == 1
    best = out["faces"][0]["candidates"][0]
    assert best["name"] == expected and best["match"] is True
    assert 0 < best["est_false_match_rate"] < 1e-3
    assert "strangers" in best["meaning"]
    # the runner-up is someone else and does not match
    assert out["faces"][0]["candidates"][1]["match"] is False


def test_search_every_face_of_a_group_photo(enrolled):
    out = run(
        enrolled,
        "search",
        "--reason",
        "case 1",
        "--watchlist",
        "demo",
        "--top",
        "2",
        str(PROBES / "obama_and_biden.jpg"),
    )
    names = {f["candidates"][0]["name"] for f in out["faces"] if f["candidates"][0]["match"]}
    assert {"obama", "biden"} <= names
    assert all(len(f["candidates"]) <= 2 for f in out["faces"])


def test_watchlist_and_person_commands(enrolled):
    lists = run(enrolled, "watchlist", "list")
    assert [(w["name"], w["members"]) for w in lists] == [("demo", 5)]
    shown = run(enrolled, "watchlist", "show", "demo")
    assert sorted(m["name"] for m in shown["members"]) == [
        "alex_lacamoire",
        "biden",
        "kit_harington",
        "obama",
        "rose_leslie",
    ]
    persons = run(enrolled, "person", "list")
    biden = next(p for p in persons if p["name"] == "biden")
    assert biden["templates"] == 2
    assert run(enrolled, "person", "show", "biden")["name"] == "biden"
    run(enrolled, "person", "show", "nobody", code=2)
    run(enrolled, "watchlist", "show", "nope", code=2)


def test_enrolling_the_same_photo_twice_is_detected(enrolled):
    photo = GALLERY / "obama" / "obama.jpg"
    out = run(enrolled, "enroll", "--reason", "case 1", "--watchlist", "demo", "--person", "obama", str(photo))
    assert out["templates_added"] == 0
    assert [s["code"] for s in out["skipped"]] == ["duplicate"]


def test_verify(tmp_path):
    same = run(tmp_path, "verify", str(GALLERY / "biden/biden.jpg"), str(GALLERY / "biden/biden2.jpg"))
    assert same["same_person"] is True and same["similarity"] >= same["threshold"]
    diff = run(tmp_path, "verify", str(GALLERY / "biden/biden.jpg"), str(GALLERY / "obama/obama.jpg"), code=1)
    assert diff["same_person"] is False


def test_detect_draws(tmp_path):
    out = run(tmp_path, "detect", str(PROBES / "kit_with_rose.jpg"), "--draw", str(tmp_path / "o.png"))
    assert len(out["faces"]) == 2
    assert all(len(f["kps"]) == 5 and 0 <= f["quality"]["score"] <= 1 for f in out["faces"])
    assert (tmp_path / "o.png").stat().st_size > 1000


def test_enroll_skips_photos_without_exactly_one_face(tmp_path):
    out = run(
        tmp_path,
        "enroll",
        "--reason",
        "case 1",
        "--watchlist",
        "w",
        "--person",
        "kit",
        str(PROBES / "kit_with_rose.jpg"),
    )
    assert out["templates_added"] == 0 and out["persons_enrolled"] == 0
    assert "2 faces" in out["skipped"][0]["reason"]
    out = run(
        tmp_path,
        "enroll",
        "--reason",
        "case 1",
        "--watchlist",
        "w",
        "--person",
        "kit",
        "--largest",
        str(PROBES / "kit_with_rose.jpg"),
    )
    assert out["templates_added"] == 1


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    for name, (data, _code) in corpus().items():
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("name", sorted(corpus()))
def test_bad_photo_gives_a_clear_error_on_search(enrolled, bad_dir, name):
    res = runner.invoke(
        app, ["--data-dir", str(enrolled), "search", "--reason", "case 1", str(bad_dir / name), "--json"]
    )
    assert res.exit_code == 2, res.output
    err = json.loads(res.stdout)["error"]
    assert printable(name) in err and len(err) > len(name) + 5


def test_bad_photos_in_a_batch_are_skipped_and_the_rest_enrolled(tmp_path, bad_dir):
    folder = tmp_path / "people" / "biden"
    folder.mkdir(parents=True)
    for name, (data, _code) in corpus().items():
        (folder / name).write_bytes(data)
    (folder / "good.jpg").write_bytes((GALLERY / "biden/biden.jpg").read_bytes())
    out = run(tmp_path, "enroll", "--reason", "case 1", "--watchlist", "w", str(tmp_path / "people"))
    assert out["persons_enrolled"] == 1 and out["templates_added"] == 1
    expected = {printable(name): code for name, (_d, code) in corpus().items()}
    got = {s["photo"]: s["code"] for s in out["skipped"]}
    assert got == expected


def test_missing_file_and_usage_errors(tmp_path):
    res = runner.invoke(app, ["--data-dir", str(tmp_path), "search", "--reason", "case 1", str(tmp_path / "nope.jpg")])
    assert res.exit_code == 2 and "nope.jpg" in res.output
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path),
            "enroll",
            "--reason",
            "case 1",
            "--watchlist",
            "w",
            str(GALLERY / "obama/obama.jpg"),
        ],
    )
    assert res.exit_code == 2 and "--person" in res.output


@pytest.mark.slow
def test_enroll_and_search_survive_a_process_restart(tmp_path):
    """Two separate processes: the second one finds what the first enrolled."""
    env = {**os.environ, "SIGHTLINE_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "sightline.cli.main"]
    subprocess.run(
        [
            *cmd,
            "enroll",
            "--reason",
            "case 1",
            "--watchlist",
            "w",
            "--person",
            "obama",
            str(GALLERY / "obama/obama.jpg"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*cmd, "search", "--reason", "case 1", "--json", str(PROBES / "obama1.jpg")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    best = json.loads(out.stdout)["faces"][0]["candidates"][0]
    assert best["name"] == "obama" and best["match"]
    assert (tmp_path / "gallery.sqlite3").is_file()


def _variants(tmp: Path) -> dict[str, Path]:
    """The same obama probe re-encoded the ways phones, scanners and editors write photos."""
    from PIL import Image

    src = Image.open(PROBES / "obama1.jpg").convert("RGB")
    src = src.resize((src.width // 2, src.height // 2))
    out: dict[str, Path] = {}

    def save(name: str, im: Image.Image, fmt: str, **kw: object) -> None:
        p = tmp / name
        im.save(p, fmt, **kw)
        out[name] = p

    save("cmyk.jpg", src.convert("CMYK"), "JPEG", quality=90)
    save("grey16.png", Image.fromarray(np.asarray(src.convert("L"), np.uint16) * 257), "PNG")
    save("rgba.png", src.convert("RGBA"), "PNG")
    save("photo.webp", src, "WEBP", quality=90)
    save("photo.tiff", src, "TIFF")
    save("photo.bmp", src, "BMP")
    save("photo.gif", src.convert("P"), "GIF")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored pixels lie on their side
    save("sideways.jpg", src.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=90)
    save("really-a-png.jpg", src, "PNG")
    return out


@pytest.mark.slow
def test_every_accepted_format_and_mode_is_searched(enrolled, tmp_path):
    for name, path in _variants(tmp_path).items():
        out = run(enrolled, "search", "--reason", "case 1", "--watchlist", "demo", "--top", "1", str(path))
        assert len(out["faces"]) == 1, name
        best = out["faces"][0]["candidates"][0]
        assert best["name"] == "obama" and best["match"], (name, best)


def test_eval_embed_writes_the_documented_npz(tmp_path):
    from tests.conftest import LFW_MINI

    out = run(tmp_path, "eval", "embed", str(LFW_MINI), "--out", str(tmp_path / "e.npz"))
    assert out["images"] == 22 and out["no_face"] == 0
    with np.load(tmp_path / "e.npz") as z:
        assert sorted(z.files) == ["embeddings", "names", "paths", "seconds"]
        assert z["embeddings"].shape == (22, 128) and z["embeddings"].dtype == np.float32
        assert all(p.startswith(f"{n}/") for n, p in zip(z["names"], z["paths"], strict=True))
        assert float(z["seconds"]) > 0


def test_eval_lfw_runs_the_fold_protocol(tmp_path):
    from tests.conftest import LFW_MINI

    out = run(tmp_path, "eval", "lfw", "--root", str(LFW_MINI), "--pairs", str(LFW_MINI / "pairs.txt"))
    assert (out["n_folds"], out["n_pairs"], out["n_matched"], out["n_mismatched"]) == (2, 24, 12, 12)
    assert out["accuracy_mean"] >= 0.9 and out["images_without_face"] == 0
    res = runner.invoke(app, ["eval", "lfw", "--root", str(tmp_path), "--pairs", str(LFW_MINI / "pairs.txt")])
    assert res.exit_code == 2 and "not under" in res.output


def test_names_that_are_not_utf8_are_refused_clearly(tmp_path):
    """A person name (or person folder name) with bytes that are not UTF-8 cannot be stored: exit 2 naming
    it, never a crash deep in SQLite."""
    import shutil

    name = os.fsdecode(b"bi\xffden")
    out = run(
        tmp_path,
        "enroll",
        "--reason",
        "r",
        "--watchlist",
        "w",
        "--person",
        name,
        str(GALLERY / "biden/biden.jpg"),
        code=2,
    )
    assert "not valid UTF-8" in out["error"] and "bi\ufffdden" in out["error"]
    folder = Path(os.fsdecode(str(tmp_path).encode() + b"/people/bi\xffden"))
    folder.mkdir(parents=True)
    shutil.copy(GALLERY / "biden" / "biden.jpg", folder / "a.jpg")
    out = run(tmp_path / "data", "enroll", "--reason", "r", "--watchlist", "w", str(folder.parent), code=2)
    assert "not valid UTF-8" in out["error"] and "bi\ufffdden" in out["error"]
