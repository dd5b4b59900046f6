"""Under ``CI=true`` a skipped test is a failed test, so CI can never go green by skipping.

A test skips on a workstation that lacks a component (chromium, mosquitto, schemathesis, the shared LFW
data, the optional model): that is a convenience for developers. CI installs everything through
``make test``, so there a skip means a missing install step, and it must fail loudly. This plugin turns
every skip into a failure when ``CI`` is truthy: ``skip``/``skipif`` marks and ``pytest.skip()`` in
setup or in the test (a test report) and module-level ``pytest.importorskip`` (a collection report).
``xfail`` is left alone: it is an expected outcome, not a missing component.

A test that must be allowed to skip even in CI (none today) carries ``@pytest.mark.ci_may_skip(reason)``.
"""

from __future__ import annotations

import os

import pytest

TRUTHY = {"1", "true", "yes", "on"}


def ci_enabled() -> bool:
    """True when the environment variable ``CI`` is one of 1/true/yes/on (any case)."""
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ci_may_skip(reason): this test may skip even when CI=true")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    rep: pytest.TestReport = yield
    if rep.skipped and ci_enabled() and not hasattr(rep, "wasxfail") and item.get_closest_marker("ci_may_skip") is None:
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI=true, which must run every test: {_skip_reason(rep.longrepr)}"
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    rep: pytest.CollectReport = yield
    if rep.skipped and ci_enabled():
        rep.outcome = "failed"
        rep.longrepr = (
            f"{collector.nodeid} skipped under CI=true, which must run every test: {_skip_reason(rep.longrepr)}"
        )
    return rep
