"""Helpers for service tests: a recording notifier, a scripted signaler and a daemon in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailreleased import shutdown
from mailreleased.config.loader import load_config
from mailreleased.config.model import Target
from mailreleased.daemon import serve
from mailreleased.notify import Notifier
from mailreleased.outcome import Outcome, SignalRecord

# Upper bound for any wait on an event in these tests; reaching it means a failure.
WAIT = 30.0


class RecordingNotifier(Notifier):
    """A notifier that records every datagram instead of sending it."""

    def __init__(self) -> None:
        super().__init__({})
        self.messages: list[str] = []
        self.ready_event = asyncio.Event()
        self._received = asyncio.Event()

    def send(self, *lines: str) -> None:
        self.messages.append("\n".join(lines))
        self._received.set()
        if "READY=1" in lines:
            self.ready_event.set()

    async def wait_for(self, line: str) -> None:
        """Return once a datagram contained ``line``; callers bound the wait."""
        while not any(line in message.split("\n") for message in self.messages):
            self._received.clear()
            await self._received.wait()


class ScriptedSignaler:
    """Stands in for ``mailreleased.signal.signal_target``: outcomes by target, in call order.

    ``gate``, when set for a target, makes its calls wait until the test sets
    the event; ``started`` is set whenever a call begins.
    """

    def __init__(self) -> None:
        self.outcomes: dict[str, list[Outcome]] = defaultdict(list)
        self.calls: list[Target] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.started = asyncio.Event()
        self.active: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)

    async def __call__(self, target: Target, *, run: int | None = None) -> list[SignalRecord]:
        self.calls.append(target)
        self.active[target.name] += 1
        self.max_active[target.name] = max(self.max_active[target.name], self.active[target.name])
        self.started.set()
        try:
            gate = self.gates.get(target.name)
            if gate is not None:
                await gate.wait()
            queue = self.outcomes[target.name]
            outcome = queue.pop(0) if queue else Outcome.RELEASED
        finally:
            self.active[target.name] -= 1
        return [
            SignalRecord(
                target=target.name, method=str(target.method), host=target.effective_hosts[0],
                port=target.effective_port, domain=None, outcome=outcome, duration_ms=12, run=run,
            )
        ]

    def count(self, name: str) -> int:
        """Return how many times target ``name`` was signalled."""
        return sum(1 for target in self.calls if target.name == name)


@pytest.fixture(autouse=True)
def clean_shutdown_flag() -> Iterator[None]:
    shutdown.reset()
    yield
    shutdown.reset()


@pytest.fixture
def signaler(monkeypatch: pytest.MonkeyPatch) -> ScriptedSignaler:
    fake = ScriptedSignaler()
    monkeypatch.setattr("mailreleased.signal.signal_target", fake)
    return fake


def write_config(directory: Path, targets: str, extra: str = "", name: str = "mailreleased.yaml") -> Path:
    """Write a config with a state dir and control socket in ``directory``; return its path."""
    path = directory / name
    path.write_text(
        f"schedule: {{interval: 1h}}\n"
        f"state_dir: {directory}/state\n"
        f"control: {{socket: {directory}/run/control.sock}}\n"
        f"shutdown_grace: 10s\n"
        f"{textwrap.dedent(extra)}"
        f"targets:\n{textwrap.indent(textwrap.dedent(targets), '  ')}"
    )
    return path


POKE_TARGETS = """\
- {name: alpha, method: connect, host: 127.0.0.1, port: 9}
- {name: beta, method: connect, host: 127.0.0.1, port: 9, every: 3}
"""


class RunningDaemon:
    """A daemon served in the test's event loop, stopped through its shutdown trigger."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.notifier = RecordingNotifier()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    @property
    def socket(self) -> Path:
        return self.config.control.socket

    async def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one control request from a worker thread, as the CLI would."""
        from mailreleased.control import request

        return await asyncio.to_thread(request, self.socket, payload, timeout=WAIT)


@contextlib.asynccontextmanager
async def running_daemon(config_path: Path) -> AsyncIterator[RunningDaemon]:
    """Serve the config until the block ends; fail if the daemon does not become ready."""
    daemon = RunningDaemon(config_path)
    daemon.task = asyncio.ensure_future(
        serve(daemon.config, config_path, daemon.stop, notifier=daemon.notifier)
    )
    ready = asyncio.ensure_future(daemon.notifier.ready_event.wait())
    await asyncio.wait([ready, daemon.task], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        if daemon.task.done():
            daemon.task.result()
        raise AssertionError("the daemon did not send READY=1")
    try:
        yield daemon
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(daemon.task, timeout=WAIT) == 0
