"""`sightline eval watchlist` end to end on the committed LFW subset (real photos, real engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.eval.embed import EmbeddedSet
from tests.conftest import LFW_MINI

runner = CliRunner()


def run(tmp: Path, *args: str, code: int = 0) -> dict:
    res = runner.invoke(app, ["--data-dir", str(tmp / "data"), "eval", "watchlist", *args, "--json"])
    assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("evalwl")
    out = run(
        tmp,
        "--root",
        str(LFW_MINI),
        "--cache",
        str(tmp / "mini.npz"),
        "--plot",
        str(tmp / "det.png"),
        "--template",
        "both",
    )
    return tmp, out


def test_protocol_on_the_lfw_subset(first_run):
    tmp, out = first_run
    assert [r["template"] for r in out["results"]] == ["per-photo", "fused"]
    r = out["results"][0]
    sp = r["split"]
    # lfw_mini: 6 identities with 3 photos, 4 with 1 -> 3 listed, 3 x 2 mated, 3 x 3 + 4 non-mated
    assert (sp["identities"], sp["eligible_identities"], sp["enrolled_persons"]) == (10, 6, 3)
    assert (sp["mated_probes"], sp["nonmated_probes"]) == (6, 13)
    assert sp["seed"] == 0 and "seed 0" in sp["rule"]
    assert r["images"] == 22 and r["no_face"] == 0 and r["cache_hit"] is False
    assert set(r["fnir_at_fpir"]) == {"0.01", "0.001"}
    for op in r["fnir_at_fpir"].values():
        assert 0.0 <= op["fnir"] <= 1.0 and op["fpir"] <= 0.01
    # on clean frontal news photos of 3 people the mate is the best candidate every time
    assert r["rank"] == {"rank1": 1.0, "rank5": 1.0}
    assert r["calibration_check"] and all(c["fpir_predicted"] is not None for c in r["calibration_check"])
    assert (tmp / "det.png").read_bytes()[:4] == b"\x89PNG" and out["plot"] == str(tmp / "det.png")
    es = EmbeddedSet.load(tmp / "mini.npz")
    assert len(es.paths) == 22 and not np.isnan(es.embeddings).any()


def test_cache_and_precomputed_embeddings_give_the_same_answer(first_run):
    tmp, out = first_run
    again = run(tmp, "--root", str(LFW_MINI), "--cache", str(tmp / "mini.npz"))
    assert again["results"][0]["cache_hit"] is True
    pre = run(tmp, "--embeddings", str(tmp / "mini.npz"))
    for r in (again["results"][0], pre["results"][0]):
        assert r["fnir_at_fpir"] == out["results"][0]["fnir_at_fpir"]
        assert r["split"] == out["results"][0]["split"]


def test_seed_and_enroll_per_person_are_applied(first_run):
    tmp, _ = first_run
    k2 = run(tmp, "--embeddings", str(tmp / "mini.npz"), "--enroll-per-person", "2", "--seed", "5")
    sp = k2["results"][0]["split"]
    assert sp["enroll_per_person"] == 2 and sp["seed"] == 5
    assert sp["enrolled_photos"] == 2 * sp["enrolled_persons"] and sp["mated_probes"] == sp["enrolled_persons"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "exactly one"),
        (("--root", "ROOT", "--embeddings", "X.npz"), "exactly one"),
        (("--embeddings", "MISSING.npz"), "MISSING.npz"),
        (("--root", "ROOT", "--template", "median"), "--template"),
        (("--root", "ROOT", "--model", "no-such-model"), "no-such-model"),
        (("--embeddings", "CACHE", "--enroll-per-person", "5"), "at least 2 identities"),
    ],
)
def test_bad_usage_gets_a_clear_error(first_run, args, message):
    tmp, _ = first_run
    subst = {"ROOT": str(LFW_MINI), "X.npz": str(tmp / "mini.npz"), "CACHE": str(tmp / "mini.npz")}
    args = tuple(subst.get(a, str(tmp / a) if a.endswith(".npz") else a) for a in args)
    out = run(tmp, *args, code=2)
    assert message in out["error"]
