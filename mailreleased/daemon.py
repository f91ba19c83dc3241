"""The long-running daemon: scheduled processing runs, live control, reload and ordered stop.

Signal handlers only set events or start tasks; :func:`serve` owns the
start-up order (control socket, state, metrics, scheduler, READY=1) and the
bounded stop (STOPPING=1, no new runs, in-flight sessions finish within
``shutdown_grace``, then the state is saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from mailreleased import __version__, shutdown
from mailreleased.config.model import Config, Schedule, Target
from mailreleased.control import ControlServer
from mailreleased.errors import ConfigError, MailreleasedError
from mailreleased.metrics import Metrics
from mailreleased.notify import Notifier
from mailreleased.outcome import SignalRecord
from mailreleased.runner import run_once
from mailreleased.schedule import GLOBAL_JOB, build_trigger, job_groups, schedule_period, utc_now
from mailreleased.state import StateStore
from mailreleased.status import JobView, TargetView, find_problems, iso, summary_line, target_json

log = structlog.get_logger("mailreleased.daemon")

# Settings that a reload cannot change in a running daemon; they apply after a restart.
RESTART_ONLY = ("state_dir", "control", "metrics")
# Seconds that cancelled runs get to unwind after the grace period ended.
CANCEL_WAIT = 5.0

ConfigLoader = Callable[[], Config]


class Daemon:
    """Scheduler, state and in-flight runs of one daemon process."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        loader: ConfigLoader | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.store = StateStore(config.state_dir)
        self.notifier = notifier if notifier is not None else Notifier()
        # Built here, before any I/O, so a missing prometheus-client is a config error.
        self.metrics = Metrics(config.metrics) if config.metrics is not None else None
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        self.runs_started = 0
        self._loader = loader if loader is not None else self._load_from_path
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._running_targets: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._schedules: dict[str, Schedule] = {}
        self._scheduler: Any = None

    def _load_from_path(self) -> Config:
        from mailreleased.config.loader import load_config

        if self.config_path is None:
            raise ConfigError("no config file to reload; start the daemon with -c FILE")
        return load_config(self.config_path)

    def start(self) -> None:
        """Load the state, start the metrics endpoint and the scheduler; the first runs start at once."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.store.load()
        if self.metrics is not None:
            self.metrics.load_state(self.store.targets)
            self.metrics.start()
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._reschedule(first=True)
        self._scheduler.start()
        log.info("daemon_started", targets=len(self.config.targets), jobs=len(self._scheduler.get_jobs()))

    def _reschedule(self, *, first: bool = False) -> None:
        """Make the scheduler's jobs match the config.

        A job whose schedule is unchanged keeps its next run time. A job with a
        changed schedule runs next when its new trigger fires. A new job runs
        at once, as all jobs do at start-up.
        """
        wanted = job_groups(self.config)
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
                self._schedules.pop(job.id, None)
        for job_id, (schedule, names) in wanted.items():
            existing = None if first else self._scheduler.get_job(job_id)
            if existing is None:
                self._scheduler.add_job(
                    self.tick, trigger=build_trigger(schedule), args=[list(names)], id=job_id,
                    max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=utc_now(),
                )
            else:
                existing.modify(args=[list(names)])
                if self._schedules.get(job_id) != schedule:
                    existing.reschedule(trigger=build_trigger(schedule))
            self._schedules[job_id] = schedule

    async def tick(self, names: list[str]) -> None:
        """Do one scheduled processing run for ``names``, unless the daemon is stopping."""
        if self.stopping.is_set():
            return
        try:
            await self.run(names)
        except MailreleasedError as exc:
            log.error("run_failed", targets=names, error=str(exc))
        except asyncio.CancelledError:
            # The scheduler cancels its running jobs at shutdown. The run itself is shielded
            # and stop() waits for it, so end the job quietly instead of logging a traceback.
            if not self.stopping.is_set():
                raise

    async def run(self, names: Sequence[str] | None = None, *, force: bool = False) -> list[SignalRecord]:
        """Do one processing run as a tracked task; each target runs under its own lock.

        The lock keeps one target's runs (with their retries) from overlapping,
        whether they come from the scheduler, SIGUSR1 or the control socket.
        """
        task = asyncio.ensure_future(self._run_targets(names, force=force))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        # Shielded, so that cancelling a scheduler job does not cut a session short.
        records = await asyncio.shield(task)
        self.notifier.status(self.summary())
        return records

    async def _run_targets(self, names: Sequence[str] | None, *, force: bool) -> list[SignalRecord]:
        config = self.config
        selected = [target.name for target in config.targets if names is None or target.name in names]
        self.runs_started += 1
        batches = await asyncio.gather(*(self._run_target(config, name, force=force) for name in selected))
        return [record for batch in batches for record in batch]

    async def _run_target(self, config: Config, name: str, *, force: bool) -> list[SignalRecord]:
        async with self._locks.setdefault(name, asyncio.Lock()):
            if self.stopping.is_set():
                return []
            self._running_targets.add(name)
            try:
                return await run_once(
                    config, targets=[name], force=force, store=self.store, sleep=self._retry_sleep,
                    on_records=self._observe,
                )
            finally:
                self._running_targets.discard(name)

    async def _retry_sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds before a retry, or less if the daemon begins to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait_for_shutdown(), timeout=delay)

    def _observe(self, target: Target, records: list[SignalRecord]) -> None:
        if self.metrics is not None:
            self.metrics.observe(records, self.store.targets.get(target.name))

    def trigger_run(self, source: str, names: list[str] | None = None) -> None:
        """Start a processing run of ``names`` (default: all targets) now; the every-N rule applies."""
        if self.stopping.is_set():
            return
        log.info("release_requested", source=source, targets=names, force=False)
        task = asyncio.ensure_future(self.tick(names or [target.name for target in self.config.targets]))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def reload(self) -> bool:
        """Load the config file again and apply it; keep the old config if the new one is invalid.

        In-flight runs finish with the config they started with, and new runs
        use the new one. Counters of targets that remain are kept, and targets
        new to the file run at once, as every target does at start-up.
        """
        if self.stopping.is_set():
            log.warning("config_reload_skipped", config=str(self.config_path), reason="the daemon is stopping")
            return False
        self.notifier.reloading()
        log.info("config_reload_started", config=str(self.config_path))
        try:
            new = self._loader()
        except ConfigError as exc:
            log.error(
                "config_reload_failed", config=exc.source, line=exc.line, key_path=exc.key_path, message=exc.message
            )
            self.notifier.ready(self.summary())
            return False
        known = {target.name for target in self.config.targets}
        self._apply(new)
        self.notifier.ready(self.summary())
        added = [target.name for target in self.config.targets if target.name not in known]
        log.info("config_reloaded", targets=len(self.config.targets), jobs=len(self._schedules), added=added)
        if added:
            self.trigger_run("reload", added)
        return True

    def _apply(self, new: Config) -> None:
        old = self.config
        kept = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
        if new.log.format != old.log.format:
            kept.append("log.format")
        if kept:
            log.warning("config_reload_partial", keys=kept, message="these settings change only after a restart")
        update: dict[str, Any] = {key: getattr(old, key) for key in RESTART_ONLY}
        update["log"] = new.log.model_copy(update={"format": old.log.format})
        self.config = new.model_copy(update=update)
        logging.getLogger().setLevel(new.log.level.upper())
        self.store.retain({target.name for target in self.config.targets})
        self._reschedule()

    def next_runs(self) -> dict[str, float | None]:
        """Return each target's next scheduled run as a POSIX time (None when not scheduled)."""
        result: dict[str, float | None] = {}
        for job in self._jobs():
            for name in job.targets:
                result[name] = job.next_run
        return result

    def _jobs(self) -> list[JobView]:
        if self._scheduler is None:
            return []
        views = []
        for job in self._scheduler.get_jobs():
            next_time = job.next_run_time
            schedule = self._schedules.get(job.id)
            period = None if schedule is None or next_time is None else schedule_period(schedule, next_time)
            views.append(JobView(job.id, tuple(job.args[0]), next_time.timestamp() if next_time else None, period))
        return views

    def summary(self) -> str:
        """Return the one-line STATUS= summary of the configured targets' last outcomes."""
        states = {target.name: self.store.get(target.name) for target in self.config.targets}
        upcoming = [value for value in self.next_runs().values() if value is not None]
        return summary_line(states, min(upcoming) if upcoming else None)

    def status_snapshot(self) -> dict[str, Any]:
        """Return the status report: per-target state and next run, and the problems found."""
        next_runs = self.next_runs()
        views = [
            TargetView(
                name=target.name, method=str(target.method), state=self.store.get(target.name),
                next_run=next_runs.get(target.name), alert_after=target.alert_after,
                in_flight=target.name in self._running_targets,
            )
            for target in self.config.targets
        ]
        running = self._scheduler is not None and self._scheduler.running and not self.stopping.is_set()
        problems = find_problems(
            views, self._jobs(), now=time.time(), started_at=self.started_at, scheduler_running=running
        )
        return {
            "ok": True, "version": __version__, "pid": os.getpid(), "config": str(self.config_path),
            "started_at": iso(self.started_at), "scheduler_running": running, "runs": self.runs_started,
            "targets": [target_json(view) for view in views], "problems": problems,
        }

    async def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Handle one control socket request: status, release or ping."""
        command = request["command"]
        if command == "status":
            return self.status_snapshot()
        if command == "ping":
            return {"ok": True, "pid": os.getpid()}
        if command == "release":
            return await self._release(request)
        return {"ok": False, "error": f"unknown command {command!r}; use status, release or ping"}

    async def _release(self, request: dict[str, Any]) -> dict[str, Any]:
        names = request.get("targets") or None
        force = request.get("force") is True
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            return {"ok": False, "error": '"targets" must be a list of target names'}
        if self.stopping.is_set():
            return {"ok": False, "error": "the daemon is stopping; no new runs start"}
        configured = [target.name for target in self.config.targets]
        unknown = [name for name in names or [] if name not in configured]
        if unknown:
            return {
                "ok": False, "unknown_target": unknown[0],
                "error": f"unknown target {unknown[0]!r}; configured targets: {', '.join(configured)}",
            }
        log.info("release_requested", source="control", targets=names, force=force)
        try:
            records = await self.run(names, force=force)
        except MailreleasedError as exc:
            log.error("run_failed", targets=names, error=str(exc))
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "records": [record.as_json() for record in records]}

    async def stop(self, grace: float | None = None) -> None:
        """Stop scheduling, let in-flight runs finish within the grace period, save the state."""
        self.stopping.set()
        shutdown.request_shutdown()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        grace = self.config.shutdown_grace if grace is None else grace
        pending = list(self._in_flight)
        if pending:
            log.info("waiting_for_runs", runs=len(pending), targets=sorted(self._running_targets), grace_s=grace)
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=CANCEL_WAIT)
                log.warning("runs_cancelled", runs=len(still), grace_s=grace)
        try:
            self.store.save()
        except MailreleasedError as exc:
            log.error("state_save_failed", error=str(exc))
        if self.metrics is not None:
            self.metrics.stop()
        log.info("daemon_stopped")


async def serve(
    config: Config,
    config_path: Path | None = None,
    shutdown_trigger: asyncio.Event | None = None,
    *,
    loader: ConfigLoader | None = None,
    notifier: Notifier | None = None,
) -> int:
    """Run the daemon until SIGTERM or SIGINT (or ``shutdown_trigger``); return the exit code.

    Start-up fails with ControlSocketInUse, ControlSocketUnavailable, StateError,
    MetricsUnavailable or ConfigError, before READY=1 is sent.
    """
    stop = shutdown_trigger or asyncio.Event()
    loop = asyncio.get_running_loop()
    shutdown.reset()
    daemon = Daemon(config, config_path, loader=loader, notifier=notifier)
    control = ControlServer(config.control.socket, daemon.handle_request)
    await control.start()
    installed: list[signal.Signals] = []
    watchdog: asyncio.Task[None] | None = None
    try:
        daemon.start()
        installed = _install_signal_handlers(loop, {
            signal.SIGTERM: stop.set,
            signal.SIGINT: stop.set,
            signal.SIGHUP: daemon.reload,
            signal.SIGUSR1: lambda: daemon.trigger_run("SIGUSR1"),
        })
        watchdog = asyncio.ensure_future(daemon.notifier.run_watchdog())
        daemon.notifier.ready(daemon.summary())
        await stop.wait()
        log.info("daemon_stopping", grace_s=config.shutdown_grace)
        daemon.notifier.stopping()
        await daemon.stop()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        if watchdog is not None:
            watchdog.cancel()
        await control.close()
        if daemon.metrics is not None:
            daemon.metrics.stop()
    return 0


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, handlers: dict[signal.Signals, Callable[[], Any]]
) -> list[signal.Signals]:
    installed = []
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
        installed.append(signum)
    return installed
