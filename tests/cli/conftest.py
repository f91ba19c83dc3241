"""Helpers for CLI tests: run the real ``mailreleased`` entry point as a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

COMMAND_TIMEOUT = 60


def run_cli(*args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mailreleased ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mailreleased", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ConnectionCounter:
    """A loopback TCP listener that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self.event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            self.event.set()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    listener = ConnectionCounter()
    yield listener
    listener.close()


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path
