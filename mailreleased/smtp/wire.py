"""The debug wire transcript: every line each way, with AUTH payloads masked."""

from __future__ import annotations

import logging
from typing import Any

import structlog

from mailreleased.smtp.reply import Reply, sanitize

MASK = "***"

_wire_logger = structlog.get_logger("mailreleased.wire")


class WireLog:
    """Logs one session's traffic as ``wire`` events at debug level."""

    def __init__(self, target: str, host: str) -> None:
        self._log: Any = _wire_logger.bind(target=target, host=host)

    def _enabled(self) -> bool:
        # Checked on every call, because a config reload may change the level.
        # The check skips building the event and sanitizing the line when
        # debug is off, which would otherwise cost several microseconds per line.
        return bool(self._log.is_enabled_for(logging.DEBUG))

    def client(self, line: str) -> None:
        """Log a line we sent. Callers pass AUTH payloads already masked."""
        if self._enabled():
            self._log.debug("wire", direction="C", line=sanitize(line))

    def server(self, reply: Reply) -> None:
        """Log each line of a reply we received."""
        if not self._enabled():
            return
        for line in reply.wire_lines():
            self._log.debug("wire", direction="S", line=line)

    def server_raw(self, text: str) -> None:
        """Log text that came from the server outside any reply (sanitized)."""
        if self._enabled():
            self._log.debug("wire", direction="S", line=sanitize(text))


def mask_auth_command(line: str) -> str:
    """Return an ``AUTH`` command line with everything after the mechanism replaced by ``***``."""
    parts = line.split(" ", 2)
    if len(parts) > 2 and parts[0].upper() == "AUTH":
        return f"{parts[0]} {parts[1]} {MASK}"
    return line
