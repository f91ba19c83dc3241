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
    commands). ``size`` is the length of ``data`` with the line endings as
    received, which is what the size limit counts.
    """

    data: bytes
    done: bool = False
    rest: bytes = b""
    size: int = 0


class DotDecoder:
    """Undo RFC 5321 section 4.5.2 dot-stuffing and detect ``CRLF.CRLF``.

    A bare LF is accepted as a line ending, so ``LF.LF`` also ends the data.
    A line that starts with a dot loses that dot unless the line is the lone
    dot of the end-of-data line.

    Every line-leading dot follows an LF in the working buffer: the decoder
    starts with a virtual LF (never output) and holds back a trailing LF,
    ``LF.`` or ``LF.CR`` until the next chunk shows what follows. The work is
    then two ``find`` calls and one split and join per chunk.

    With ``lf_endings`` the decoder also turns every CRLF into LF in the same
    pass, as a Maildir needs; a bare CR stays. It then converts first and
    looks for ``LF.LF`` alone, because after the conversion that pattern
    marks both forms of the end-of-data line.
    """

    def __init__(self, *, lf_endings: bool = False) -> None:
        self._pending = b"\n"
        self._virtual_lf = True
        self._lf_endings = lf_endings
        self.done = False

    def feed(self, chunk: bytes) -> DecodedChunk:
        """Decode ``chunk`` and return the content it completes."""
        if self.done:
            raise RuntimeError("feed() called after the end-of-data line")
        buffer = self._pending + chunk
        if self._lf_endings:
            return self._feed_converting(buffer)
        end, marker = _find_end(buffer)
        if end >= 0:
            self.done = True
            self._pending = b""
            data = self._unstuff(buffer[: end + 1])
            return DecodedChunk(data, done=True, rest=buffer[end + marker :], size=len(data))
        hold = _undecided_tail(buffer, _UNDECIDED_TAILS)
        self._pending = buffer[len(buffer) - hold :]
        data = self._unstuff(buffer[: len(buffer) - hold])
        return DecodedChunk(data, size=len(data))

    def _feed_converting(self, buffer: bytes) -> DecodedChunk:
        """Decode ``buffer`` (pending bytes plus a chunk, as received) into content with LF line endings.

        ``_pending`` stays in received form, so every count of removed CRs
        below is a difference of lengths in one buffer.
        """
        converted = buffer.replace(b"\r\n", b"\n")
        end = converted.find(b"\n.\n")
        if end >= 0:
            # The rest must keep its CRLFs, so locate the same line in the received bytes.
            received_end, marker = _find_end(buffer)
            self.done = True
            self._pending = b""
            data = self._unstuff(converted[: end + 1])
            removed_crs = received_end - end
            return DecodedChunk(data, done=True, rest=buffer[received_end + marker :], size=len(data) + removed_crs)
        hold = _undecided_tail(buffer, _UNDECIDED_TAILS_WITH_CR)
        tail = buffer[len(buffer) - hold :]
        content = converted[: len(converted) - len(tail.replace(b"\r\n", b"\n"))]
        self._pending = tail
        data = self._unstuff(content)
        removed_crs = len(buffer) - hold - len(content)
        return DecodedChunk(data, size=len(data) + removed_crs)

    def _unstuff(self, content: bytes) -> bytes:
        # Same result as replace(b"\n.", b"\n"), but CPython 3.11 replace scans twice (count, then copy).
        data = b"\n".join(content.split(b"\n."))
        if self._virtual_lf and data:
            self._virtual_lf = False
            return data[1:]
        return data


# Trailing bytes that may still start the end-of-data line, longest first.
_UNDECIDED_TAILS = (b"\n.\r", b"\n.", b"\n")
# The same when CRLF is converted: a CR at the end may pair with the next
# chunk's LF, and a CR before a held LF is held with it.
_UNDECIDED_TAILS_WITH_CR = (b"\r\n.\r", b"\n.\r", b"\r\n.", b"\n.", b"\r\n", b"\n", b"\r")


def _find_end(buffer: bytes) -> tuple[int, int]:
    """Return the index of the LF that precedes the end-of-data dot and the marker length, or (-1, 0)."""
    crlf = buffer.find(b"\n.\r\n")
    bare = buffer.find(b"\n.\n", 0, crlf + 3 if crlf >= 0 else len(buffer))
    if bare >= 0:
        return bare, 3
    if crlf >= 0:
        return crlf, 4
    return -1, 0


def _undecided_tail(buffer: bytes, tails: tuple[bytes, ...]) -> int:
    """Return how many trailing bytes of ``buffer`` match the first of ``tails`` that matches, or 0."""
    for tail in tails:
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
