"""Retries with backoff, safe TLS fallback, host failover and single flight per target."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest

from mailreleased.config.model import RetryPolicy
from mailreleased.daemon import Daemon
from mailreleased.config.loader import load_config
from mailreleased.outcome import Outcome
from mailreleased.runner import backoff_delay, signal_with_retries
from tests.fakes.smtp import FakeSmtpServer, Script, Step
from tests.fakes.targets import make_target
from tests.service.conftest import WAIT, RecordingNotifier, ScriptedSignaler, write_config

POLICY = RetryPolicy(attempts=5, backoff=10.0, max_backoff=600.0, jitter=False)


class RecordingSleep:
    """An injected sleep that returns at once and records each requested delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_tempfails_then_success(signaler: ScriptedSignaler) -> None:
    """Two tempfails then a release: three attempts, waits of 10 s then 20 s."""
    target = make_target(9)
    signaler.outcomes["fake"] = [Outcome.TEMPFAIL, Outcome.TEMPFAIL, Outcome.RELEASED]
    sleep = RecordingSleep()
    records = await signal_with_retries(target, POLICY, run=1, sleep=sleep)
    assert signaler.count("fake") == 3
    assert sleep.delays == [10.0, 20.0]
    assert [record.outcome for record in records] == [Outcome.RELEASED]


async def test_permanent_failure_no_retry(signaler: ScriptedSignaler) -> None:
    """A refusal is permanent: one attempt and no wait."""
    signaler.outcomes["fake"] = [Outcome.REFUSED]
    sleep = RecordingSleep()
    records = await signal_with_retries(make_target(9), POLICY, run=1, sleep=sleep)
    assert signaler.count("fake") == 1
    assert sleep.delays == []
    assert [record.outcome for record in records] == [Outcome.REFUSED]


async def test_attempts_are_capped(signaler: ScriptedSignaler) -> None:
    """Transient failures stop after policy.attempts, and the last record is returned."""
    signaler.outcomes["fake"] = [Outcome.TIMEOUT] * 10
    sleep = RecordingSleep()
    policy = RetryPolicy(attempts=3, backoff=10.0, max_backoff=15.0, jitter=False)
    records = await signal_with_retries(make_target(9), policy, run=1, sleep=sleep)
    assert signaler.count("fake") == 3
    assert sleep.delays == [10.0, 15.0]
    assert [record.outcome for record in records] == [Outcome.TIMEOUT]


def test_jittered_backoff_grows() -> None:
    """With jitter each wait lies in [d/2, d] of the exponential delay d, so waits never shrink."""
    rng = random.Random(7)
    policy = RetryPolicy(attempts=5, backoff=8.0, max_backoff=600.0, jitter=True)
    for attempt, full in [(1, 8.0), (2, 16.0), (3, 32.0)]:
        delay = backoff_delay(policy, attempt, rng)
        assert full / 2 <= delay <= full


@pytest.mark.parametrize(
    ("auth", "retry_tls"),
    [(False, "off"), (True, "starttls")],
    ids=["no-auth-drops-tls", "auth-keeps-tls"],
)
async def test_tls_failure_retry_mode(
    signaler: ScriptedSignaler, tmp_path: Path, auth: bool, retry_tls: str
) -> None:
    """An opportunistic TLS failure is retried in clear only without AUTH."""
    overrides: dict[str, object] = {"tls": "opportunistic"}
    if auth:
        overrides["auth"] = {"username": "u", "password": "secret-pw"}
    target = make_target(9, **overrides)
    signaler.outcomes["fake"] = [Outcome.TLS_FAILED, Outcome.RELEASED]
    await signal_with_retries(target, POLICY, run=1, sleep=RecordingSleep())
    assert [str(call.tls) for call in signaler.calls] == ["opportunistic", retry_tls]


async def test_required_tls_failure_not_retried(signaler: ScriptedSignaler) -> None:
    """tls: starttls failures are not transient: one attempt."""
    signaler.outcomes["fake"] = [Outcome.TLS_FAILED]
    await signal_with_retries(make_target(9, tls="starttls"), POLICY, run=1, sleep=RecordingSleep())
    assert signaler.count("fake") == 1


def _refused_on_ipv6(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(("::1", port))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


async def test_failover_to_second_host() -> None:
    """hosts: [::1, 127.0.0.1] moves on when ::1 refuses the connection."""
    script = Script(steps=(Step("EHLO", "250 fake.test"), Step("ETRN", "250 queuing started")))
    async with FakeSmtpServer(script) as server:
        if not _refused_on_ipv6(server.port):
            pytest.skip("::1 is unavailable or something listens on the same port there")
        target = make_target(server.port, host=None, hosts=["::1", "127.0.0.1"])
        records = await signal_with_retries(target, RetryPolicy(), run=1, sleep=RecordingSleep())
    assert [record.outcome for record in records] == [Outcome.RELEASED]
    assert records[0].host == "127.0.0.1"
    assert len(server.connections) == 1
    assert server.mismatches == []


async def test_single_flight_per_target(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """A tick, SIGUSR1 and a release of one target never overlap; they run one after another."""
    config = load_config(write_config(tmp_path, "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"))
    daemon = Daemon(config, notifier=RecordingNotifier())
    daemon.store.load()
    gate = asyncio.Event()
    signaler.gates["alpha"] = gate
    first = asyncio.ensure_future(daemon.tick(["alpha"]))
    await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
    daemon.trigger_run("SIGUSR1")
    second = asyncio.ensure_future(daemon.run(["alpha"], force=True))
    for _ in range(5):
        await asyncio.sleep(0)
    assert signaler.count("alpha") == 1
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=WAIT)
    await daemon.stop(grace=WAIT)
    assert signaler.count("alpha") == 3
    assert signaler.max_active["alpha"] == 1


def test_scheduler_job_is_single_instance(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """Scheduler jobs coalesce and allow one instance, so a slow run skips the next tick."""
    from mailreleased.schedule import job_groups

    config = load_config(write_config(
        tmp_path,
        "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"
        "- {name: beta, method: connect, host: 127.0.0.1, port: 9, schedule: {interval: 5m}}\n",
    ))
    assert set(job_groups(config)) == {"global", "target:beta"}

    async def start_and_inspect() -> list[tuple[int, bool]]:
        daemon = Daemon(config, notifier=RecordingNotifier())
        daemon.start()
        settings = [(job.max_instances, job.coalesce) for job in daemon._scheduler.get_jobs()]
        await daemon.stop(grace=0)
        return settings

    assert asyncio.run(start_and_inspect()) == [(1, True), (1, True)]


