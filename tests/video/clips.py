"""Test clips: re-exports :mod:`sightline.eval.clips` (where the helpers live, so other test packages
and the benchmarks share them)."""

from __future__ import annotations

from sightline.eval.clips import (
    GREY,
    Clip,
    Segment,
    ffmpeg_exe,
    make_face_clip,
    make_grid_clip,
    make_test_pattern_clip,
)

__all__ = ["GREY", "Clip", "Segment", "ffmpeg_exe", "make_face_clip", "make_grid_clip", "make_test_pattern_clip"]
