"""SMTP replies as values, and the text hygiene applied to everything a server sends."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A reply line may hold at most this many bytes (the limit CPython's smtplib
# uses); aiosmtplib enforces the same value while framing.
MAX_LINE_BYTES = 8192
# More lines than this in one reply is a broken or hostile server.
MAX_REPLY_LINES = 100
# Reply text kept in outcome records; the wire log keeps whole lines.
RECORD_TEXT_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


def sanitize(text: str) -> str:
    """Replace control characters (C0, DEL and C1) with ``?`` so server text is safe to log."""
    return _CONTROL.sub("?", text)


def decode_server_text(raw: str | bytes) -> str:
    """Decode server bytes as UTF-8, replacing undecodable bytes.

    aiosmtplib hands text over decoded with ``surrogateescape``; this turns
    those escapes into U+FFFD so that no lone surrogate reaches a log.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Reply:
    """One complete SMTP reply: the code and the text of each line, without the code prefix."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """All lines of the reply text joined with a space."""
        return " ".join(line for line in self.lines if line)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the first line, such as ``2.0.0``."""
        if not self.lines:
            return None
        match = _ENHANCED.match(self.lines[0])
        return ".".join(match.groups()) if match else None

    def short(self) -> str:
        """Return the text sanitized and cut to a length fit for an outcome record."""
        text = sanitize(self.text)
        if len(text) > RECORD_TEXT_CHARS:
            return text[: RECORD_TEXT_CHARS - 3] + "..."
        return text

    def wire_lines(self) -> list[str]:
        """Return the reply as it looked on the wire (``250-first``, ``250 last``), sanitized."""
        last = len(self.lines) - 1
        return [
            sanitize(f"{self.code}{'-' if index < last else ' '}{line}".rstrip(" "))
            for index, line in enumerate(self.lines or ("",))
        ]
