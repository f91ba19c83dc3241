"""Health checks and summaries of the status report, on a driven clock."""

from __future__ import annotations

import datetime

import pytest

from mailreleased.config.model import Schedule
from mailreleased.schedule import schedule_period
from mailreleased.state import TargetState
from mailreleased.status import MISSED_RUN_GRACE, JobView, TargetView, find_problems, format_status, summary_line

START = 1_800_000_000.0


def _target(state: TargetState, alert_after: float | None = 3600.0) -> TargetView:
    return TargetView(name="isp", method="etrn", state=state, next_run=None, alert_after=alert_after, in_flight=False)


def _problems(targets: list[TargetView], jobs: list[JobView], now: float, running: bool = True) -> list[str]:
    return find_problems(targets, jobs, now=now, started_at=START, scheduler_running=running)


def test_fresh_daemon_is_healthy() -> None:
    """A target that never ran is measured from the daemon start."""
    assert _problems([_target(TargetState())], [], now=START + 3599) == []


def test_alert_after_without_success() -> None:
    """No success for longer than alert_after is a problem."""
    problems = _problems([_target(TargetState(last_outcome="tempfail"))], [], now=START + 3601)
    assert len(problems) == 1
    assert "isp has had no success for 3601 s" in problems[0]
    assert "last outcome tempfail" in problems[0]


def test_recent_success_is_healthy() -> None:
    """A success within alert_after keeps the target healthy."""
    state = TargetState(last_success=START + 5000)
    assert _problems([_target(state)], [], now=START + 5000 + 3599) == []


def test_alert_after_off_by_default() -> None:
    """Without alert_after a target is never reported, however long it fails."""
    assert _problems([_target(TargetState(), alert_after=None)], [], now=START + 10**7) == []


@pytest.mark.parametrize(
    ("late", "expected"),
    [(300 + MISSED_RUN_GRACE - 1, 0), (300 + MISSED_RUN_GRACE + 1, 1)],
    ids=["within-grace", "missed"],
)
def test_missed_runs(late: float, expected: int) -> None:
    """A next run time more than one period plus the grace in the past means missed runs."""
    job = JobView("global", ("isp",), next_run=START, period=300.0)
    problems = _problems([], [job], now=START + late)
    assert len(problems) == expected


def test_stopped_scheduler() -> None:
    """A scheduler that is not running is a problem."""
    assert "not running" in _problems([], [], now=START, running=False)[0]


def test_cron_period() -> None:
    """The period of a cron job is the gap to its following fire time."""
    after = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    assert schedule_period(Schedule(cron="*/15 * * * *"), after) == 900.0
    assert schedule_period(Schedule(interval=300, jitter=30), after) == 330.0


def test_summary_line_names_failures() -> None:
    """The STATUS= line counts outcomes and names failing targets."""
    states = {
        "a": TargetState(last_outcome="released"),
        "b": TargetState(last_outcome="tempfail"),
        "c": TargetState(),
    }
    line = summary_line(states, START)
    assert line == (
        "last outcomes: not run yet 1, released 1, tempfail 1 (failing: b); next run 2027-01-15T08:00:00Z"
    )


def test_format_status_lists_problems() -> None:
    """The text report shows each target and each problem."""
    snapshot = {
        "version": "0.1.0", "pid": 7, "started_at": "2027-01-15T08:00:00Z", "scheduler_running": True,
        "targets": [{
            "name": "isp", "method": "etrn", "last_outcome": "released", "last_time": "2027-01-15T08:00:01Z",
            "last_success": "2027-01-15T08:00:01Z", "runs": 3, "next_run": "2027-01-15T08:05:00Z",
            "in_flight": False,
        }],
        "problems": ["target isp has had no success for 4000 s"],
    }
    text = format_status(snapshot)
    assert "isp (etrn)" in text
    assert "runs          3" in text
    assert "  target isp has had no success for 4000 s" in text
