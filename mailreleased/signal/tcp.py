"""Plain TCP connections for the FINGER and connect pokes."""

from __future__ import annotations

import asyncio

from mailreleased.smtp.opening import connect_failures


async def open_stream(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host``:``port`` within ``timeout`` seconds; raise SessionError(connect_failed) otherwise."""
    async with connect_failures(host, port, timeout):
        return await asyncio.open_connection(host, port)


# Seconds to wait for a clean close before the connection is aborted.
CLOSE_TIMEOUT = 5.0


async def close_stream(writer: asyncio.StreamWriter) -> None:
    """Close the connection, ignoring errors from a peer that is already gone."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass
