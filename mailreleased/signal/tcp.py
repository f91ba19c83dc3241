"""Plain TCP connections for the FINGER and connect pokes."""

from __future__ import annotations

import asyncio

from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome


async def open_stream(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host``:``port`` within ``timeout`` seconds; raise SessionError(connect_failed) otherwise."""
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(host, port)
    except TimeoutError:
        raise SessionError(
            Outcome.CONNECT_FAILED, detail=f"connecting to {host} port {port} timed out after {timeout:g}s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SessionError(Outcome.CONNECT_FAILED, detail=f"cannot connect to {host} port {port}: {reason}") from exc


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
