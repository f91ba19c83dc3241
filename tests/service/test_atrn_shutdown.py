"""SIGTERM during an ATRN drain: nothing is lost, and the next MAIL gets 421.

The provider is the built-in loopback one (:mod:`mailreleased.testing`). A
sink that blocks on its first message keeps the drain in flight while the
daemon receives a real SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailreleased.odmr.sinks import DeliveryResult, Envelope, Sink, make_sink
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider
from tests.service.conftest import WAIT, running_daemon, write_config

DOMAIN = "example.test"
USERS = {"user": "password"}
MESSAGES = 5


class SlowSink(Sink):
    """Wraps the configured sink; the first delivery waits until the test opens ``gate``."""

    def __init__(self, inner: Sink, entered: asyncio.Event, gate: asyncio.Event) -> None:
        self.inner = inner
        self.entered = entered
        self.gate = gate
        self.deliveries = 0

    async def open(self) -> None:
        await self.inner.open()

    async def check_sender(self, sender: str, *, smtputf8: bool = False) -> DeliveryResult:
        return await self.inner.check_sender(sender, smtputf8=smtputf8)

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        return await self.inner.check_recipient(recipient)

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        self.deliveries += 1
        if self.deliveries == 1:
            self.entered.set()
            await self.gate.wait()
        return await self.inner.deliver(envelope, body)

    async def reset(self) -> None:
        await self.inner.reset()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _atrn_target(port: int, maildir: Path) -> str:
    return (
        f"- name: odmr\n"
        f"  method: atrn\n"
        f"  host: 127.0.0.1\n"
        f"  port: {port}\n"
        f"  domains: [{DOMAIN}]\n"
        f"  tls: 'off'\n"
        f"  auth: {{username: user, password: password, allow_plaintext: true}}\n"
        f"  delivery: {{type: maildir, path: {maildir}}}\n"
        f"  timeouts: {{connect: 10s, greeting: 10s, reply: 10s}}\n"
    )


def _stored_message_ids(maildir: Path) -> set[str]:
    ids = set()
    for path in (maildir / "new").iterdir():
        for line in path.read_bytes().splitlines():
            if line.lower().startswith(b"message-id:"):
                ids.add(line.split(b"<", 1)[1].split(b"@", 1)[0].decode())
    return ids


async def _drain_with_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Provider, Path]:
    """Start a drain, send SIGTERM while the first message is in the sink, then let it finish."""
    entered = asyncio.Event()
    gate = asyncio.Event()
    monkeypatch.setattr(
        "mailreleased.odmr.atrn.make_sink", lambda delivery: SlowSink(make_sink(delivery), entered, gate)
    )
    maildir = tmp_path / "Maildir"
    queue = make_messages(DOMAIN, MESSAGES, 2000)
    async with Provider(users=USERS, domains=[DOMAIN], queue=queue) as provider:
        config = write_config(tmp_path, _atrn_target(provider.port, maildir))
        async with running_daemon(config) as daemon:
            await asyncio.wait_for(entered.wait(), timeout=WAIT)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(daemon.notifier.wait_for("STOPPING=1"), timeout=WAIT)
            gate.set()
            assert daemon.task is not None
            assert await asyncio.wait_for(daemon.task, timeout=WAIT) == 0
        await provider.wait_idle(WAIT)
    return provider, maildir


async def test_sigterm_drain_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message is either stored in the Maildir and acknowledged, or still queued at the provider."""
    provider, maildir = await _drain_with_sigterm(tmp_path, monkeypatch)
    delivered = {message.id for message in provider.delivered}
    queued = {message.id for message in provider.queue}
    all_ids = {f"msg-{index:06d}" for index in range(MESSAGES)}
    assert delivered | queued == all_ids
    assert delivered & queued == set()
    assert "msg-000000" in delivered
    assert delivered <= _stored_message_ids(maildir)


async def test_sigterm_drain_stops_at_next_mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message in the sink completes; the next MAIL gets 421, so the provider keeps the rest."""
    provider, _maildir = await _drain_with_sigterm(tmp_path, monkeypatch)
    assert [message.id for message in provider.delivered] == ["msg-000000"]
    assert len(provider.queue) == MESSAGES - 1
    assert any(line.startswith("421") for line in provider.received_lines())
