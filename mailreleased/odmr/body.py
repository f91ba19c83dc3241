"""Decode an SMTP DATA stream: undo dot-stuffing and find the end-of-data line.

The decoder is sans-IO: it works on whole chunks with ``bytes.find`` so it
keeps up with fast links, and it carries the few bytes it cannot yet decide
on across chunk boundaries. Line endings pass through unchanged, so a body
that was dot-stuffed and sent comes out byte-identical.
"""

from __future__ import annotations

import dataclasses

_DOT = 0x2E
_LF = 0x0A


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedChunk:
    """What one ``feed`` produced.

    ``data`` is message content, ``done`` is true once the end-of-data line
    was read, and ``rest`` contains the bytes after that line (pipelined
    commands).
    """

    data: bytes
    done: bool = False
    rest: bytes = b""


class DotDecoder:
    """Undo RFC 5321 section 4.5.2 dot-stuffing and detect ``CRLF.CRLF``.

    A bare LF is accepted as a line ending, so ``LF.LF`` also ends the data.
    A line that starts with a dot loses that dot unless the line is the lone
    dot of the end-of-data line.

    Every line-leading dot follows an LF in the working buffer: the decoder
    starts with a virtual LF (never output) and holds back a trailing LF,
    ``LF.`` or ``LF.CR`` until the next chunk shows what follows. The work is
    then two ``find`` calls and one ``replace`` per chunk.
    """

    def __init__(self) -> None:
        self._pending = b"\n"
        self._virtual_lf = True
        self.done = False

    def feed(self, chunk: bytes) -> DecodedChunk:
        """Decode ``chunk`` and return the content it completes."""
        if self.done:
            raise RuntimeError("feed() called after the end-of-data line")
        buffer = self._pending + chunk
        end, marker = _find_end(buffer)
        if end >= 0:
            self.done = True
            self._pending = b""
            return DecodedChunk(self._unstuff(buffer[: end + 1]), done=True, rest=buffer[end + marker :])
        hold = _undecided_tail(buffer)
        self._pending = buffer[len(buffer) - hold :]
        return DecodedChunk(self._unstuff(buffer[: len(buffer) - hold]))

    def _unstuff(self, content: bytes) -> bytes:
        data = content.replace(b"\n.", b"\n")
        if self._virtual_lf and data:
            self._virtual_lf = False
            return data[1:]
        return data


def _find_end(buffer: bytes) -> tuple[int, int]:
    """Return the index of the LF that precedes the end-of-data dot and the marker length, or (-1, 0)."""
    crlf = buffer.find(b"\n.\r\n")
    bare = buffer.find(b"\n.\n", 0, crlf + 3 if crlf >= 0 else len(buffer))
    if bare >= 0:
        return bare, 3
    if crlf >= 0:
        return crlf, 4
    return -1, 0


def _undecided_tail(buffer: bytes) -> int:
    """Return how many trailing bytes may still start the end-of-data line."""
    for tail in (b"\n.\r", b"\n.", b"\n"):
        if buffer.endswith(tail):
            return len(tail)
    return 0


def dot_stuff(body: bytes) -> bytes:
    """Return ``body`` dot-stuffed and terminated for sending after DATA.

    A body that does not end with a line ending gets CRLF appended before
    the end-of-data line, as RFC 5321 section 4.1.1.4 requires.
    """
    stuffed = body.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(b"\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class DotStuffer:
    """Dot-stuff a body that arrives in chunks, for relaying it after DATA."""

    def __init__(self) -> None:
        self._line_start = True
        self._last = b""

    def feed(self, chunk: bytes) -> bytes:
        """Return ``chunk`` with every line-leading dot doubled."""
        if not chunk:
            return b""
        stuffed = chunk.replace(b"\n.", b"\n..")
        if self._line_start and stuffed[0] == _DOT:
            stuffed = b"." + stuffed
        self._line_start = chunk[-1] == _LF
        self._last = chunk[-1:]
        return stuffed

    def end(self) -> bytes:
        """Return the bytes that close the data: a line ending if needed, then ``.CRLF``."""
        if self._last and self._last[0] != _LF:
            return b"\r\n.\r\n"
        return b".\r\n"
