"""The streams benchmarks run end to end through the CLI (real clip, gallery, RTSP server, workers) and
write the JSON the docs quote; figures are not checked here, only that they are there and consistent."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app


def invoke(*args: str, code: int = 0) -> dict:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_streams_cpu_compares_variants_on_the_same_frames() -> None:
    out = invoke("bench", "streams-cpu", "--variants", "full,roi", "--loops", "1", "--json")
    assert out["benchmark"] == "streams_cpu" and out["reference_variant"] == "full"
    assert out["model"] == "dlib_resnet_v1"
    full, roi = out["rows"]
    assert (full["variant"], roi["variant"]) == ("full", "roi")
    assert full["frames"] == roi["frames"] == 15  # one 3 s pass at 5 fps
    assert full["recall"] == 1.0 and roi["recall"] == 1.0  # ROI finds what full scans find on this clip
    assert full["alerts"] == roi["alerts"] >= 3  # the people on the clip, one alert per track
    assert (full["detections_full"], full["detections_roi"]) == (0, 0)
    assert roi["detections_full"] >= 1 and roi["detections_full"] + roi["detections_roi"] == 15
    for row in (full, roi):
        assert row["cpu_ms_per_frame"] > 0 and row["projected_streams"] > 0
        assert set(row["cpu_ms_per_frame_by_stage"]) == {"detect", "track", "bestshot", "embed", "match"}
    assert set(out["decode"]) == {"threads_1", "threads_2"}
    assert out["gil_probe_full_frame_hog"]["scanner_cpu_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_streams_cpu_measures_the_global_model() -> None:
    """`sightline --model fusion bench ...` benchmarks fusion (it measured dlib before, whatever --model said):
    the gallery is enrolled and the workers embed with the fused model, so the people on the clip still alert."""
    out = invoke("--model", "fusion", "bench", "streams-cpu", "--variants", "roi", "--loops", "1", "--json")
    assert out["model"] == "fusion_dlib_faceres_v1"
    (roi,) = out["rows"]
    assert roi["recall"] == 1.0 and roi["alerts"] >= 3 and roi["embeds"] >= 3
    assert roi["cpu_ms_per_frame_by_stage"]["embed"] > 0


def test_bench_streams_cpu_rejects_an_unknown_variant() -> None:
    out = invoke("bench", "streams-cpu", "--variants", "full,warp9", "--json", code=2)
    assert "warp9" in out["error"] and "roi" in out["error"]


def test_bench_streams_rejects_an_unknown_detect_mode() -> None:
    out = invoke("bench", "streams", "--detect-mode", "magic", "--json", code=2)
    assert "--detect-mode" in out["error"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_streams_one_live_stream_end_to_end() -> None:
    """One RTSP stream from the local server, 2 s measured: the row has every field the docs quote."""
    out = invoke("bench", "streams", "--counts", "1", "--seconds", "2", "--json")
    assert out["benchmark"] == "streams" and out["detect_mode"] == "roi" and out["full_detect_s"] == 2.0
    assert out["model"] == "dlib_resnet_v1"
    (row,) = out["rows"]
    assert row["streams"] == 1 and out["max_streams"] == (1 if row["keeps_up"] else 0)
    for key in ("analysed_fps_per_camera", "dropped_frames", "latency_p50_s", "latency_p95_s", "cpu_cores"):
        assert key in row
    assert row["queued_frames"] > 0 and row["detections_full"] + row["detections_roi"] > 0
    assert set(row["cpu_cores"]) >= {"decode", "detect", "track", "embed", "match", "total"}
