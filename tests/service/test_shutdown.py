"""The ordered stop: in-flight runs finish within shutdown_grace, retries end, state is saved."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from structlog.testing import capture_logs

from mailreleased import shutdown
from mailreleased.config.loader import load_config
from mailreleased.daemon import Daemon
from mailreleased.outcome import Outcome
from tests.service.conftest import WAIT, RecordingNotifier, ScriptedSignaler, running_daemon, write_config

ONE_TARGET = "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"


def _daemon(tmp_path: Path, targets: str = ONE_TARGET, extra: str = "") -> Daemon:
    daemon = Daemon(load_config(write_config(tmp_path, targets, extra)), notifier=RecordingNotifier())
    daemon.store.load()
    return daemon


async def test_stop_waits_for_in_flight_run(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """stop() returns only after the running session ends, and its outcome is saved."""
    daemon = _daemon(tmp_path)
    signaler.gates["alpha"] = asyncio.Event()
    running = asyncio.ensure_future(daemon.run(["alpha"]))
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    stopping = asyncio.ensure_future(daemon.stop(grace=WAIT))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stopping.done()
    assert shutdown.shutdown_requested()
    signaler.gates["alpha"].set()
    await asyncio.wait_for(stopping, timeout=WAIT)
    records = await running
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert [record.outcome for record in records] == [Outcome.RELEASED]
    assert saved["targets"]["alpha"]["last_outcome"] == "released"


async def test_grace_expiry_cancels_run(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """A session still running when the grace period ends is cancelled and logged; the counter is saved."""
    daemon = _daemon(tmp_path)
    signaler.gates["alpha"] = asyncio.Event()
    running = asyncio.ensure_future(daemon.run(["alpha"]))
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    with capture_logs() as logs:
        await asyncio.wait_for(daemon.stop(grace=0), timeout=WAIT)
    await asyncio.wait([running], timeout=WAIT)
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert running.cancelled()
    assert [entry["event"] for entry in logs if entry["event"] == "runs_cancelled"] == ["runs_cancelled"]
    assert saved["targets"]["alpha"]["runs"] == 1


async def test_stop_ends_retry_wait(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """A run waiting an hour to retry ends at once on stop, without another attempt."""
    daemon = _daemon(tmp_path, extra="retry: {attempts: 3, backoff: 1h, jitter: false}\n")
    signaler.outcomes["alpha"] = [Outcome.TEMPFAIL, Outcome.RELEASED]
    running = asyncio.ensure_future(daemon.run(["alpha"]))
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.wait_for(daemon.stop(grace=WAIT), timeout=WAIT)
    records = await running
    assert signaler.count("alpha") == 1
    assert [record.outcome for record in records] == [Outcome.TEMPFAIL]


async def test_release_rejected_while_stopping(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """Once stopping, the control socket rejects new runs but still returns the status."""
    daemon = _daemon(tmp_path)
    await daemon.stop(grace=0)
    release = await daemon.handle_request({"command": "release"})
    status = await daemon.handle_request({"command": "status"})
    assert release["ok"] is False
    assert "stopping" in release["error"]
    assert status["scheduler_running"] is False
    assert status["problems"][0].startswith("the scheduler is not running")


async def test_serve_exits_zero_after_run(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """serve() sends STOPPING=1 and returns 0 when its trigger is set during a run."""
    signaler.gates["alpha"] = asyncio.Event()
    async with running_daemon(write_config(tmp_path, ONE_TARGET)) as daemon:
        await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
        daemon.stop.set()
        await asyncio.wait_for(daemon.notifier.wait_for("STOPPING=1"), timeout=WAIT)
        assert daemon.task is not None
        assert not daemon.task.done()
        signaler.gates["alpha"].set()
    assert signaler.count("alpha") == 1
