"""Shared helpers for the provider tests."""

from __future__ import annotations

import asyncio

from mailreleased.testing.pytest_plugin import loopback_certificate, loopback_provider
from mailreleased.testing.wire import read_reply

__all__ = ["connect", "loopback_certificate", "loopback_provider"]

USERS = {"user": "password"}
TIMEOUT = 10.0


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection to the provider and consume its greeting."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await read_reply(reader, TIMEOUT)
    return reader, writer
