"""Parsing of duration and size values such as ``90s``, ``5m``, ``1h`` and ``25M``."""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> float:
    """Parse a duration into seconds: a number of seconds, or a string like ``5m``.

    Raises ValueError with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}; use a number of seconds or a string such as '90s', '5m', '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"invalid duration {value!r}; use a number of seconds or a string such as '90s', '5m', '1h'")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}; it must not be negative")
    return seconds


def parse_size(value: object) -> int:
    """Parse a byte size: an integer, or a string like ``25M`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}; use a number of bytes or a string such as '512K', '25M', '1G'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)) and match.group(2).lower() in _SIZE_UNITS:
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"invalid size {value!r}; use a number of bytes or a string such as '512K', '25M', '1G'")
    if size < 0:
        raise ValueError(f"invalid size {value!r}; it must not be negative")
    return size


def format_duration(seconds: float) -> str:
    """Format seconds the way a config file writes them (``300`` becomes ``5m``)."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"
