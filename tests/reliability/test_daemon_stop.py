"""Stopping the daemon while a scheduled run is in flight: no traceback, the run finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailreleased import shutdown
from mailreleased.config.loader import parse_config
from mailreleased.daemon import Daemon

BOUND = 30.0


@pytest.fixture(autouse=True)
def clear_shutdown_flag() -> Iterator[None]:
    """Daemon.stop sets a process-wide flag; clear it for the tests after this one."""
    shutdown.reset()
    yield
    shutdown.reset()


async def test_tick_cancelled_at_stop_ends_quietly(tmp_path: Path) -> None:
    """The scheduler cancels its job at stop; tick returns and the shielded run completes."""
    greeted = asyncio.Event()
    release = asyncio.Event()

    async def slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeted.set()
        await release.wait()
        writer.write(b"220 fake.test ESMTP\r\n")
        while line := await reader.readline():
            writer.write(b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 OK\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = parse_config(
        f"""
        state_dir: {tmp_path / "state"}
        targets:
          - {{name: isp, method: etrn, host: 127.0.0.1, port: {port}, domains: [example.test], tls: "off"}}
        """
    )
    daemon = Daemon(config)
    daemon.store.load()
    async with asyncio.timeout(BOUND):
        tick = asyncio.create_task(daemon.tick(["isp"]))
        await greeted.wait()
        daemon.stopping.set()
        tick.cancel()
        await asyncio.wait([tick])
        in_flight = list(daemon._in_flight)
        release.set()
        await asyncio.wait(in_flight)
    server.close()
    await server.wait_closed()

    assert not tick.cancelled()
    assert tick.exception() is None
    assert len(in_flight) == 1
    assert [str(record.outcome) for record in in_flight[0].result()] == ["released"]
