"""Queued messages, a deterministic message generator and bulk dot-stuffing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

# Bytes handed to the transport per write. Large enough that a 200 MB message
# costs a few hundred writes, small enough that only one chunk is copied at a time.
CHUNK_SIZE = 1 << 20

DEFAULT_SENDER = "sender@origin.test"


@dataclasses.dataclass(frozen=True)
class QueuedMessage:
    """One message waiting at the provider: envelope and RFC 5322 bytes with CRLF line ends.

    The bytes are either ``data`` in memory or, when ``source`` is set, the
    part of that file from ``source_offset`` on, read in chunks at delivery.
    """

    id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes = b""
    source: Path | None = None
    source_offset: int = 0

    @property
    def size(self) -> int:
        """Message size in bytes, before dot-stuffing."""
        if self.source is not None:
            return self.source.stat().st_size - self.source_offset
        return len(self.data)

    @property
    def domains(self) -> frozenset[str]:
        """Lower-case domains of the recipients."""
        return frozenset(recipient.rpartition("@")[2].lower() for recipient in self.recipients)

    def read_data(self) -> bytes:
        """Return the whole message in memory (reads the file for file-backed messages)."""
        if self.source is None:
            return self.data
        with self.source.open("rb") as stream:
            stream.seek(self.source_offset)
            return stream.read()

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes | memoryview]:
        """Yield the message bytes in pieces of at most ``size`` bytes, without copying the whole."""
        if self.source is None:
            view = memoryview(self.data)
            for start in range(0, len(view), size):
                yield view[start : start + size]
            return
        # NOTE: file reads block the event loop for one chunk at a time. That is
        # acceptable for a loopback test provider that reads from the page cache.
        with self.source.open("rb") as stream:
            stream.seek(self.source_offset)
            while chunk := stream.read(size):
                yield chunk


def dot_stuff_chunks(chunks: Iterator[bytes | memoryview]) -> Iterator[bytes]:
    """Dot-stuff message bytes for SMTP DATA and append the end-of-data line.

    Every line that starts with "." gets a second "." (RFC 5321 section
    4.5.2). Work is done per chunk with ``bytes.replace``; a line start that
    falls on a chunk boundary is tracked across chunks. A message that does
    not end in CRLF gets one before the final ".".
    """
    at_line_start = True
    last_two = b""
    for chunk in chunks:
        piece = bytes(chunk)
        if not piece:
            continue
        stuffed = piece.replace(b"\n.", b"\n..")
        if at_line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        at_line_start = piece.endswith(b"\n")
        last_two = (last_two + piece)[-2:]
        yield stuffed
    yield b".\r\n" if last_two == b"\r\n" or not last_two else b"\r\n.\r\n"


def make_message_bytes(index: int, domain: str, size: int, *, sender: str = DEFAULT_SENDER) -> bytes:
    """Build message number ``index`` for ``domain``: headers and a body of about ``size`` bytes.

    The output depends only on the arguments. The body has lines that start
    with "." (including a lone "." line) so that dot-stuffing is exercised.
    """
    recipient = _recipient(index, domain)
    header = (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: queued message {index}\r\n"
        f"Message-ID: <msg-{index:06d}@provider.{domain}>\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")
    opening = f"Message {index} for {domain}.\r\n.\r\n..two dots\r\n.one dot\r\n".encode("ascii")
    body = bytearray(opening)
    line_number = 0
    while len(header) + len(body) < size:
        line_number += 1
        prefix = "." if line_number % 7 == 0 else ""
        body += f"{prefix}{index:06d}-{line_number:06d} ".encode("ascii") + b"abcdefghij" * 6 + b"\r\n"
    return header + bytes(body)


def make_messages(domain: str, count: int, size: int = 1024, *, start: int = 0) -> list[QueuedMessage]:
    """Generate ``count`` deterministic messages for ``domain`` of roughly ``size`` bytes each.

    Message ``i`` has the id ``msg-<i>`` and the Message-ID
    ``<msg-<i>@provider.<domain>>``; numbering begins at ``start``.
    """
    messages = []
    for index in range(start, start + count):
        messages.append(
            QueuedMessage(
                id=f"msg-{index:06d}",
                sender=DEFAULT_SENDER,
                recipients=(_recipient(index, domain),),
                data=make_message_bytes(index, domain, size),
            )
        )
    return messages


def _recipient(index: int, domain: str) -> str:
    return f"user{index % 4}@{domain}"
