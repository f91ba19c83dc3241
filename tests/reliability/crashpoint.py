"""Run the mailreleased CLI with one pause point armed, for the crash loop.

``python -m tests.reliability.crashpoint ARGS`` behaves like
``mailreleased ARGS``. When ``MAILRELEASED_CRASHPOINT`` is set to
``POINT:WHEN:N:MAILDIR`` the process stops itself with SIGSTOP at the Nth
time it reaches POINT, before or after (WHEN) the real call, so the crash
loop can SIGKILL it at exactly that point. POINT is one of:

- ``fsync-file``: fsync or fdatasync of a message file in ``MAILDIR/tmp``
- ``rename``: the rename of a message file from ``tmp/`` into ``new/``
- ``fsync-dir``: fsync of ``MAILDIR/new`` after that rename
- ``write``: a write to a message file in ``MAILDIR/tmp`` (mid-DATA)

The hooks wrap ``os.fsync``, ``os.fdatasync``, ``os.rename`` and
``os.write`` in this process only, and call the real function unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "MAILRELEASED_CRASHPOINT"
POINTS = ("fsync-file", "rename", "fsync-dir", "write")


class PausePoint:
    """Counts arrivals at one point and stops the process at the chosen one."""

    def __init__(self, point: str, when: str, count: int, maildir: Path) -> None:
        if point not in POINTS or when not in ("before", "after") or count < 1:
            raise ValueError(f"invalid {ENV} value {point}:{when}:{count}")
        self.point = point
        self.when = when
        self.count = count
        self.maildir = maildir.resolve()
        self.seen = 0

    def arrive(self, point: str, when: str) -> None:
        """Stop the process if this is the chosen arrival."""
        if point != self.point:
            return
        if when == "before":
            self.seen += 1
        if when == self.when and self.seen == self.count:
            os.kill(os.getpid(), signal.SIGSTOP)

    def classify_fd(self, fd: int) -> str | None:
        """Return ``tmp`` or ``new`` if ``fd`` is a file or directory of the Maildir."""
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return None
        if target == self.maildir / "new":
            return "new"
        if target.parent == self.maildir / "tmp":
            return "tmp"
        return None


def install(pause: PausePoint) -> None:
    """Wrap the os functions that the Maildir sink calls."""
    real_fsync = os.fsync
    real_fdatasync = os.fdatasync
    real_rename = os.rename
    real_write = os.write

    def fsync(fd: Any) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        kind = pause.classify_fd(number)
        point = {"tmp": "fsync-file", "new": "fsync-dir"}.get(kind or "")
        _around(point, lambda: real_fsync(fd))

    def fdatasync(fd: Any) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        point = "fsync-file" if pause.classify_fd(number) == "tmp" else None
        _around(point, lambda: real_fdatasync(fd))

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        into_new = Path(dst).resolve().parent == pause.maildir / "new"
        _around("rename" if into_new else None, lambda: real_rename(src, dst, *args, **kwargs))

    def write(fd: int, data: Any) -> int:
        point = "write" if pause.point == "write" and pause.classify_fd(fd) == "tmp" else None
        result: list[int] = []
        _around(point, lambda: result.append(real_write(fd, data)))
        return result[0]

    def _around(point: str | None, call: Callable[[], object]) -> None:
        if point is not None:
            pause.arrive(point, "before")
        call()
        if point is not None:
            pause.arrive(point, "after")

    os.fsync = fsync
    os.fdatasync = fdatasync
    os.rename = rename
    os.write = write


def main(argv: list[str]) -> int:
    """Arm the pause point from the environment, then run the mailreleased CLI."""
    spec = os.environ.get(ENV)
    if spec:
        point, when, count, maildir = spec.split(":", 3)
        install(PausePoint(point, when, int(count), Path(maildir)))
    from mailreleased.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
