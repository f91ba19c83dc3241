"""Helpers for the ODMR tests: a recording sink and a scripted provider on a socket pair."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator

from mailreleased.config.model import ReceiverLimits
from mailreleased.odmr.receiver import SessionResult, serve_reversed
from mailreleased.odmr.sinks.base import ACCEPTED, DeliveryResult, Envelope, Sink

TEST_TIMEOUT = 20.0


@dataclasses.dataclass
class StoredMessage:
    """A message as the memory sink stored it."""

    envelope: Envelope
    data: bytes


class MemorySink(Sink):
    """Keeps every delivered message in a list; ``result`` sets the reply it gives."""

    def __init__(self, result: DeliveryResult = ACCEPTED) -> None:
        self.result = result
        self.messages: list[StoredMessage] = []
        self.aborted = 0
        self.resets = 0

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        parts: list[bytes] = []
        try:
            async for chunk in body:
                parts.append(chunk)
        except BaseException:
            self.aborted += 1
            raise
        if self.result.ok:
            self.messages.append(StoredMessage(envelope, b"".join(parts)))
        return self.result

    async def reset(self) -> None:
        self.resets += 1


def body_without_trace(data: bytes) -> bytes:
    """Return a stored message without the Received header the receiver prepended."""
    assert data.startswith(b"Received: ")
    end = data.index(b"\r\n", data.index(b"; "))
    return data[end + 2 :]


@dataclasses.dataclass
class Transcript:
    """What a scripted provider got back from the receiver."""

    result: SessionResult
    output: bytes

    @property
    def lines(self) -> list[str]:
        return self.output.decode("ascii").split("\r\n")[:-1]

    @property
    def codes(self) -> list[int]:
        """The reply code of every final reply line, in order."""
        return [int(line[:3]) for line in self.lines if line[3:4] == " "]


async def run_script(
    chunks: list[bytes],
    sink: Sink | None = None,
    *,
    domains: tuple[str, ...] = ("example.org",),
    limits: ReceiverLimits | None = None,
    close: bool = True,
) -> Transcript:
    """Write ``chunks`` as the provider, then close its sending side if ``close``; serve; return replies."""
    server_sock, provider_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=server_sock)
    provider_reader, provider_writer = await asyncio.open_connection(sock=provider_sock)

    async def provide() -> None:
        for chunk in chunks:
            provider_writer.write(chunk)
            await provider_writer.drain()
        if close:
            provider_writer.write_eof()

    async def serve() -> SessionResult:
        try:
            return await serve_reversed(
                reader, writer, sink=sink or MemorySink(), server_name="customer.example.org",
                domains=domains, limits=limits or ReceiverLimits(),
            )
        finally:
            writer.close()

    async with asyncio.timeout(TEST_TIMEOUT):
        provider_task = asyncio.create_task(provide())
        result = await serve()
        output = await provider_reader.read()
        provider_task.cancel()
        provider_writer.close()
    return Transcript(result, output)


def message(body: bytes, *, sender: str = "alice@example.net", recipients: tuple[str, ...] = ("bob@example.org",)) -> bytes:
    """Return one pipelined MAIL/RCPT/DATA transaction carrying ``body`` (already dot-stuffed)."""
    lines = [f"MAIL FROM:<{sender}>".encode()]
    lines += [f"RCPT TO:<{r}>".encode() for r in recipients]
    lines.append(b"DATA")
    return b"\r\n".join(lines) + b"\r\n" + body


async def body_of(*parts: bytes) -> AsyncIterator[bytes]:
    """Yield ``parts`` as a message body."""
    for part in parts:
        yield part


async def broken_body(*parts: bytes) -> AsyncIterator[bytes]:
    """Yield ``parts``, then fail as a link that broke mid-DATA does."""
    from mailreleased.odmr.sinks.base import BodyIncomplete

    for part in parts:
        yield part
    raise BodyIncomplete("connection lost during DATA")
