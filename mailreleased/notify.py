"""The systemd service notification protocol (sd_notify), spoken directly.

Each notification is one datagram of ``KEY=value`` lines sent to the
AF_UNIX socket named by ``$NOTIFY_SOCKET``. A name starting with ``@`` is in
the abstract namespace. Without ``$NOTIFY_SOCKET`` every call does nothing, so
the daemon behaves the same under Docker or a shell. The protocol is described
in the sd_notify(3) manual page of systemd.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("mailreleased.notify")

# `systemctl status` shows STATUS= on one line, so long summaries are cut.
MAX_STATUS_CHARS = 200


class Notifier:
    """Sends notifications to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self.address is not None

    def send(self, *lines: str) -> None:
        """Send ``KEY=value`` lines as one datagram. A send error is logged once, not raised."""
        if self.address is None:
            return
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("notify_failed", socket=os.fsdecode(self.address), error=str(exc))
                self._failed = True

    def ready(self, status: str | None = None) -> None:
        """Tell the manager that start-up (or a reload) finished."""
        self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> None:
        """Set the one-line status shown by ``systemctl status``."""
        self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        """Tell the manager that a configuration reload began."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        """Tell the manager that the daemon began to stop."""
        self.send("STOPPING=1")

    async def run_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` at half the watchdog interval until cancelled.

        The pings come from the event loop, so a blocked loop misses them and
        systemd restarts the service, which is the point of the watchdog.
        """
        if self.watchdog_interval is None or self.address is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval / 2)


def _socket_address(value: str) -> bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if not value.startswith("/"):
        # sd_notify(3) accepts only absolute paths and abstract names (vsock needs another family).
        log.warning("notify_socket_unsupported", socket=value)
        return None
    return os.fsencode(value)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Return the watchdog interval in seconds if this process is the one watched."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_STATUS_CHARS else line[: MAX_STATUS_CHARS - 3] + "..."
