"""Loopback servers for the fault tests, run on an event loop in a background thread.

The CLI under test runs ``asyncio.run`` itself, so the servers it talks to
need their own loop. Every server binds 127.0.0.1 on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Upper bound for any one wait inside a scripted server, so that no test can hang on it.
SERVER_WAIT = 30.0


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Awaitable[T], timeout: float = SERVER_WAIT) -> T:
        """Run ``coroutine`` on the loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def close(self) -> None:
        """Cancel what is still running, stop the loop and join the thread."""

        async def _cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(_cancel_rest(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def background_loop() -> Iterator[BackgroundLoop]:
    """Yield a running background loop and close it afterwards."""
    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


async def start_scripted(handler: Handler) -> tuple[asyncio.Server, int]:
    """Start a loopback server that runs ``handler`` per connection; return it and its port."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SERVER_WAIT):
                await handler(reader, writer)
        writer.transport.abort()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def read_command(reader: asyncio.StreamReader) -> str:
    """Read one command line; return "" at EOF."""
    line = await reader.readline()
    return line.decode("utf-8", "replace").rstrip("\r\n")


async def wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Read and drop everything until the client closes the connection."""
    while await reader.read(4096):
        pass


def smtp_script(replies: dict[str, str], greeting: str = "220 fake.test ESMTP") -> Handler:
    """Return a handler that greets, then answers each verb from ``replies``.

    A reply of ``""`` makes the server go silent for that verb; a verb missing
    from ``replies`` gets ``250 OK``. QUIT gets 221 and ends the session.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting:
            writer.write(greeting.encode() + b"\r\n")
            await writer.drain()
        else:
            await wait_for_eof(reader)
            return
        while line := await read_command(reader):
            verb = line.split(" ", 1)[0].upper()
            reply = replies.get(verb, "250 OK")
            if verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            if reply == "":
                await wait_for_eof(reader)
                return
            writer.write(reply.encode().replace(b"\n", b"\r\n") + b"\r\n")
            await writer.drain()
            if reply.startswith("421"):
                return
            if verb == "STARTTLS" and reply.startswith("220"):
                # Wait for the ClientHello, then answer with bytes that are not TLS.
                await reader.read(1)
                writer.write(b"this is not a TLS server hello\r\n")
                await writer.drain()
                return

    return handle


def run_in(loop: BackgroundLoop, factory: Callable[[], Awaitable[Any]]) -> Any:
    """Create and run a coroutine on ``loop`` (a shorthand for tests)."""
    return loop.call(factory())
