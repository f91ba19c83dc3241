"""The real daemon under a fake service manager: READY, STATUS, WATCHDOG, STOPPING, reload, SIGUSR1.

The test binds the datagram socket that systemd would own and runs
``python -m mailreleased run`` with NOTIFY_SOCKET and WATCHDOG_USEC pointing
at it, as a Type=notify unit with WatchdogSec= would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.targets import closed_port
from tests.service.conftest import WAIT, write_config


class ServiceManager:
    """The receiving end of NOTIFY_SOCKET: collects datagrams until a wanted one arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, predicate_text: str, count: int = 1) -> list[str]:
        """Collect datagrams until ``count`` of them contain ``predicate_text``; fail after WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while sum(predicate_text in message for message in self.messages) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{count} x {predicate_text!r} not received; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ServiceManager]:
    receiver = ServiceManager(tmp_path / "notify.sock")
    yield receiver
    receiver.close()


def _start(config: Path, notify: Path, **env: str) -> subprocess.Popen[str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("WATCHDOG_")}
    environment = {**inherited, "NOTIFY_SOCKET": str(notify), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "mailreleased", "run", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _stdout, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
    return process.returncode, stderr


def test_notify_lifecycle(tmp_path: Path, manager: ServiceManager) -> None:
    """READY=1, STATUS= after the run, repeated WATCHDOG=1, then STOPPING=1 and exit 0 on SIGTERM."""
    targets = f"- {{name: closed, method: connect, host: 127.0.0.1, port: {closed_port()}}}\n"
    config = write_config(tmp_path, targets)
    process = _start(config, manager.path, WATCHDOG_USEC="200000")
    try:
        manager.wait_for("READY=1")
        manager.wait_for("STATUS=last outcomes: connect_failed 1")
        manager.wait_for("WATCHDOG=1", count=3)
    finally:
        code, stderr = _stop(process)
    manager.wait_for("STOPPING=1")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    ready_index = next(i for i, message in enumerate(manager.messages) if "READY=1" in message)
    stopping_index = manager.messages.index("STOPPING=1")
    assert ready_index < stopping_index


def test_watchdog_off_for_other_pid(tmp_path: Path, manager: ServiceManager) -> None:
    """WATCHDOG_PID naming another process disables the pings."""
    targets = f"- {{name: closed, method: connect, host: 127.0.0.1, port: {closed_port()}}}\n"
    process = _start(write_config(tmp_path, targets), manager.path, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    try:
        manager.wait_for("STATUS=last outcomes")
    finally:
        code, stderr = _stop(process)
    manager.wait_for("STOPPING=1")
    assert code == 0, stderr
    assert not any("WATCHDOG=1" in message for message in manager.messages)


def test_reload_and_sigusr1(tmp_path: Path, manager: ServiceManager) -> None:
    """SIGHUP with an invalid file keeps running; a valid one applies; SIGUSR1 starts a run."""
    port = closed_port()
    config = write_config(tmp_path, f"- {{name: one, method: connect, host: 127.0.0.1, port: {port}}}\n")
    good_text = config.read_text()
    process = _start(config, manager.path)
    try:
        manager.wait_for("STATUS=last outcomes: connect_failed 1")
        config.write_text(good_text.replace("port: ", "port: -"))
        process.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING=1")
        manager.wait_for("READY=1", count=2)
        assert process.poll() is None
        config.write_text(
            good_text + f"  - {{name: two, method: connect, host: 127.0.0.1, port: {port}}}\n"
        )
        process.send_signal(signal.SIGHUP)
        manager.wait_for("READY=1", count=3)
        manager.wait_for("STATUS=last outcomes: connect_failed 2")
        process.send_signal(signal.SIGUSR1)
        manager.wait_for("STATUS=last outcomes: connect_failed 2", count=2)
    finally:
        code, stderr = _stop(process)
    assert code == 0, stderr
    assert '"event": "config_reload_failed"' in stderr
    assert '"key_path": "targets[0].port"' in stderr
    assert '"event": "config_reloaded"' in stderr
    assert stderr.count('"source": "SIGUSR1"') == 1


@pytest.mark.parametrize(
    ("problem", "expected"),
    [("config", 78), ("state", 73), ("socket-in-use", 75)],
    ids=["bad-config", "state-dir-file", "socket-in-use"],
)
def test_startup_failure_exit_codes(tmp_path: Path, manager: ServiceManager, problem: str, expected: int) -> None:
    """Each start-up failure has its own exit code, and READY=1 is never sent."""
    targets = f"- {{name: closed, method: connect, host: 127.0.0.1, port: {closed_port()}}}\n"
    config = write_config(tmp_path, targets)
    holder = None
    if problem == "config":
        config.write_text(config.read_text().replace("interval: 1h", "interval: soon"))
    elif problem == "state":
        (tmp_path / "state").write_text("a file where the state directory should be")
    else:
        (tmp_path / "run").mkdir()
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(tmp_path / "run" / "control.sock"))
        holder.listen(1)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mailreleased", "run", "-c", str(config)],
            capture_output=True, text=True, timeout=WAIT, env={**os.environ, "NOTIFY_SOCKET": str(manager.path)},
        )
    finally:
        if holder is not None:
            holder.close()
    assert result.returncode == expected, result.stderr
    assert "mailreleased: error:" in result.stderr
    manager.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        manager.sock.recv(4096)
