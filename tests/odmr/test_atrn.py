"""End-to-end ATRN runs against the built-in loopback provider."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from mailreleased.config.model import Target
from mailreleased.odmr import atrn_command, run_atrn
from mailreleased.outcome import Outcome
from mailreleased.testing.faults import Faults
from mailreleased.testing.fixtures import make_loopback_certificate, trustme_available
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

DOMAIN = "example.test"
USERS = {"user": "password"}
TEST_TIMEOUT = 60.0


def target_for(port: int, maildir: Path, **overrides: Any) -> Target:
    settings: dict[str, Any] = {
        "name": "provider",
        "method": "atrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": [DOMAIN],
        "tls": "off",
        "helo_name": "customer.test",
        "auth": {"username": "user", "password": "password", "mechanisms": ["CRAM-MD5"]},
        "delivery": {"type": "maildir", "path": str(maildir)},
    }
    settings.update(overrides)
    return Target.model_validate(settings)


def delivered(maildir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((maildir / "new").iterdir())] if (maildir / "new").exists() else []


async def run(target: Target, **kwargs: Any) -> Any:
    async with asyncio.timeout(TEST_TIMEOUT):
        [record] = await run_atrn(target, **kwargs)
    return record


def test_atrn_command_line() -> None:
    """Domains are joined by commas without spaces; none gives a bare ATRN."""
    assert atrn_command(("a.test", "b.test")) == "ATRN a.test,b.test"
    assert atrn_command(()) == "ATRN"


async def test_receives_whole_queue(tmp_path: Path) -> None:
    """One ATRN brings every queued message into the Maildir and empties the queue."""
    messages = make_messages(DOMAIN, 5, 2000)
    async with Provider(users=USERS, queue=messages) as provider:
        record = await run(target_for(provider.port, tmp_path))
        assert provider.queue == []
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 5
    assert record.bytes == sum(m.size for m in messages)
    assert record.code == 250
    files = delivered(tmp_path)
    assert len(files) == 5
    for queued in messages:
        expected = queued.data.replace(b"\r\n", b"\n")
        assert sum(f.endswith(expected) for f in files) == 1, queued.id
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_drains_across_sessions(tmp_path: Path) -> None:
    """A provider that sends two messages per session gets ATRN again until it replies 453."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 5), max_messages_per_session=2) as provider:
        record = await run(target_for(provider.port, tmp_path))
        requests = len(provider.atrn_requests)
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 5
    assert requests == 4
    assert record.code == 250


async def test_stops_at_max_sessions(tmp_path: Path) -> None:
    """Draining stops at max_sessions and the detail reports that more mail may be waiting."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 5), max_messages_per_session=2) as provider:
        record = await run(target_for(provider.port, tmp_path, max_sessions=2))
        left = len(provider.queue)
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 4
    assert left == 1
    assert "max_sessions=2" in (record.detail or "")


async def test_empty_queue_is_no_mail(tmp_path: Path) -> None:
    """453 You have no mail gives no_mail."""
    async with Provider(users=USERS) as provider:
        record = await run(target_for(provider.port, tmp_path))
    assert record.outcome is Outcome.NO_MAIL
    assert record.code == 453
    assert record.messages is None


async def test_drop_mid_data_is_partial(tmp_path: Path) -> None:
    """A drop inside the third message gives partial with two messages; no partial file is left."""
    faults = Faults(drop_after_messages=2)
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 5, 50_000), faults=faults) as provider:
        record = await run(target_for(provider.port, tmp_path, max_sessions=1))
        left = len(provider.queue)
    assert record.outcome is Outcome.PARTIAL
    assert record.messages == 2
    assert len(delivered(tmp_path)) == 2
    assert list((tmp_path / "tmp").iterdir()) == []
    assert left == 3


async def test_drain_resumes_after_drop(tmp_path: Path) -> None:
    """After a session that broke with messages accepted, the next ATRN picks up the rest."""
    faults = Faults(drop_after_messages=2)
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 5, 50_000), faults=faults) as provider:
        record = await run(target_for(provider.port, tmp_path))
        left = len(provider.queue)
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 5
    assert left == 0
    assert len(delivered(tmp_path)) == 5
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "ended without QUIT" in (record.detail or "")


async def test_drop_before_any_message_stops(tmp_path: Path) -> None:
    """A session that breaks before accepting anything ends the drain with partial and zero messages."""
    faults = Faults(drop_after_messages=0)
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2, 10_000), faults=faults) as provider:
        record = await run(target_for(provider.port, tmp_path))
        requests = len(provider.atrn_requests)
    assert record.outcome is Outcome.PARTIAL
    assert record.messages == 0
    assert requests == 1
    assert delivered(tmp_path) == []


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("502 Command not implemented", Outcome.UNSUPPORTED), ("500 unrecognized", Outcome.UNSUPPORTED),
     ("450 ATRN request refused", Outcome.TEMPFAIL), ("451 Unable to process ATRN request now", Outcome.TEMPFAIL),
     ("530 Authentication required", Outcome.AUTH_FAILED), ("554 no", Outcome.REFUSED)],
)
async def test_atrn_reply_outcomes(tmp_path: Path, reply: str, outcome: Outcome) -> None:
    """Each ATRN refusal maps to its outcome and nothing is received."""
    faults = Faults(replies={"ATRN": reply})
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1), faults=faults) as provider:
        record = await run(target_for(provider.port, tmp_path))
    assert record.outcome is outcome
    assert record.code == int(reply[:3])
    assert record.messages is None


async def test_auth_refused(tmp_path: Path) -> None:
    """A provider that rejects AUTH gives auth_failed without ATRN."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1), faults=Faults(refuse_auth=True)) as provider:
        record = await run(target_for(provider.port, tmp_path))
        requests = provider.atrn_requests
    assert record.outcome is Outcome.AUTH_FAILED
    assert requests == []


