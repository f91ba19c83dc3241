"""A recording SMTP server on loopback that acts as the final mail host.

Peers release held mail to it, and tests wait for the messages to arrive.
It speaks just enough ESMTP for Postfix's and Exim's SMTP clients: EHLO,
HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT, without STARTTLS or AUTH.
"""

from __future__ import annotations

import dataclasses
import socketserver
import threading
import time

from ._process import LOOPBACK, PeerFailed


@dataclasses.dataclass(frozen=True)
class ReceivedMessage:
    """One message as the receiver got it: envelope and unstuffed DATA bytes."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _RecordingServer
    timeout = 30.0

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._reply(f"220 {self.server.hostname} ESMTP recording receiver")
        mail_from: str | None = None
        recipients: list[str] = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            command = line.decode("latin-1").rstrip("\r\n")
            verb = command[:4].upper()
            argument = command[5:] if len(command) > 4 else ""
            if verb == "EHLO":
                self._reply(f"250-{self.server.hostname}")
                self._reply("250-8BITMIME")
                self._reply("250 PIPELINING")
            elif verb == "HELO":
                self._reply(f"250 {self.server.hostname}")
            elif verb == "MAIL":
                mail_from = _address(argument)
                recipients = []
                self._reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail_from is None:
                    self._reply("503 5.5.1 MAIL first")
                    continue
                recipients.append(_address(argument))
                self._reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if mail_from is None or not recipients:
                    self._reply("503 5.5.1 RCPT first")
                    continue
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return
                self.server.record(ReceivedMessage(mail_from, tuple(recipients), data))
                mail_from, recipients = None, []
                self._reply("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                mail_from, recipients = None, []
                self._reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self._reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self._reply("221 2.0.0 Bye")
                return
            else:
                self._reply("502 5.5.2 Command not recognized")

    def _read_data(self) -> bytes | None:
        """Read DATA lines up to the lone dot and undo dot-stuffing."""
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)


def _address(argument: str) -> str:
    """Extract the address between angle brackets of a MAIL FROM/RCPT TO argument."""
    start = argument.find("<")
    end = argument.find(">", start + 1)
    if start == -1 or end == -1:
        return argument.split(":", 1)[-1].strip()
    return argument[start + 1 : end]


class _RecordingServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hostname: str) -> None:
        super().__init__(address, _SmtpHandler)
        self.hostname = hostname
        self.messages: list[ReceivedMessage] = []
        self.arrived = threading.Condition()

    def record(self, message: ReceivedMessage) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()


class RecordingReceiver:
    """A threaded SMTP server on ``127.0.0.1:port`` that records every message.

    Construct it with the port that a peer's transport points at, call
    ``start()``, and ``stop()`` when done (the fixture does both).
    """

    def __init__(self, port: int, hostname: str = "receiver.test") -> None:
        self.port = port
        self.hostname = hostname
        self._server: _RecordingServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the port and start serving in a background thread."""
        self._server = _RecordingServer((LOOPBACK, self.port), self.hostname)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = None
        self._thread = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A copy of the messages received so far, in arrival order."""
        if self._server is None:
            return []
        with self._server.arrived:
            return list(self._server.messages)

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived and return them.

        Raises PeerFailed after ``timeout`` seconds, naming how many arrived.
        """
        if self._server is None:
            raise PeerFailed("the receiver is not started")
        deadline = time.monotonic() + timeout
        with self._server.arrived:
            while len(self._server.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerFailed(
                        f"expected {count} messages on port {self.port} within {timeout:.0f}s, "
                        f"got {len(self._server.messages)}"
                    )
                self._server.arrived.wait(remaining)
            return list(self._server.messages)
