"""The process-wide shutdown flag that long sessions check before taking on new work.

The daemon calls :func:`request_shutdown` when it begins to stop. Code that
runs a long session, such as the ODMR receiver after the ATRN reversal, calls
:func:`shutdown_requested` before accepting more work (a new MAIL gets 421 and
the session closes, so the provider keeps the mail) and may await
:func:`wait_for_shutdown`. Tests call :func:`reset` between daemon runs.
"""

from __future__ import annotations

import asyncio

_requested = False
_waiters: set[asyncio.Future[None]] = set()


def shutdown_requested() -> bool:
    """Return True once the daemon has begun to stop."""
    return _requested


def request_shutdown() -> None:
    """Set the flag and wake every :func:`wait_for_shutdown` caller. Calling it twice is harmless."""
    global _requested
    _requested = True
    for waiter in list(_waiters):
        if not waiter.done():
            # The waiter may belong to another thread's loop; resolve it in its own loop.
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter)


def reset() -> None:
    """Clear the flag, so that a later daemon in the same process can run."""
    global _requested
    _requested = False


async def wait_for_shutdown() -> None:
    """Return once shutdown has been requested (at once if it already was)."""
    if _requested:
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _waiters.add(waiter)
    try:
        await waiter
    finally:
        _waiters.discard(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
