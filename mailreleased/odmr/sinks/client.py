"""A small streaming SMTP and LMTP client for handing messages to a local MTA.

aiosmtplib's ``data()`` and ``sendmail()`` take the whole message as one
bytes object, and it has no LMTP, so this client streams the body through
:class:`~mailreleased.odmr.body.DotStuffer` instead. It speaks only to the
configured local server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator

from mailreleased.odmr.body import DotStuffer

MAX_REPLY_LINES = 100
MAX_REPLY_LINE = 2048
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*?)\r?\n$", re.DOTALL)


class RelayError(Exception):
    """The local server could not be reached, broke the protocol or timed out."""


@dataclasses.dataclass(frozen=True, slots=True)
class RelayReply:
    """One reply from the local server."""

    code: int
    text: str


def clean_text(text: str, limit: int = 200) -> str:
    """Return ``text`` with control characters replaced, fit to quote in our own reply."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)[:limit]


class RelayConnection:
    """One connection to a local SMTP or LMTP server; every read has a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self.extensions: set[str] = set()

    @classmethod
    async def open(
        cls, *, host: str | None, port: int | None, path: str | None, timeout: float, hello: str, lmtp: bool
    ) -> RelayConnection:
        """Connect, read the greeting and send ``LHLO`` (LMTP) or ``EHLO`` (SMTP)."""
        try:
            async with asyncio.timeout(timeout):
                if path is not None:
                    reader, writer = await asyncio.open_unix_connection(path, limit=MAX_REPLY_LINE * 2)
                else:
                    reader, writer = await asyncio.open_connection(host, port, limit=MAX_REPLY_LINE * 2)
        except (OSError, TimeoutError) as exc:
            raise RelayError(f"cannot connect: {exc or 'timed out'}") from exc
        connection = cls(reader, writer, timeout)
        try:
            await connection._start(hello, lmtp)
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _start(self, hello: str, lmtp: bool) -> None:
        greeting = await self.read_reply()
        if greeting.code != 220:
            raise RelayError(f"greeting {greeting.code} {clean_text(greeting.text)}")
        reply = await self.command(f"{'LHLO' if lmtp else 'EHLO'} {hello}")
        if reply.code != 250 and not lmtp:
            reply = await self.command(f"HELO {hello}")
        if reply.code != 250:
            raise RelayError(f"hello rejected: {reply.code} {clean_text(reply.text)}")
        self.extensions = {line.split(" ", 1)[0].upper() for line in reply.text.split("\n")[1:]}

    async def read_reply(self) -> RelayReply:
        """Read one possibly multi-line reply."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(self._timeout):
                while len(lines) < MAX_REPLY_LINES:
                    raw = await self._reader.readline()
                    match = _REPLY_LINE.match(raw)
                    if match is None:
                        raise RelayError(f"invalid reply line {raw[:80]!r}")
                    lines.append(match.group(3).decode("utf-8", "replace"))
                    if match.group(2) == b" ":
                        return RelayReply(int(match.group(1)), "\n".join(lines))
        except (OSError, TimeoutError, ValueError) as exc:
            raise RelayError(f"reading a reply failed: {exc or 'timed out'}") from exc
        raise RelayError("reply has too many lines")

    async def command(self, line: str) -> RelayReply:
        """Send one command line and return its reply."""
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._drain()
        return await self.read_reply()

    async def send_body(self, body: AsyncIterator[bytes]) -> None:
        """Stream ``body`` dot-stuffed, then the end-of-data line.

        If ``body`` raises, the connection is aborted without the end-of-data
        line, so the server discards the partial message.
        """
        stuffer = DotStuffer()
        try:
            async for chunk in body:
                self._writer.write(stuffer.feed(chunk))
                await self._drain()
        except BaseException:
            self.abort()
            raise
        self._writer.write(stuffer.end())
        await self._drain()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise RelayError(f"sending failed: {exc or 'timed out'}") from exc

    async def quit(self) -> None:
        """Send QUIT, ignore the outcome and close."""
        try:
            await self.command("QUIT")
        except RelayError:
            pass
        self.abort()

    def abort(self) -> None:
        """Close the connection at once."""
        self._writer.close()
