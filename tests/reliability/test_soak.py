"""Soak as a test: many daemon processing runs with flat RSS and no descriptor leak.

The CI form does 2,000 runs; the full form (100,000 runs) runs only with
MAILRELEASED_FULL=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .soak import MAX_RSS_DRIFT, SoakReport, run_soak

FULL = os.environ.get("MAILRELEASED_FULL") == "1"


def _check(report: SoakReport) -> None:
    assert set(report.outcomes) == {"released"}, report.render()
    assert report.outcomes["released"] == report.runs * 2, report.render()
    assert report.final_fds <= report.baseline_fds, report.render()
    assert report.max_fds <= report.baseline_fds, report.render()
    assert report.rss_drift < MAX_RSS_DRIFT, report.render()


def test_soak_short_form(tmp_path: Path) -> None:
    """2,000 runs: every signal released, RSS within 5 MiB, fds back to baseline."""
    _check(run_soak(2000, tmp_path, sample_every=100))


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="full soak; set MAILRELEASED_FULL=1")
def test_soak_full_form(tmp_path: Path) -> None:
    """100,000 runs: every signal released, RSS within 5 MiB, fds back to baseline."""
    _check(run_soak(100_000, tmp_path, sample_every=1000))