async def test_follow_up_failure_keeps_received(tmp_path: Path) -> None:
    """Mail already stored keeps the run 'received' when a later ATRN is refused."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 4), max_messages_per_session=2) as provider:

        def refuse_next(messages: int, size: int) -> None:
            if messages == 2:
                provider.faults.replies["ATRN"] = "450 too many requests"

        record = await run(target_for(provider.port, tmp_path), on_progress=refuse_next)
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 2
    assert "follow-up ATRN failed" in (record.detail or "")


async def test_progress_hook(tmp_path: Path) -> None:
    """The progress hook gets running totals after each message."""
    seen: list[tuple[int, int]] = []
    messages = make_messages(DOMAIN, 3, 1000)
    async with Provider(users=USERS, queue=messages) as provider:
        await run(target_for(provider.port, tmp_path), on_progress=lambda m, b: seen.append((m, b)))
    assert [m for m, _ in seen] == [1, 2, 3]
    assert seen[-1][1] == sum(m.size for m in messages)


async def test_sink_not_ready_sends_no_atrn(tmp_path: Path) -> None:
    """If the Maildir cannot be prepared, no ATRN is sent and the run is tempfail."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1)) as provider:
        record = await run(target_for(provider.port, blocker / "Maildir"))
        requests = provider.atrn_requests
    assert record.outcome is Outcome.TEMPFAIL
    assert requests == []


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_host_failover(tmp_path: Path) -> None:
    """When the first host refuses the connection, the next host in 'hosts' is used."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1)) as provider:
        target = target_for(provider.port, tmp_path, host=None, hosts=["::1", "127.0.0.1"])
        record = await run(target)
    assert record.outcome is Outcome.RECEIVED
    assert record.host == "127.0.0.1"


@pytest.mark.skipif(not trustme_available(), reason="trustme not installed")
async def test_reversal_inside_tls(tmp_path: Path) -> None:
    """After STARTTLS the reversed session runs in the same TLS session and the trace header names ESMTPS."""
    certificate = make_loopback_certificate(tmp_path / "tls")
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2), tls_cert=certificate.cert_path,
                        tls_key=certificate.key_path) as provider:
        target = target_for(provider.port, tmp_path / "Maildir", tls="starttls", tls_ca_file=str(certificate.ca_path),
                            auth={"username": "user", "password": "password", "mechanisms": ["PLAIN"]})
        record = await run(target)
    assert record.outcome is Outcome.RECEIVED
    assert record.messages == 2
    assert all(b" with ESMTPS id " in data for data in delivered(tmp_path / "Maildir"))
