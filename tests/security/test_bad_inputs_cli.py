"""The bad-input corpus (tests/badinputs.py) through the CLI: ``sightline search`` on every entry and
``sightline enroll`` of the whole corpus as one batch.

Rule checked: a clear answer, never a crash -- a refused photo exits 2 with an error naming the file and
the reason; a valid-but-awkward photo (CMYK, 16-bit, animated, wrong extension, huge EXIF, trailing
ZIP/HTML) is searched and enrolled like any other; in a batch the bad files are skipped with their code,
the good ones enrolled, and nothing enrolled before is lost.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from tests.badinputs import ACCEPTED, NO_FACE, by_name, full_corpus, printable
from tests.conftest import GALLERY

runner = CliRunner()
ENTRIES = sorted(by_name())


def run(data_dir: Path, command: str, *args: str) -> tuple[int, dict]:
    """``sightline COMMAND ARGS --json`` in-process; enroll and search get the --reason they require."""
    reason = ["--reason", "security-test"] if command in ("enroll", "search") else []
    res = runner.invoke(app, ["--data-dir", str(data_dir), command, *reason, *args, "--json"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, json.loads(res.stdout)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery holding biden (from the original fixture photo) and obama."""
    d = tmp_path_factory.mktemp("cli-gallery")
    for person in ("biden", "obama"):
        code, out = run(d, "enroll", "--watchlist", "w", "--person", person, str(GALLERY / person / f"{person}.jpg"))
        assert code == 0 and out["templates_added"] == 1, out
    return d


@pytest.mark.slow  # one CLI invocation (engine load) per entry: ~35 invocations
@pytest.mark.parametrize("name", ENTRIES, ids=[printable(n) for n in ENTRIES])
def test_search_gives_a_clear_answer_for_every_entry(enrolled: Path, corpus_dir: Path, name: str):
    entry = by_name()[name]
    code, out = run(enrolled, "search", str(corpus_dir / name))
    if entry.refused:
        assert code == 2, out
        err = out["error"]
        assert printable(name) in err and len(err) > len(printable(name)) + 10, err
    elif entry.expect == NO_FACE:
        assert code == 0 and out["faces"] == [], out
    else:
        assert code == 0, out
        assert len(out["faces"]) == 1, out
        best = out["faces"][0]["candidates"][0]
        assert best["name"] == "biden" and best["match"] is True, best


def _person(data_dir: Path, name: str) -> dict:
    code, out = run(data_dir, "person", "show", name)
    assert code == 0, out
    return out


def test_enrolling_the_whole_corpus_skips_the_bad_keeps_the_good_and_loses_nothing(tmp_path: Path, corpus_dir: Path):
    data = tmp_path / "data"
    code, out = run(data, "enroll", "--watchlist", "w", "--person", "biden", str(GALLERY / "biden" / "biden.jpg"))
    assert code == 0 and out["templates_added"] == 1
    before = _person(data, "biden")

    corpus = full_corpus()
    # every file named explicitly (a folder walk keeps only image suffixes; webp-named.txt would be left out)
    files = [str(corpus_dir / e.name) for e in corpus]
    code, out = run(data, "enroll", "--watchlist", "w", "--person", "biden", *files)
    assert code == 0, out
    accepted = [e for e in corpus if e.expect == ACCEPTED]
    assert out["templates_added"] == len(accepted)
    expected_skips = {printable(e.name): e.expect for e in corpus if e.expect != ACCEPTED}
    assert {s["photo"]: s["code"] for s in out["skipped"]} == expected_skips
    assert all(s["reason"] for s in out["skipped"])

    after = _person(data, "biden")
    assert after["id"] == before["id"]
    assert after["template_count"] == before["template_count"] + len(accepted), after
    # searching still works and finds the person
    code, out = run(data, "search", str(GALLERY / "biden" / "biden2.jpg"))
    assert code == 0 and out["faces"][0]["candidates"][0]["name"] == "biden"


def test_a_batch_of_only_bad_files_adds_nothing_and_removes_nothing(tmp_path: Path, corpus_dir: Path):
    data = tmp_path / "data"
    code, out = run(data, "enroll", "--watchlist", "w", "--person", "obama", str(GALLERY / "obama" / "obama.jpg"))
    assert code == 0
    bad = [corpus_dir / e.name for e in full_corpus() if e.refused]
    code, out = run(data, "enroll", "--watchlist", "w", "--person", "obama", *map(str, bad))
    assert code == 0, out
    assert out["templates_added"] == 0 and len(out["skipped"]) == len(bad)
    assert _person(data, "obama")["template_count"] == 1


def test_person_folder_name_that_is_not_utf8_gives_a_clear_answer(tmp_path: Path):
    """Regression: this crashed with UnicodeEncodeError (GalleryStore.find_persons) when first run."""
    folder = Path(os.fsdecode(str(tmp_path).encode() + b"/people/bi\xffden"))
    folder.mkdir(parents=True)
    shutil.copy(GALLERY / "biden" / "biden.jpg", folder / "a.jpg")
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "enroll",
            "--reason",
            "r",
            "--watchlist",
            "w",
            str(folder.parent),
            "--json",
        ],
    )
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 2), res.output
    json.loads(res.stdout)  # a JSON answer (a result or {"error": ...}), not a traceback or a usage error


def test_person_name_that_is_not_utf8_gives_a_clear_answer(tmp_path: Path):
    """Regression: this crashed with UnicodeEncodeError (GalleryStore.find_persons) when first run."""
    name = os.fsdecode(b"bi\xffden")
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path),
            "enroll",
            "--reason",
            "r",
            "--watchlist",
            "w",
            "--person",
            name,
            str(GALLERY / "biden/biden.jpg"),
            "--json",
        ],
    )
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert "name" in json.loads(res.stdout)["error"].lower(), res.output
