"""aiosmtplib's SMTP protocol, extended for STARTTLS hygiene and for handing the socket over.

aiosmtplib's :class:`~aiosmtplib.protocol.SMTPProtocol` frames replies and
writes commands. This subclass adds three things it lacks:

* bytes that arrive while no command waits for a reply are kept (aiosmtplib
  drops them), so that :meth:`pending_bytes` returns everything not yet consumed;
* :meth:`upgrade_tls` refuses to start TLS while such bytes exist, because a
  man in the middle can inject plaintext after the ``220`` to STARTTLS
  (CVE-2011-0411); aiosmtplib's own ``start_tls`` discards them silently;
* :meth:`detach` turns the live connection into asyncio streams;
* reply lines are framed strictly: three digits, then a space, a hyphen or
  the line end, and one code for every line of a reply. aiosmtplib reads any
  three leading digits, so ``2500 what`` or ``250ok`` would pass as 250.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

# RFC 5321 section 4.2: Reply-code [ SP / "-" text ] CRLF; a bare LF is tolerated.
_REPLY_LINE = re.compile(rb"^([2-5][0-5][0-9])([ -][^\r\n]*)?\r?\n$")


# aiosmtplib's own cap on one reply line, kept the same.
_MAX_REPLY_LINE = 8192


class ReleaseProtocol(SMTPProtocol):
    """An SMTP client protocol that keeps unsolicited bytes and can be detached."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop=loop)
        self._unsolicited = bytearray()
        self.eof_seen = False
        self.last_transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.last_transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if waiter is not None and (not self._response_pending or waiter.done()):
            self._unsolicited.extend(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        return super().eof_received()

    def _read_response_from_buffer(self) -> SMTPResponse | None:
        """Frame one complete reply from the buffer, or return None until one is in.

        NOTE: this overrides a private aiosmtplib method (checked with 5.1);
        a test pins the strict framing so that an upgrade that renames it fails loudly.
        """
        code: bytes | None = None
        texts: list[bytes] = []
        offset = 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset : end + 1])
            match = _REPLY_LINE.match(line)
            if len(line) > _MAX_REPLY_LINE or match is None or (code is not None and match.group(1) != code):
                raise SMTPResponseException(
                    SMTPStatus.invalid_response.value, f"malformed reply line {line[:80]!r}"
                )
            code = match.group(1)
            offset = end + 1
            separator_and_text = match.group(2) or b""
            texts.append(separator_and_text[1:].strip(b" \t"))
            if not separator_and_text.startswith(b"-"):
                del self._buffer[:offset]
                message = b"\n".join(texts).decode("utf-8", "surrogateescape")
                return SMTPResponse(int(code), message)
        return None

    def pending_bytes(self) -> bytes:
        """Return the bytes received but not consumed as part of a reply, oldest first."""
        return bytes(self._buffer) + bytes(self._unsolicited)

    def take_unsolicited(self) -> bytes:
        """Return and forget the bytes that arrived while no command waited for a reply."""
        data = bytes(self._unsolicited)
        self._unsolicited.clear()
        return data

    async def upgrade_tls(self, context: ssl.SSLContext, server_hostname: str, timeout: float) -> None:
        """Run the TLS handshake on the current transport.

        Raises ConnectionError if anything was received but not consumed, or if
        the connection is gone, and ssl.SSLError or TimeoutError if the
        handshake fails.
        """
        if self.pending_bytes():
            # Plaintext that arrived before the handshake must never be read
            # as if it came through TLS.
            raise ConnectionError("server sent data before the TLS handshake")
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("connection closed before the TLS handshake")
        loop = asyncio.get_running_loop()
        # A stalled handshake ends with ConnectionAbortedError after ``timeout``.
        tls_transport = await loop.start_tls(
            transport,  # type: ignore[arg-type]  # BaseTransport is a Transport here
            self,
            context,
            server_side=False,
            server_hostname=server_hostname,
            ssl_handshake_timeout=timeout,
        )
        if tls_transport is None:
            raise ConnectionError("connection closed during the TLS handshake")
        self.transport = tls_transport
        self.last_transport = tls_transport
        self._over_ssl = True

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Move the connection (and its TLS session, if any) to a new StreamReader and StreamWriter.

        Bytes received but not consumed are fed into the reader first. After
        this call the protocol no longer reads or writes anything.
        """
        transport = self.transport or self.last_transport
        if transport is None:
            raise ConnectionError("no connection to detach")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        stream_protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        leftover = self.pending_bytes()
        self._buffer.clear()
        self._unsolicited.clear()
        self.transport = None
        self._response_waiter = None
        if not transport.is_closing():
            transport.set_protocol(stream_protocol)
        stream_protocol.connection_made(transport)
        if leftover:
            reader.feed_data(leftover)
        if self.eof_seen or transport.is_closing():
            reader.feed_eof()
        writer = asyncio.StreamWriter(transport, stream_protocol, reader, loop)  # type: ignore[arg-type]
        return reader, writer
