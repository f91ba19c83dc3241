"""SIGHUP reload: an invalid file changes nothing; a valid one reschedules and keeps counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailreleased.config.loader import load_config
from mailreleased.daemon import Daemon
from tests.service.conftest import WAIT, RecordingNotifier, ScriptedSignaler, write_config

TWO_TARGETS = """\
- {name: alpha, method: connect, host: 127.0.0.1, port: 9}
- {name: beta, method: connect, host: 127.0.0.1, port: 9}
"""


@pytest.fixture
async def daemon(tmp_path: Path, signaler: ScriptedSignaler) -> AsyncIterator[Daemon]:
    path = write_config(tmp_path, TWO_TARGETS)
    instance = Daemon(load_config(path), path, notifier=RecordingNotifier())
    instance.start()
    # Let the start-up run finish, so that each test starts from known counters.
    while signaler.count("alpha") == 0 or signaler.count("beta") == 0:
        signaler.started.clear()
        await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    await asyncio.wait_for(asyncio.gather(*instance._in_flight), timeout=WAIT)
    yield instance
    for gate in signaler.gates.values():
        gate.set()
    await instance.stop(grace=WAIT)


async def _runs_of(daemon: Daemon, names: list[str]) -> None:
    await asyncio.wait_for(daemon.run(names), timeout=WAIT)


async def test_invalid_file_keeps_old_config(daemon: Daemon) -> None:
    """A broken file is logged with its key path, and the old targets keep running."""
    assert daemon.config_path is not None
    daemon.config_path.write_text(daemon.config_path.read_text().replace("port: 9}", "port: 0}", 1))
    with capture_logs() as logs:
        assert daemon.reload() is False
    failures = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert failures[0]["key_path"] == "targets[0].port"
    assert failures[0]["message"]
    assert [target.name for target in daemon.config.targets] == ["alpha", "beta"]
    assert isinstance(daemon.notifier, RecordingNotifier)
    assert daemon.notifier.messages[-1].startswith("READY=1")


async def test_valid_file_keeps_counters(tmp_path: Path, daemon: Daemon, signaler: ScriptedSignaler) -> None:
    """Remaining targets keep their counters; removed targets are forgotten; new ones run at once."""
    await _runs_of(daemon, ["alpha"])
    write_config(tmp_path, "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"
                           "- {name: gamma, method: connect, host: 127.0.0.1, port: 9}\n")
    signaler.started.clear()
    assert daemon.reload() is True
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    assert daemon.store.targets["alpha"].runs == 2
    assert "beta" not in daemon.store.targets
    assert [target.name for target in daemon.config.targets] == ["alpha", "gamma"]
    assert signaler.calls[-1].name == "gamma"


async def test_schedule_change_rebuilds_jobs(tmp_path: Path, daemon: Daemon) -> None:
    """A target with its own schedule gets its own job; the global job keeps its next run time."""
    before = daemon.next_runs()["alpha"]
    write_config(tmp_path, "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"
                           "- {name: beta, method: connect, host: 127.0.0.1, port: 9, schedule: {interval: 2h}}\n")
    assert daemon.reload() is True
    jobs = {job.id: tuple(job.args[0]) for job in daemon._scheduler.get_jobs()}
    assert jobs == {"global": ("alpha",), "target:beta": ("beta",)}
    assert daemon.next_runs()["alpha"] == before


async def test_in_flight_run_keeps_old_config(tmp_path: Path, daemon: Daemon, signaler: ScriptedSignaler) -> None:
    """A session running during a reload finishes; the next run uses the new port."""
    signaler.gates["alpha"] = asyncio.Event()
    signaler.started.clear()
    running = asyncio.ensure_future(daemon.run(["alpha"]))
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    write_config(tmp_path, TWO_TARGETS.replace("port: 9}", "port: 10}"))
    assert daemon.reload() is True
    signaler.gates["alpha"].set()
    records = await asyncio.wait_for(running, timeout=WAIT)
    await _runs_of(daemon, ["alpha"])
    alpha_ports = [target.port for target in signaler.calls if target.name == "alpha"]
    assert [record.port for record in records] == [9]
    assert alpha_ports[-2:] == [9, 10]


async def test_restart_only_keys_are_kept(tmp_path: Path, daemon: Daemon) -> None:
    """state_dir and control.socket changes wait for a restart and are logged."""
    old_socket = daemon.config.control.socket
    old_state = daemon.config.state_dir
    path = write_config(tmp_path, TWO_TARGETS)
    path.write_text(path.read_text().replace(f"{tmp_path}/state", f"{tmp_path}/other"))
    with capture_logs() as logs:
        assert daemon.reload() is True
    partial = [entry for entry in logs if entry["event"] == "config_reload_partial"]
    assert partial[0]["keys"] == ["state_dir"]
    assert daemon.config.state_dir == old_state
    assert daemon.config.control.socket == old_socket


async def test_reload_while_stopping_is_skipped(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """A SIGHUP that arrives during the stop changes nothing."""
    path = write_config(tmp_path, TWO_TARGETS)
    daemon = Daemon(load_config(path), path, notifier=RecordingNotifier())
    daemon.store.load()
    await daemon.stop(grace=0)
    write_config(tmp_path, "- {name: gamma, method: connect, host: 127.0.0.1, port: 9}\n")
    assert daemon.reload() is False
    assert [target.name for target in daemon.config.targets] == ["alpha", "beta"]
