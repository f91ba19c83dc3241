"""Scheduler jobs from the config: grouping targets, building triggers, measuring periods."""

from __future__ import annotations

import datetime
from typing import Any

from mailreleased.config.model import Config, Schedule

GLOBAL_JOB = "global"


def job_groups(config: Config) -> dict[str, tuple[Schedule, tuple[str, ...]]]:
    """Group targets into scheduler jobs: one for the global schedule, one per own schedule."""
    groups: dict[str, tuple[Schedule, list[str]]] = {}
    for target in config.targets:
        key = GLOBAL_JOB if target.schedule is None else f"target:{target.name}"
        schedule = config.schedule if target.schedule is None else target.schedule
        groups.setdefault(key, (schedule, []))[1].append(target.name)
    return {key: (schedule, tuple(names)) for key, (schedule, names) in groups.items()}


def build_trigger(schedule: Schedule) -> Any:
    """Build the APScheduler trigger for an interval or cron schedule."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = int(schedule.jitter) or None
    if schedule.cron is not None:
        return CronTrigger(**_cron_fields(schedule.cron), timezone="UTC", jitter=jitter)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval, jitter=jitter, timezone="UTC")


def schedule_period(schedule: Schedule, after: datetime.datetime) -> float:
    """Return the seconds between the fire time ``after`` and the next one, plus the jitter."""
    if schedule.interval is not None:
        return schedule.interval + schedule.jitter
    trigger = build_trigger(schedule.model_copy(update={"jitter": 0.0}))
    following = trigger.get_next_fire_time(after, after + datetime.timedelta(seconds=1))
    return float((following - after).total_seconds()) + schedule.jitter


def _cron_fields(expression: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = expression.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": day_of_week}


def utc_now() -> datetime.datetime:
    """Return the current time, timezone-aware in UTC, as APScheduler expects."""
    return datetime.datetime.now(datetime.timezone.utc)
