"""A minimal ODMR (RFC 2645) customer used to check the Exim provider by itself.

It is independent of mailreleased on purpose: the interop self-checks use it
to prove that the peer works, so that a failing product test points at
the product. It records a transcript of every line, with "C:" for what
the customer sent and "S:" for what the provider sent.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import socket
import ssl
from pathlib import Path

from ._process import LOOPBACK
from .receiver import ReceivedMessage


@dataclasses.dataclass
class OdmrSession:
    """What one ATRN session produced."""

    atrn_reply: str = ""
    messages: list[ReceivedMessage] = dataclasses.field(default_factory=list)
    transcript: list[str] = dataclasses.field(default_factory=list)
    ended_with_quit: bool = False
    error: str | None = None


class _Line:
    def __init__(self, sock: socket.socket, session: OdmrSession) -> None:
        self.sock = sock
        self.buffer = b""
        self.session = session

    def read(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the provider closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_reply(self) -> list[str]:
        lines = []
        while True:
            line = self.read().decode("latin-1")
            self.session.transcript.append(f"S: {line}")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def send(self, text: str, log: str | None = None) -> None:
        self.session.transcript.append(f"C: {log if log is not None else text}")
        self.sock.sendall(text.encode("latin-1") + b"\r\n")


def run_odmr_session(
    port: int,
    *,
    username: str,
    password: str,
    domain: str | None,
    mechanism: str = "PLAIN",
    starttls_cafile: Path | None = None,
    timeout: float = 30.0,
) -> OdmrSession:
    """Authenticate, send ATRN and accept every message the provider delivers.

    ``mechanism`` is PLAIN, CRAM-MD5 or NONE (skip AUTH). With
    ``starttls_cafile`` the session upgrades with STARTTLS first and
    verifies the provider against that CA file. Errors after the
    greeting are stored in ``error`` rather than raised.
    """
    session = OdmrSession()
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    line = _Line(sock, session)
    try:
        line.read_reply()
        line.send("EHLO customer.test")
        line.read_reply()
        if starttls_cafile is not None:
            line.send("STARTTLS")
            line.read_reply()
            context = ssl.create_default_context(cafile=str(starttls_cafile))
            tls_sock = context.wrap_socket(sock, server_hostname=LOOPBACK)
            line.sock = tls_sock
            cipher = tls_sock.cipher()
            session.transcript.append(f"-- TLS {tls_sock.version()} {cipher[0] if cipher else 'none'}")
            line.send("EHLO customer.test")
            line.read_reply()
        _authenticate(line, mechanism, username, password)
        line.send(f"ATRN {domain}" if domain else "ATRN")
        session.atrn_reply = line.read_reply()[-1]
        if not session.atrn_reply.startswith("250"):
            line.send("QUIT")
            line.read_reply()
            return session
        line.send("220 customer.test ODMR customer ready")
        _serve_reversed(line, session)
    except (OSError, EOFError, ssl.SSLError) as exc:
        session.error = f"{type(exc).__name__}: {exc}"
    finally:
        line.sock.close()
    return session


def _authenticate(line: _Line, mechanism: str, username: str, password: str) -> None:
    if mechanism == "PLAIN":
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        line.send(f"AUTH PLAIN {token}", log="AUTH PLAIN <credentials>")
        line.read_reply()
    elif mechanism == "CRAM-MD5":
        line.send("AUTH CRAM-MD5")
        challenge = base64.b64decode(line.read_reply()[-1][4:])
        digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
        line.send(base64.b64encode(f"{username} {digest}".encode()).decode(), log="<CRAM-MD5 response>")
        line.read_reply()
    elif mechanism != "NONE":
        raise ValueError(f"unsupported mechanism {mechanism!r}; use PLAIN, CRAM-MD5 or NONE")


def _serve_reversed(line: _Line, session: OdmrSession) -> None:
    """Act as the SMTP server after the line was turned around, until QUIT."""
    mail_from = ""
    recipients: list[str] = []
    while True:
        command = line.read().decode("latin-1")
        session.transcript.append(f"S: {command}")
        verb = command[:4].upper()
        if verb in ("EHLO", "HELO"):
            line.send("250-customer.test")
            line.send("250 8BITMIME")
        elif verb == "MAIL":
            mail_from = command.split(":", 1)[1].split(">")[0].lstrip(" <")
            recipients = []
            line.send("250 2.1.0 ok")
        elif verb == "RCPT":
            recipients.append(command.split(":", 1)[1].split(">")[0].lstrip(" <"))
            line.send("250 2.1.5 ok")
        elif verb == "DATA":
            line.send("354 go ahead")
            data = []
            while (body_line := line.read()) != b".":
                data.append((body_line[1:] if body_line.startswith(b".") else body_line) + b"\r\n")
            session.transcript.append(f"S: <{len(data)} lines of message data> .")
            session.messages.append(ReceivedMessage(mail_from, tuple(recipients), b"".join(data)))
            line.send("250 2.0.0 accepted")
        elif verb == "QUIT":
            line.send("221 2.0.0 bye")
            session.ended_with_quit = True
            return
        elif verb in ("RSET", "NOOP"):
            line.send("250 2.0.0 ok")
        else:
            line.send("502 5.5.2 not implemented")
