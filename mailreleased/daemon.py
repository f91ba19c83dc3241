"""The long-running daemon: APScheduler ticks become processing runs until shutdown.

Signal handlers only set events; :func:`serve` owns the ordered, bounded stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from mailreleased.config.model import Config, Schedule, Target
from mailreleased.runner import run_once
from mailreleased.state import StateStore

log = structlog.get_logger("mailreleased.daemon")

GLOBAL_JOB = "global"


class Daemon:
    """Scheduler, state and in-flight runs of one daemon process."""

    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.store = StateStore(config.state_dir)
        self.stopping = asyncio.Event()
        self.runs_started = 0
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._scheduler: Any = None

    def start(self) -> None:
        """Load the state and start the scheduler; the first run starts at once."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.store.load()
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._add_jobs()
        self._scheduler.start()
        log.info("daemon_started", targets=len(self.config.targets), jobs=len(self._scheduler.get_jobs()))

    def _add_jobs(self) -> None:
        groups: dict[str, tuple[Schedule, list[str]]] = {}
        for target in self.config.targets:
            key = GLOBAL_JOB if target.schedule is None else f"target:{target.name}"
            schedule = self.config.schedule if target.schedule is None else target.schedule
            groups.setdefault(key, (schedule, []))[1].append(target.name)
        for job_id, (schedule, names) in groups.items():
            self._scheduler.add_job(
                self.tick,
                trigger=build_trigger(schedule),
                args=[names],
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=_now(),
            )

    async def tick(self, names: list[str]) -> None:
        """Run one processing run for ``names``, unless the daemon is stopping."""
        if self.stopping.is_set():
            return
        await self.run(names)

    async def run(self, names: list[str] | None = None, *, force: bool = False) -> list[Any]:
        """Run one processing run as a tracked task, one at a time per target."""
        task = asyncio.ensure_future(self._locked_run(names, force=force))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def _locked_run(self, names: list[str] | None, *, force: bool) -> list[Any]:
        targets = [t.name for t in self.config.targets if names is None or t.name in names]
        locks = [self._locks.setdefault(name, asyncio.Lock()) for name in sorted(targets)]
        for lock in locks:
            await lock.acquire()
        try:
            self.runs_started += 1
            return await run_once(self.config, targets=targets, force=force, store=self.store)
        finally:
            for lock in locks:
                lock.release()

    async def stop(self, grace: float | None = None) -> None:
        """Stop scheduling, then let in-flight runs finish within the grace period."""
        self.stopping.set()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        grace = self.config.shutdown_grace if grace is None else grace
        pending = list(self._in_flight)
        if pending:
            log.info("waiting_for_runs", runs=len(pending), grace_s=grace)
            done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)
                log.warning("runs_cancelled", runs=len(still))
        log.info("daemon_stopped")


def build_trigger(schedule: Schedule) -> Any:
    """Build the APScheduler trigger for an interval or cron schedule."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = int(schedule.jitter) or None
    if schedule.cron is not None:
        return CronTrigger(**_cron_fields(schedule.cron), timezone="UTC", jitter=jitter)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval, jitter=jitter, timezone="UTC")


def _cron_fields(expression: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = expression.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": day_of_week}


def _now() -> Any:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc)


async def serve(config: Config, config_path: Path | None = None, shutdown_trigger: asyncio.Event | None = None) -> int:
    """Run the daemon until SIGTERM or SIGINT (or ``shutdown_trigger``); return the exit code."""
    stop = shutdown_trigger or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = _install_signal_handlers(loop, {signal.SIGTERM: stop.set, signal.SIGINT: stop.set})
    daemon = Daemon(config, config_path)
    try:
        daemon.start()
        await stop.wait()
        log.info("daemon_stopping")
        await daemon.stop()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return 0


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, handlers: dict[signal.Signals, Callable[[], None]]
) -> list[signal.Signals]:
    installed = []
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
        installed.append(signum)
    return installed
