"""Line framing on asyncio streams: reading commands and replies, writing CRLF lines."""

from __future__ import annotations

import asyncio
import dataclasses

# RFC 5321 allows 512-octet command and reply lines; accept more, as CPython's smtplib does.
MAX_LINE = 8192
MAX_REPLY_LINES = 100


class ConnectionLost(ConnectionError):
    """The peer closed the connection or sent an unusable line."""


@dataclasses.dataclass(frozen=True)
class Reply:
    """One complete SMTP reply: the code of its last line and the text of every line."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """All line texts joined by spaces."""
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


async def read_line(reader: asyncio.StreamReader, timeout: float) -> str:
    """Read one line ended by LF (CRLF or bare LF) and return it without the line end.

    Raises TimeoutError after ``timeout`` seconds and ConnectionLost on EOF or
    a line longer than MAX_LINE.
    """
    async with asyncio.timeout(timeout):
        return await _read_line(reader)


async def read_reply(reader: asyncio.StreamReader, timeout: float) -> Reply:
    """Read one reply, single- or multi-line, tolerating bare codes and LF-only line ends.

    ``timeout`` covers the whole reply, however many lines it has.
    """
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while len(lines) < MAX_REPLY_LINES:
            line = await _read_line(reader)
            code_text = line[:3]
            if len(code_text) != 3 or not code_text.isdigit():
                raise ConnectionLost(f"malformed reply line {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(code_text), tuple(lines))
    raise ConnectionLost(f"reply has more than {MAX_REPLY_LINES} lines")


async def _read_line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionLost("connection closed by peer") from exc
    except asyncio.LimitOverrunError as exc:
        raise ConnectionLost("line longer than the stream buffer limit") from exc
    if len(raw) > MAX_LINE:
        raise ConnectionLost(f"line longer than {MAX_LINE} bytes")
    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


def format_reply(code: int, *lines: str) -> bytes:
    """Format a reply: ``code-`` on every line but the last, ``code `` on the last, CRLF ends."""
    texts = lines or ("",)
    out = bytearray()
    for number, text in enumerate(texts):
        separator = " " if number == len(texts) - 1 else "-"
        out += f"{code}{separator}{text}".rstrip().encode("utf-8") + b"\r\n"
    return bytes(out)
