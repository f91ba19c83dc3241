"""Test messages and SMTP injection into a peer's listening port."""

from __future__ import annotations

import smtplib

from ._process import LOOPBACK


def make_message(index: int, recipient: str, sender: str = "sender@origin.test") -> bytes:
    """Build a small RFC 5322 message with CRLF line ends and a unique body.

    The body has a line that starts with a dot, so dot-stuffing on every hop
    is exercised, and a long line of printable bytes.
    """
    lines = [
        f"From: <{sender}>",
        f"To: <{recipient}>",
        f"Subject: interop message {index}",
        f"Message-ID: <interop-{index}@origin.test>",
        "",
        f"Body of interop message {index}.",
        ".a line that starts with a dot",
        "x" * 200 + f" {index}",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def send_messages(
    port: int,
    messages: list[tuple[str, bytes]],
    *,
    sender: str = "sender@origin.test",
    helo_name: str = "injector.test",
    timeout: float = 30.0,
) -> None:
    """Submit ``(recipient, message)`` pairs over one SMTP session to ``127.0.0.1:port``.

    Raises smtplib.SMTPException if the peer rejects any of them.
    """
    with smtplib.SMTP(LOOPBACK, port, local_hostname=helo_name, timeout=timeout) as client:
        client.ehlo()
        for recipient, message in messages:
            client.sendmail(sender, [recipient], message)
