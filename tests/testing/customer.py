"""A tiny scripted ODMR customer for provider tests: AUTH, ATRN, then a recording SMTP server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac

from mailreleased.testing.wire import Reply, read_reply

TIMEOUT = 10.0
# Stream buffer for whole messages read with readuntil; large enough for the 1 MB tests.
STREAM_LIMIT = 64 << 20


@dataclasses.dataclass
class Script:
    """How the customer behaves after the turnaround."""

    greeting: bytes = b"220 customer.test ESMTP ready\r\n"
    ehlo_code: int = 250
    pipelining: bool = False
    rcpt_reply: str = "250 OK"
    # Reply line per 0-based message number, sent instead of "250 OK" after DATA.
    data_replies: dict[int, str] = dataclasses.field(default_factory=dict)
    # Close the connection when this many messages have been received (before replying to the last).
    drop_after: int | None = None
    keep_data: bool = True


@dataclasses.dataclass
class Received:
    """One message as the customer got it, dot-stuffing undone."""

    sender: str
    recipients: list[str]
    data: bytes


@dataclasses.dataclass
class CustomerResult:
    """What happened on the customer side."""

    atrn_reply: Reply | None = None
    messages: list[Received] = dataclasses.field(default_factory=list)
    message_count: int = 0
    commands: list[str] = dataclasses.field(default_factory=list)


async def send(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, line: str) -> Reply:
    """Send one command and read the reply."""
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return await read_reply(reader, TIMEOUT)


def cram_md5_response(user: str, password: str, challenge_line: str) -> str:
    """Compute the base64 CRAM-MD5 response to a ``334`` challenge text."""
    challenge = base64.b64decode(challenge_line)
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return base64.b64encode(f"{user} {digest}".encode()).decode()


async def run_customer(
    port: int,
    *,
    user: str = "user",
    password: str = "password",
    atrn_argument: str = "example.test",
    script: Script | None = None,
) -> CustomerResult:
    """Connect as a customer, request the queue with ATRN and receive what the provider sends."""
    script = script or Script()
    result = CustomerResult()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=STREAM_LIMIT)
    try:
        await read_reply(reader, TIMEOUT)
        await send(writer, reader, "EHLO customer.test")
        challenge = await send(writer, reader, "AUTH CRAM-MD5")
        auth = await send(writer, reader, cram_md5_response(user, password, challenge.lines[0]))
        assert auth.code == 235, f"AUTH failed: {auth}"
        command = f"ATRN {atrn_argument}" if atrn_argument else "ATRN"
        result.atrn_reply = await send(writer, reader, command)
        if result.atrn_reply.code == 250:
            await serve_reversed(reader, writer, script, result)
        else:
            await send(writer, reader, "QUIT")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return result


async def serve_reversed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, result: CustomerResult
) -> None:
    """Be the SMTP server on the turned-around connection until QUIT, EOF or a scripted drop."""
    writer.write(script.greeting)
    sender = ""
    recipients: list[str] = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        result.commands.append(line)
        verb = line[:4].upper()
        if verb == "EHLO":
            writer.write(_ehlo_reply(script))
        elif verb == "HELO":
            writer.write(b"250 customer.test\r\n")
        elif verb == "MAIL":
            sender = line.partition(":")[2].split(" ")[0].strip("<>")
            recipients = []
            writer.write(b"250 OK\r\n")
        elif verb == "RCPT":
            if script.rcpt_reply.startswith("250"):
                recipients.append(line.partition(":")[2].strip("<>"))
            writer.write(script.rcpt_reply.encode() + b"\r\n")
        elif verb == "DATA":
            # Always 354, even without valid recipients, as a pipelining server may reply.
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            if not await _receive_data(reader, writer, script, result, sender, recipients):
                return
        elif verb == "QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()


async def _read_until_end_of_data(reader: asyncio.StreamReader, keep: bool) -> bytes:
    """Read up to and including the line holding only "."; return it all, or only the end if not ``keep``."""
    pieces: list[bytes] = []
    tail = b""
    while True:
        piece = await reader.readuntil(b".\r\n")
        if keep:
            pieces.append(piece)
        tail = (tail + piece)[-5:]
        if tail == b".\r\n" or tail.endswith(b"\r\n.\r\n"):
            return b"".join(pieces) if keep else tail


def _ehlo_reply(script: Script) -> bytes:
    if script.ehlo_code != 250:
        return f"{script.ehlo_code} EHLO not supported\r\n".encode()
    pipelining = b"250-PIPELINING\r\n" if script.pipelining else b""
    return b"250-customer.test\r\n" + pipelining + b"250-8BITMIME\r\n250 SIZE 0\r\n"


async def _receive_data(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    script: Script,
    result: CustomerResult,
    sender: str,
    recipients: list[str],
) -> bool:
    """Read one message; return False when the script drops the connection."""
    try:
        stuffed = await asyncio.wait_for(_read_until_end_of_data(reader, script.keep_data), TIMEOUT)
    except asyncio.IncompleteReadError:
        return False
    if stuffed == b".\r\n":
        writer.write(b"554 5.5.1 no valid recipients\r\n")
        return True
    number = result.message_count
    result.message_count += 1
    if script.drop_after is not None and result.message_count >= script.drop_after:
        writer.transport.abort()
        return False
    if script.keep_data:
        body = stuffed[: -len(b".\r\n")]
        if body.startswith(b".."):
            body = body[1:]
        result.messages.append(Received(sender, recipients, body.replace(b"\r\n..", b"\r\n.")))
    writer.write(script.data_replies.get(number, "250 OK").encode() + b"\r\n")
    return True
