"""Interop test setup: the peer fixtures, and no silent skips in CI.

The peers are started by the package tests/peers, which is imported as
``peers`` from the tests directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from peers.fixtures import (  # noqa: E402
    exim496_etrn,
    finger_server,
    odmr_provider,
    postfix_backup_mx,
    postfix_factory,
    receiver_factory,
    work_dir,
)

__all__ = [
    "exim496_etrn",
    "finger_server",
    "odmr_provider",
    "postfix_backup_mx",
    "postfix_factory",
    "receiver_factory",
    "work_dir",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report a skipped interop test as failed when CI=true.

    CI installs every peer with .ci/install-peers, so a skip there means a
    broken install, not a missing optional tool. Expected failures (xfail)
    are left alone.
    """
    report = yield
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return report
    if item.get_closest_marker("interop") is None:
        return report
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"interop test skipped in CI (CI=true), which counts as a failure: {reason}"
    return report
