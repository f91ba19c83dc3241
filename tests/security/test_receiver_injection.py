"""Hostile input after the ATRN reversal: trace header injection, foreign domains, shell use.

The provider controls the EHLO name, envelope addresses and bodies it sends
after the turnaround. None of it may add a header of its own, reach a
recipient outside the configured domains, or reach a shell.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailreleased.config.model import CommandDelivery, ReceiverLimits
from mailreleased.odmr.receiver import serve_reversed
from mailreleased.odmr.sinks.base import ACCEPTED, DeliveryResult, Envelope, Sink
from mailreleased.odmr.sinks.command import CommandSink
from mailreleased.odmr.trace import received_header

DOMAIN = "example.test"
LIMITS = ReceiverLimits(command_timeout=5, session_timeout=30)
SESSION_BOUND = 30.0


class StoringSink(Sink):
    """Keeps every delivered message in memory."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        data = b"".join([chunk async for chunk in body])
        self.messages.append((envelope, data))
        return ACCEPTED


async def converse(lines: list[bytes], sink: Sink, domains: tuple[str, ...] = (DOMAIN,)) -> list[str]:
    """Send ``lines`` one at a time to a reversed session; return the reply to each, greeting first."""
    replies: list[str] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve_reversed(reader, writer, sink=sink, server_name="customer.test", domains=domains, limits=LIMITS)
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with asyncio.timeout(SESSION_BOUND):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies.append(await read_reply(reader))
        for line in lines:
            writer.write(line)
            await writer.drain()
            if line.endswith(b"\r\n") and not line.startswith(b"Subject") and line != b"body\r\n":
                replies.append(await read_reply(reader))
        writer.close()
        await done.wait()
    server.close()
    await server.wait_closed()
    return replies


async def read_reply(reader: asyncio.StreamReader) -> str:
    """Read one possibly multi-line reply and return its last line."""
    while True:
        line = (await reader.readline()).decode()
        if line[3:4] != "-":
            return line.rstrip("\r\n")


def transaction(helo: bytes, recipient: bytes, body: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> list[bytes]:
    """One session: EHLO, MAIL, RCPT, DATA with ``body`` and QUIT, command by command."""
    return [b"EHLO " + helo + b"\r\n", b"MAIL FROM:<sender@origin.test>\r\n", b"RCPT TO:<" + recipient + b">\r\n",
            b"DATA\r\n", body + b".\r\n", b"QUIT\r\n"]


@pytest.mark.parametrize("helo", [b"evil.test\x0bBcc:x", b"evil\x0cX-Injected:1", b"a\x00b"], ids=["VT", "FF", "NUL"])
async def test_control_bytes_in_ehlo_rejected(helo: bytes) -> None:
    """An EHLO name with control bytes gets 500, so it never reaches a header."""
    sink = StoringSink()
    replies = await converse(transaction(helo, b"user@example.test"), sink)

    assert replies[1].startswith("500"), replies
    assert sink.messages == []


@pytest.mark.parametrize(
    "helo",
    [b"a(b)c;d<e>f\\g", b"\xc3\xa9vil.test", b"x" * 3000, b"evil.test\tX-Injected:1"],
    ids=["comment-chars", "utf8", "long", "tab"],
)
async def test_received_header_not_injectable(helo: bytes) -> None:
    """The provider's EHLO name cannot add a header or break the Received header."""
    sink = StoringSink()
    await converse(transaction(helo, b"user@example.test"), sink)

    assert len(sink.messages) == 1
    data = sink.messages[0][1]
    header_block, _, _ = data.partition(b"\r\n\r\n")
    lines = header_block.split(b"\r\n")
    received = [line for line in lines if line.startswith(b"Received:") or line.startswith(b"\t")]
    others = [line for line in lines if line not in received]
    assert others == [b"Subject: hi"], lines
    for line in received:
        assert all(0x20 <= byte < 0x7F or byte == 0x09 for byte in line), line
    parsed = email.message_from_bytes(data)
    assert parsed.get_all("X-Injected") is None
    assert parsed.get_all("Bcc") is None
    assert len(parsed.get_all("Received") or []) == 1


def test_received_header_sanitizes_every_field() -> None:
    """Every value in the trace header is cut to visible ASCII without comment syntax."""
    header = received_header(
        client_name="a\r\nX-Evil: 1", client_address="1.2.3.4)\r\n(", server_name="me\nX: y",
        protocol="ESMTP", message_id="id\r\nBcc: z", recipients=("u@example.test>\r\nX-Evil: 2",),
    )
    lines = header.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[0].startswith(b"Received: ")
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    assert b"X-Evil:" not in header.replace(b"_X-Evil:", b"")


@pytest.mark.parametrize(
    "recipient",
    [b"user@other.test", b"user@example.test.evil.test", b"user@evilexample.test", b"user@[127.0.0.1]",
     b"user@example.tes", b"@example.test:user@other.test"],
)
async def test_foreign_recipient_rejected(recipient: bytes) -> None:
    """RCPT outside the configured domains gets 550 and no message is stored."""
    sink = StoringSink()
    replies = await converse(transaction(b"provider.test", recipient), sink)

    assert replies[3].startswith("550"), replies
    assert sink.messages == []


@pytest.mark.parametrize("recipient", [b"user@example.test", b"user@EXAMPLE.TEST", b"user@sub.example.test"])
async def test_own_recipient_accepted(recipient: bytes) -> None:
    """RCPT in a configured domain or its subdomain is accepted and stored."""
    sink = StoringSink()
    replies = await converse(transaction(b"provider.test", recipient), sink)

    assert replies[3].startswith("250"), replies
    assert len(sink.messages) == 1


SHELL_PAYLOADS = ["$(touch {marker})", "`touch {marker}`", "x;touch {marker}", "x|touch {marker}", "x&&touch {marker}"]


@pytest.mark.parametrize("payload", SHELL_PAYLOADS)
async def test_command_sink_runs_no_shell(payload: str, tmp_path: Path) -> None:
    """Shell syntax in the sender and recipients reaches the program as literal argv items."""
    marker = tmp_path / "pwned"
    record = tmp_path / "argv.json"
    script = "import json, sys; sys.stdin.buffer.read(); json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    sink = CommandSink(CommandDelivery(type="command", argv=(sys.executable, "-c", script, str(record),
                                                            "{sender}", "{recipients}")))
    local = payload.format(marker=marker).replace(" ", "${IFS}")
    envelope = Envelope(sender=f"{local}@origin.test", recipients=(f"{local}@example.test",), message_id="m1")

    async def body() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\nbody\r\n"

    result = await sink.deliver(envelope, body())

    assert result.ok, result
    assert json.loads(record.read_text()) == [str(record), envelope.sender, envelope.recipients[0]]
    assert not marker.exists()


async def test_control_socket_mode_0660(tmp_path: Path) -> None:
    """The control socket is created with mode 0660, whatever the process umask."""
    from mailreleased.control import ControlServer

    async def handler(request: dict[str, object]) -> dict[str, object]:
        return {"ok": True}

    path = tmp_path / "run" / "control.sock"
    old = os.umask(0)
    try:
        server = ControlServer(path, handler)
        await server.start()
    finally:
        os.umask(old)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert mode == 0o660, oct(mode)
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o007 == 0, oct(path.parent.stat().st_mode)
    finally:
        await server.close()
