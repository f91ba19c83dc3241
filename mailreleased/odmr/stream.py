"""Buffered input for the reversed session: command lines and DATA bodies.

:class:`BufferedInput` reads the provider's bytes in large chunks and can
push bytes back, which pipelined commands after the end-of-data line need.
:class:`BodyReader` turns the DATA stream into decoded chunks for a sink.
Every read has a timeout and every buffer a bound.
"""

from __future__ import annotations

import asyncio

from mailreleased.odmr.body import DotDecoder
from mailreleased.odmr.sinks.base import BodyIncomplete, MessageTooLarge

# Large reads keep the per-chunk overhead low on fast links (about 100 MB/s
# needs few thousand reads per second at this size).
READ_SIZE = 256 * 1024


class ConnectionClosed(Exception):
    """The provider closed the connection or it broke."""


class ReadTimeout(Exception):
    """The provider sent nothing within the command timeout."""


class LineTooLong(Exception):
    """A command line exceeded the line length limit; it has been discarded."""


class BufferedInput:
    """A reader with a push-back buffer over an ``asyncio.StreamReader``."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    def has_line(self) -> bool:
        """Return whether a whole command line is already buffered."""
        return b"\n" in self._buffer

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffered bytes."""
        self._buffer[:0] = data

    async def read_line(self, limit: int, timeout: float) -> bytes:
        """Return the next line including its LF.

        Raises LineTooLong once a line longer than ``limit`` bytes has been
        read and thrown away, so memory stays bounded by ``limit`` plus one read.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if len(line.rstrip(b"\r\n")) > limit:
                    raise LineTooLong
                return line
            if len(self._buffer) > limit:
                self._buffer.clear()
                await self._discard_line(timeout)
                raise LineTooLong
            self._buffer += await self._read(timeout)

    async def read_chunk(self, timeout: float) -> bytes:
        """Return the buffered bytes, or the next read if the buffer is empty."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        return await self._read(timeout)

    async def _discard_line(self, timeout: float) -> None:
        while True:
            data = await self._read(timeout)
            end = data.find(b"\n")
            if end >= 0:
                self._buffer += data[end + 1 :]
                return

    async def _read(self, timeout: float) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            raise ReadTimeout from None
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc
        if not data:
            raise ConnectionClosed("connection closed by the provider")
        return data


class BodyReader:
    """The decoded message of one DATA command, as an async iterator of chunks.

    ``prefix`` (the trace header) comes first. Iteration raises
    MessageTooLarge once the content passes ``max_size`` and BodyIncomplete
    if the link breaks or times out before the end-of-data line.
    Line endings stay as received unless a sink calls
    :meth:`convert_line_endings`.
    """

    def __init__(self, source: BufferedInput, *, max_size: int, timeout: float, prefix: bytes = b"") -> None:
        self._source = source
        self._decoder = DotDecoder()
        self._max_size = max_size
        self._timeout = timeout
        self._prefix: bytes | None = prefix
        self.size = 0
        self.too_large = False
        self._started = False

    def convert_line_endings(self) -> bool:
        """Switch to LF line endings for the whole message if nothing has been read yet; return whether it did.

        Converting while decoding saves the sink a second pass over the data.
        ``size`` still counts the content with its line endings as received.
        """
        if self._started or (self._prefix and self._prefix.endswith(b"\r")):
            return False
        self._decoder = DotDecoder(lf_endings=True)
        if self._prefix:
            self._prefix = self._prefix.replace(b"\r\n", b"\n")
        return True

    @property
    def complete(self) -> bool:
        """Whether the end-of-data line has been read."""
        return self._decoder.done

    def __aiter__(self) -> BodyReader:
        return self

    async def __anext__(self) -> bytes:
        self._started = True
        if self._prefix:
            prefix, self._prefix = self._prefix, None
            return prefix
        self._prefix = None
        while True:
            if self.too_large:
                raise MessageTooLarge(self._max_size)
            if self.complete:
                raise StopAsyncIteration
            data = await self._next()
            if data and not self.too_large:
                return data

    async def drain(self) -> None:
        """Read and discard the rest of the body up to the end-of-data line."""
        self._started = True
        while not self.complete:
            await self._next()

    async def _next(self) -> bytes:
        try:
            raw = await self._source.read_chunk(self._timeout)
        except ReadTimeout:
            raise BodyIncomplete("timed out waiting for message data") from None
        except ConnectionClosed as exc:
            raise BodyIncomplete(f"connection lost during DATA: {exc}") from None
        decoded = self._decoder.feed(raw)
        if decoded.done:
            self._source.unread(decoded.rest)
        self.size += decoded.size
        if self.size > self._max_size:
            self.too_large = True
        return decoded.data
