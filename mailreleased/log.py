"""Logging set-up: structlog for our events, with the stdlib loggers routed through it.

Output goes to standard error: JSON lines when it is not a terminal (systemd,
Docker, a monitor), coloured console lines on a terminal. Every line passes a
scrubber that masks registered secrets, so a password can't reach the log even
if some code path put it into an event by mistake.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_MASK = "***"
_secrets: set[str] = set()


def register_secret(secret: str, username: str | None = None) -> None:
    """Mask ``secret`` and its usual base64 encodings in every later log line."""
    if len(secret) < 3:
        # Masking a one- or two-character string would garble every line; such passwords get no scrubbing.
        return
    _secrets.add(secret)
    _secrets.add(base64.b64encode(secret.encode()).decode())
    if username is not None:
        for blob in (f"\0{username}\0{secret}", f"{username}\0{username}\0{secret}"):
            _secrets.add(base64.b64encode(blob.encode()).decode())


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = scrub(value)
        elif value is not None and not isinstance(value, (int, float, bool)):
            text = str(value)
            cleaned = scrub(text)
            if cleaned != text:
                event_dict[key] = cleaned
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger once for the whole process."""
    stream = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        # filter_by_level first: an event below the stdlib level is dropped
        # before any processor runs, so debug calls cost little when debug is off.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
        ],
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))

    # APScheduler logs every job start at info; keep it to warnings unless debugging.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
