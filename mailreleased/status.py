"""Status reports of a running daemon: the snapshot, the health check and their text forms.

The daemon builds the snapshot (a JSON-ready dict) and the list of problems;
``mailreleased status`` prints them and ``status --check`` turns problems
into a non-zero exit code.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mailreleased.outcome import SUCCESS_OUTCOMES
from mailreleased.state import TargetState

# How late a job's next run may be, beyond one schedule period, before status
# --check reports missed runs. It covers a busy event loop, not a stuck one.
MISSED_RUN_GRACE = 60.0
# At most this many target names are listed per outcome in the one-line summary.
SUMMARY_NAMES = 3
_SUCCESS_NAMES = frozenset(str(outcome) for outcome in SUCCESS_OUTCOMES)


@dataclass(frozen=True)
class TargetView:
    """The status report's view of one configured target."""

    name: str
    method: str
    state: TargetState
    next_run: float | None
    alert_after: float | None
    in_flight: bool


@dataclass(frozen=True)
class JobView:
    """One scheduler job: the targets it runs, its next run time and its period in seconds."""

    job_id: str
    targets: tuple[str, ...]
    next_run: float | None
    period: float | None


def iso(timestamp: float | None) -> str | None:
    """Format a POSIX timestamp as ISO 8601 UTC with a ``Z``, or return None."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def find_problems(
    targets: Iterable[TargetView],
    jobs: Iterable[JobView],
    *,
    now: float,
    started_at: float,
    scheduler_running: bool,
) -> list[str]:
    """Return why the daemon is unhealthy, one sentence per problem (empty when healthy)."""
    problems = []
    if not scheduler_running:
        problems.append("the scheduler is not running (the daemon is stopping or failed)")
    for job in jobs:
        if job.next_run is None or job.period is None:
            continue
        late = now - job.next_run
        if late > job.period + MISSED_RUN_GRACE:
            problems.append(
                f"the scheduler missed runs of {', '.join(job.targets)}: "
                f"the next run was due at {iso(job.next_run)}, {late:.0f} s ago"
            )
    for target in targets:
        if target.alert_after is None:
            continue
        # A target that never succeeded counts from the daemon start, so a fresh daemon is healthy.
        since = target.state.last_success if target.state.last_success is not None else started_at
        if now - since > target.alert_after:
            problems.append(
                f"target {target.name} has had no success for {now - since:.0f} s "
                f"(alert_after is {target.alert_after:.0f} s; last outcome {target.state.last_outcome})"
            )
    return problems


def target_json(target: TargetView) -> dict[str, Any]:
    """Return one target's entry of the status snapshot."""
    return {
        "name": target.name,
        "method": target.method,
        "last_outcome": target.state.last_outcome,
        "last_time": iso(target.state.last_time),
        "last_success": iso(target.state.last_success),
        "runs": target.state.runs,
        "next_run": iso(target.next_run),
        "alert_after_s": target.alert_after,
        "in_flight": target.in_flight,
    }


def summary_line(states: Mapping[str, TargetState], next_run: float | None) -> str:
    """Return the one-line STATUS= summary: outcome counts, failing targets, next run."""
    counts: Counter[str] = Counter()
    failing: list[str] = []
    for name, state in states.items():
        outcome = state.last_outcome or "not run yet"
        counts[outcome] += 1
        if state.last_outcome is not None and state.last_outcome not in _SUCCESS_NAMES:
            failing.append(name)
    parts = [f"{outcome} {count}" for outcome, count in sorted(counts.items())]
    text = "last outcomes: " + ", ".join(parts)
    if failing:
        shown = ", ".join(failing[:SUMMARY_NAMES]) + (", ..." if len(failing) > SUMMARY_NAMES else "")
        text += f" (failing: {shown})"
    if next_run is not None:
        text += f"; next run {iso(next_run)}"
    return text


def format_status(snapshot: Mapping[str, Any]) -> str:
    """Render a status snapshot for people: a header, one block per target, then problems."""
    lines = [
        f"mailreleased {snapshot.get('version')} pid {snapshot.get('pid')}, "
        f"up since {snapshot.get('started_at')}, scheduler "
        f"{'running' if snapshot.get('scheduler_running') else 'stopped'}"
    ]
    for target in snapshot.get("targets", []):
        flight = " (running now)" if target.get("in_flight") else ""
        lines.append(f"{target['name']} ({target['method']}){flight}")
        lines.append(f"  last outcome  {target['last_outcome'] or '-'} at {target['last_time'] or '-'}")
        lines.append(f"  last success  {target['last_success'] or '-'}")
        lines.append(f"  runs          {target['runs']}")
        lines.append(f"  next run      {target['next_run'] or '-'}")
    problems = snapshot.get("problems", [])
    lines.append("problems: none" if not problems else "problems:")
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)
