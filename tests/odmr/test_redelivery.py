"""Each sink, down then up: the provider keeps what got 451, and the next run delivers it."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailreleased.config.model import Target
from mailreleased.odmr import run_atrn
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider
from tests.odmr.fake_mta import FakeMta

DOMAIN = "example.test"
USERS = {"user": "password"}
COUNT = 3
TEST_TIMEOUT = 60.0

# A command sink that stores each message under the directory given as argv[1].
STORE_SCRIPT = (
    "import sys, pathlib, uuid; "
    "pathlib.Path(sys.argv[1], uuid.uuid4().hex).write_bytes(sys.stdin.buffer.read())"
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def atrn_target(port: int, delivery: dict[str, Any]) -> Target:
    return Target.model_validate(
        {
            "name": "odmr",
            "method": "atrn",
            "host": "127.0.0.1",
            "port": port,
            "domains": [DOMAIN],
            "tls": "off",
            "helo_name": "customer.test",
            "timeouts": {"connect": "5s", "greeting": "10s", "reply": "10s"},
            "auth": {"username": "user", "password": "password", "mechanisms": ["CRAM-MD5"]},
            "delivery": delivery,
        }
    )


async def run(target: Target) -> SignalRecord:
    async with asyncio.timeout(TEST_TIMEOUT):
        [record] = await run_atrn(target)
    return record


async def _down_then_up(
    down: dict[str, Any], up: dict[str, Any], delivered: Callable[[], int]
) -> tuple[SignalRecord, SignalRecord, int, int]:
    """Run once with the ``down`` sink, then with the ``up`` one; return both records and queue sizes."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, COUNT, 1500)) as provider:
        first = await run(atrn_target(provider.port, down))
        held_after_first = len(provider.queue)
        second = await run(atrn_target(provider.port, up))
        held_after_second = len(provider.queue)
    assert delivered() == COUNT
    return first, second, held_after_first, held_after_second


async def test_smtp_sink_down_then_up() -> None:
    """The local MTA is down: 451, the provider keeps the mail, the next run relays it."""
    async with FakeMta() as mta:
        first, second, held, left = await _down_then_up(
            {"type": "smtp", "host": "127.0.0.1", "port": closed_port()},
            {"type": "smtp", "host": "127.0.0.1", "port": mta.port},
            lambda: len(mta.messages),
        )
    assert first.outcome is Outcome.TEMPFAIL
    assert held == COUNT
    assert second.outcome is Outcome.RECEIVED
    assert second.messages == COUNT
    assert left == 0


async def test_lmtp_sink_down_then_up() -> None:
    """The LMTP server is down: 451, the provider keeps the mail, the next run delivers it."""
    async with FakeMta(lmtp=True) as mta:
        first, second, held, left = await _down_then_up(
            {"type": "lmtp", "host": "127.0.0.1", "port": closed_port()},
            {"type": "lmtp", "host": "127.0.0.1", "port": mta.port},
            lambda: len(mta.messages),
        )
    assert first.outcome is Outcome.TEMPFAIL
    assert held == COUNT
    assert second.outcome is Outcome.RECEIVED
    assert left == 0


async def test_maildir_sink_down_then_up(tmp_path: Path) -> None:
    """A Maildir that can't be created takes nothing; the next run with a good path delivers all."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    good = tmp_path / "Maildir"
    first, second, held, left = await _down_then_up(
        {"type": "maildir", "path": str(blocker / "Maildir")},
        {"type": "maildir", "path": str(good)},
        lambda: len(list((good / "new").iterdir())),
    )
    assert first.outcome is Outcome.TEMPFAIL
    assert held == COUNT
    assert second.outcome is Outcome.RECEIVED
    assert left == 0


@pytest.mark.parametrize("status", [75], ids=["exit-75"])
async def test_command_sink_tempfail_then_ok(tmp_path: Path, status: int) -> None:
    """A command exiting 75 gives 451 and the provider keeps the mail; a working one takes it."""
    store = tmp_path / "store"
    store.mkdir()
    first, second, held, left = await _down_then_up(
        {"type": "command", "argv": [sys.executable, "-c", f"import sys; sys.exit({status})"]},
        {"type": "command", "argv": [sys.executable, "-c", STORE_SCRIPT, str(store)]},
        lambda: len(list(store.iterdir())),
    )
    assert first.outcome is Outcome.TEMPFAIL
    assert held == COUNT
    assert second.outcome is Outcome.RECEIVED
    assert left == 0
