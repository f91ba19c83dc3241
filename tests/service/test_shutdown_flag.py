"""The process-wide shutdown flag that long sessions check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailreleased import shutdown


@pytest.fixture(autouse=True)
def clean_flag() -> Iterator[None]:
    shutdown.reset()
    yield
    shutdown.reset()


def test_flag_starts_clear() -> None:
    """A fresh process has not requested shutdown."""
    assert not shutdown.shutdown_requested()


def test_request_sets_and_reset_clears() -> None:
    """request_shutdown sets the flag and reset clears it."""
    shutdown.request_shutdown()
    assert shutdown.shutdown_requested()
    shutdown.reset()
    assert not shutdown.shutdown_requested()


async def test_waiters_wake_on_request() -> None:
    """wait_for_shutdown returns once the flag is set."""
    waiter = asyncio.ensure_future(shutdown.wait_for_shutdown())
    await asyncio.sleep(0)
    assert not waiter.done()
    shutdown.request_shutdown()
    await asyncio.wait_for(waiter, timeout=10)


async def test_wait_returns_at_once_when_set() -> None:
    """A waiter that arrives after the request does not block."""
    shutdown.request_shutdown()
    await asyncio.wait_for(shutdown.wait_for_shutdown(), timeout=10)
