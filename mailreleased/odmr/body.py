"""Decode an SMTP DATA stream: undo dot-stuffing and find the end-of-data line.

The decoder is sans-IO: it works on whole chunks with ``bytes.find`` so it
keeps up with fast links, and it carries the few bytes it cannot yet decide
on across chunk boundaries. Line endings pass through unchanged, so a body
that was dot-stuffed and sent comes out byte-identical.
"""

from __future__ import annotations

import dataclasses

_DOT = 0x2E
_CR = 0x0D
_LF = 0x0A


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedChunk:
    """What one ``feed`` produced.

    ``data`` is message content, ``done`` says the end-of-data line was seen,
    and ``rest`` holds the bytes after that line (pipelined commands).
    """

    data: bytes
    done: bool = False
    rest: bytes = b""


class DotDecoder:
    """Undo RFC 5321 section 4.5.2 dot-stuffing and detect ``CRLF.CRLF``.

    A bare LF is accepted as a line ending, so ``LF.LF`` also ends the data.
    A line that starts with a dot loses that dot unless the line is the lone
    dot of the end-of-data line.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._pending = b""
        self.done = False

    def feed(self, chunk: bytes) -> DecodedChunk:
        """Decode ``chunk`` and return the content it completes."""
        if self.done:
            raise RuntimeError("feed() called after the end-of-data line")
        buffer = self._pending + chunk if self._pending else chunk
        self._pending = b""
        pieces: list[bytes] = []
        emit_from = 0
        dot = 0 if self._line_start and buffer[:1] == b"." else self._next_dot(buffer, 0)
        while dot >= 0:
            pieces.append(buffer[emit_from:dot])
            after = buffer[dot + 1 : dot + 3]
            if not after or after == b"\r":
                # Cannot decide yet whether this dot ends the data.
                self._pending = buffer[dot:]
                self._line_start = True
                return DecodedChunk(b"".join(pieces))
            if after[0] == _LF:
                return self._finish(pieces, buffer[dot + 2 :])
            if after == b"\r\n":
                return self._finish(pieces, buffer[dot + 3 :])
            emit_from = dot + 1  # a stuffed dot: drop it
            dot = self._next_dot(buffer, dot + 1)
        pieces.append(buffer[emit_from:])
        if buffer:
            self._line_start = buffer[-1] == _LF
        return DecodedChunk(b"".join(pieces) if len(pieces) > 1 else pieces[0])

    @staticmethod
    def _next_dot(buffer: bytes, start: int) -> int:
        """Return the index of the next dot that starts a line, or -1."""
        found = buffer.find(b"\n.", start)
        return found + 1 if found >= 0 else -1

    def _finish(self, pieces: list[bytes], rest: bytes) -> DecodedChunk:
        self.done = True
        return DecodedChunk(b"".join(pieces), done=True, rest=rest)


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
