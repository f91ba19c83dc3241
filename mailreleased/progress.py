"""Live progress of ATRN drains, for a counter on a terminal.

The CLI installs a hook for the duration of a run; the ODMR code reports to
it after each accepted message. Without a hook, reporting costs one lookup.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import TextIO

ProgressHook = Callable[[str, int, int], None]

_hook: contextvars.ContextVar[ProgressHook | None] = contextvars.ContextVar("mailreleased_progress", default=None)


def current_hook() -> ProgressHook | None:
    """Return the hook installed for this context, if any."""
    return _hook.get()


def install_hook(hook: ProgressHook | None) -> contextvars.Token[ProgressHook | None]:
    """Install ``hook`` for this context and return the token that restores the previous one."""
    return _hook.set(hook)


class TerminalCounter:
    """Rewrites one status line on a terminal with the messages and bytes received per target."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.totals: dict[str, tuple[int, int]] = {}
        self.shown = False

    def __call__(self, target: str, messages: int, size: int) -> None:
        self.totals[target] = (messages, size)
        parts = [f"{name}: {count} messages, {_human(total)}" for name, (count, total) in self.totals.items()]
        self.stream.write("\r\x1b[K" + "; ".join(parts))
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        """End the status line so that later output starts on a new line."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
