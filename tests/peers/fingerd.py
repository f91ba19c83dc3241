"""Debian's in.fingerd behind socat on a free loopback port.

socat accepts each connection and runs one in.fingerd per connection with
the socket as its standard input, output and error, the way inetd would.
With the error stream connected, in.fingerd's "no such user" text reaches
the client as well.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from ._process import LOOPBACK, PeerFailed, free_port, require_program, stop_popen, wait_for_port

FINGERD = "/usr/sbin/in.fingerd"
SOCAT = "socat"


class FingerServer:
    """socat listening on ``127.0.0.1:port`` and running in.fingerd per connection."""

    def __init__(self) -> None:
        require_program(FINGERD, "install Debian's fingerd package (.ci/install-peers)")
        self.socat = require_program(SOCAT, "install socat (.ci/install-peers)")
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start socat and wait until the port accepts connections."""
        if not Path(FINGERD).is_file():
            raise PeerFailed(f"{FINGERD} is missing")
        self._process = subprocess.Popen(
            [
                self.socat,
                f"TCP-LISTEN:{self.port},bind={LOOPBACK},reuseaddr,fork",
                f"EXEC:{FINGERD},stderr",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.port)
        except PeerFailed:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop socat by its PID; in.fingerd children exit with their connection."""
        if self._process is not None:
            stop_popen(self._process)
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None

    def query(self, request: str = "", timeout: float = 10.0) -> str:
        """Send one finger request line and return the whole reply text."""
        with socket.create_connection((LOOPBACK, self.port), timeout=timeout) as sock:
            sock.sendall(request.encode("ascii") + b"\r\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode("latin-1")
