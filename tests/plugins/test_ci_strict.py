"""The CI rule itself: under CI=true a skip fails the run; on a workstation it stays a skip."""

from __future__ import annotations

import pytest

SKIPPING = """
import pytest

@pytest.mark.skipif(True, reason="needs chromium")
def test_marked(): pass

def test_called(): pytest.skip("mosquitto is not installed")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure(): assert False

@pytest.mark.ci_may_skip("platform-specific")
def test_allowed(): pytest.skip("not on this platform")
"""

MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_module_sightline")

def test_never(): pass
"""


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ("true", {"failed": 1, "errors": 1, "skipped": 1, "xfailed": 1}),
        ("1", {"failed": 1, "errors": 1, "skipped": 1, "xfailed": 1}),
        ("", {"skipped": 3, "xfailed": 1}),
        ("false", {"skipped": 3, "xfailed": 1}),
    ],
)
def test_skips_fail_only_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci, expected) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest("-p", "tests.plugins.ci_strict", "-p", "no:cacheprovider")
    result.assert_outcomes(**expected)
    if expected.get("failed"):  # the skipif mark fails in setup (an error), pytest.skip() in the call
        result.stdout.fnmatch_lines(["*skipped under CI=true*needs chromium*"])


def test_a_module_level_importorskip_fails_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "tests.plugins.ci_strict", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true*no_such_module_sightline*"])
    monkeypatch.setenv("CI", "")
    pytester.runpytest("-p", "tests.plugins.ci_strict", "-p", "no:cacheprovider").assert_outcomes(skipped=1)
