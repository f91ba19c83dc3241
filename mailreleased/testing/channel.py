"""One provider connection: sending and reading lines with transcript, delays and timeouts."""

from __future__ import annotations

import asyncio
import ssl

from mailreleased.testing.state import ProviderState
from mailreleased.testing.wire import Reply, format_reply, read_line, read_reply

# Bytes buffered in the transport before write() waits for the peer to catch up.
DRAIN_THRESHOLD = 4 << 20


class Channel:
    """A connection as both roles see it: server replies first, client commands after ATRN."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: ProviderState,
        session: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.state = state
        self.session = session
        self.tls_active = False
        self.last_reply_code = 0

    async def _pause(self) -> None:
        delay = self.state.faults.reply_delay
        if delay > 0:
            await asyncio.sleep(delay)

    async def reply(self, code: int, *lines: str, verb: str | None = None) -> int:
        """Send a reply, or the raw override that ``Faults.replies`` holds for ``verb``.

        Returns the code actually sent, so that callers follow an override.
        """
        await self._pause()
        override = self.state.faults.replies.get(verb) if verb else None
        if override is None:
            await self.send_raw(format_reply(code, *lines))
        else:
            await self.send_raw(override.encode("utf-8") + b"\r\n")
            code = int(override[:3]) if override[:3].isdigit() else 0
        self.last_reply_code = code
        return code

    async def send_raw(self, data: bytes, *, record: bool = True) -> None:
        """Write ``data`` as it is and wait until the transport accepted it."""
        if record and self.state.settings.record_transcript:
            for line in data.decode("utf-8", errors="replace").splitlines():
                self.state.record(self.session, "sent", line)
        self.writer.write(data)
        await self.writer.drain()

    async def write_data(self, data: bytes) -> None:
        """Write message bytes, draining only when the transport buffer is large."""
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > DRAIN_THRESHOLD:
            await self.writer.drain()

    async def read_command(self) -> str:
        """Read one command line from the customer."""
        line = await read_line(self.reader, self.state.settings.command_timeout)
        self.state.record(self.session, "received", line)
        return line

    async def read_secret(self) -> str:
        """Read one AUTH response line; the transcript stores a placeholder instead."""
        line = await read_line(self.reader, self.state.settings.command_timeout)
        self.state.record(self.session, "received", "<auth response>")
        return line

    async def read_reply(self) -> Reply:
        """Read one reply from the customer while acting as SMTP client."""
        reply = await read_reply(self.reader, self.state.settings.reply_timeout)
        self.state.record(self.session, "received", str(reply))
        return reply

    async def command(self, line: str) -> Reply:
        """Send one command and return the customer's reply."""
        await self._pause()
        await self.send_raw(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    async def pipeline(self, lines: list[str]) -> list[Reply]:
        """Send a group of commands in one write and return their replies in order (RFC 2920)."""
        await self._pause()
        await self.send_raw("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
        return [await self.read_reply() for _ in lines]

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Run the server side of a TLS handshake on this connection."""
        await self.writer.start_tls(context)
        self.tls_active = True

    def abort(self) -> None:
        """Drop the connection at once, as a crashed or cut-off peer does."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection and wait briefly for the close to finish."""
        if self.writer.is_closing():
            return
        self.writer.close()
        try:
            async with asyncio.timeout(5):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass
