"""Fuzz the SMTP client with hostile reply streams from a loopback server.

The server answers the greeting and every line the client sends with the
next piece of a generated stream: replies with random codes, continuation
lines, very long lines, binary text, odd line ends, dripped in small writes,
or a close or silence at any point. ``signal_target`` must return records
whose outcomes are in the vocabulary, raise nothing, and finish within a
bound derived from the configured timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailreleased.config.model import Target
from mailreleased.outcome import Outcome
from mailreleased.signal import signal_target

from .profiles import fuzz_settings

FULL_EXAMPLES = 10_000
TIMEOUT = 0.15  # seconds for connect, greeting and each reply
# No example may take longer than this; every wait inside is bounded by TIMEOUT.
HANG_BOUND = 60.0

REAL_CODES = [211, 220, 221, 235, 250, 251, 252, 253, 334, 354, 421, 450, 451, 453, 454, 458, 459,
              500, 501, 502, 503, 504, 530, 534, 535, 538, 550, 554]
EHLO_KEYWORDS = ["STARTTLS", "AUTH PLAIN LOGIN CRAM-MD5", "AUTH=LOGIN", "ETRN", "ATRN", "SIZE 1000",
                 "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "AUTH GSSAPI"]

CLOSE = b"<close>"
SILENT = b"<silent>"


@dataclasses.dataclass(frozen=True)
class Piece:
    """One server turn: bytes to send, split into writes at ``cuts``, or CLOSE or SILENT."""

    data: bytes
    cuts: tuple[int, ...] = ()


codes = st.one_of(st.sampled_from(REAL_CODES), st.integers(0, 999).map(lambda n: f"{n:03d}"), st.text(max_size=4))
texts = st.one_of(
    st.sampled_from(["OK", "fake.test ESMTP", *EHLO_KEYWORDS, "VXNlcm5hbWU6", "PDEyMzQ1QGZha2UudGVzdD4=", ""]),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.integers(500, 20_000).map(lambda n: "x" * n),
)
endings = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r", ""])


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """Draw one reply of 1 to 5 lines with mostly consistent codes."""
    code = str(draw(codes))
    count = draw(st.integers(1, 5))
    lines = []
    for index in range(count):
        line_code = code if draw(st.integers(0, 9)) else str(draw(codes))
        separator = "-" if index < count - 1 else draw(st.sampled_from([" ", " ", "", "-"]))
        lines.append(f"{line_code}{separator}{draw(texts)}{draw(endings)}")
    return "".join(lines).encode("utf-8", "surrogateescape")


@st.composite
def pieces(draw: st.DrawFn) -> Piece:
    """Draw one server turn."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return Piece(CLOSE)
    if kind == 1:
        return Piece(SILENT)
    if kind == 2:
        data = draw(st.binary(min_size=1, max_size=200))
    elif kind == 3:
        data = draw(st.integers(9000, 70_000).map(lambda n: b"250-" + b"y" * n + b"\r\n"))
    else:
        data = draw(replies())
    cuts = tuple(sorted(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    return Piece(data, cuts)


TARGETS: dict[str, dict[str, Any]] = {
    "etrn": {"method": "etrn", "domains": ["example.test", "#queue"], "tls": "opportunistic"},
    "etrn-auth": {
        "method": "etrn",
        "domains": ["example.test"],
        "tls": "off",
        "ehlo": False,
        "auth": {"username": "u", "password": "secret-pw", "mechanisms": ["CRAM-MD5", "PLAIN", "LOGIN"],
                 "allow_plaintext": True},
    },
    "qsnd": {"method": "qsnd", "domains": ["example.test"], "tls": "off"},
    "custom": {"method": "custom", "command": "XQUE {domain}", "domains": ["example.test"], "tls": "starttls"},
    "atrn": {
        "method": "atrn",
        "domains": ["example.test"],
        "tls": "off",
        "auth": {"username": "u", "password": "secret-pw", "mechanisms": ["CRAM-MD5", "PLAIN"], "allow_plaintext": True},
        "delivery": {"type": "command", "argv": ["/bin/true"], "timeout": TIMEOUT},
        "receiver": {"command_timeout": TIMEOUT, "session_timeout": 5},
        "max_sessions": 2,
    },
}


def make_target(kind: str, port: int) -> Target:
    """Build the target of ``kind`` pointing at the fuzz server on ``port``."""
    data = {"name": "fuzz", "host": "127.0.0.1", "port": port,
            "timeouts": {"connect": TIMEOUT, "greeting": TIMEOUT, "reply": TIMEOUT}, **TARGETS[kind]}
    return Target.model_validate(data)


class StreamServer:
    """A server that replies on every connection from one shared sequence of pieces, then closes."""

    def __init__(self, stream: list[Piece]) -> None:
        self._pieces: Iterator[Piece] = iter(stream)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(HANG_BOUND):
                while await self._send_next(reader, writer):
                    line = await reader.readline()
                    if not line:
                        break
        except (OSError, TimeoutError, ValueError):
            pass
        finally:
            writer.transport.abort()

    async def _send_next(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        piece = next(self._pieces, Piece(CLOSE))
        if piece.data == CLOSE:
            return False
        if piece.data == SILENT:
            while await reader.read(65536):
                pass
            return False
        start = 0
        for cut in (*piece.cuts, len(piece.data)):
            writer.write(piece.data[start:cut])
            await writer.drain()
            start = cut
        return True


async def run_stream(kind: str, stream: list[Piece]) -> list[Any]:
    """Serve ``stream`` to a ``kind`` target and return its records."""
    fake = StreamServer(stream)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(HANG_BOUND):
            return await signal_target(make_target(kind, port), run=1)
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


def check_records(records: list[Any]) -> None:
    """Every record has an outcome from the vocabulary and printable reply text."""
    assert records, "no record returned"
    for record in records:
        assert isinstance(record.outcome, Outcome)
        assert record.outcome in set(Outcome)
        if record.reply is not None:
            assert "\r" not in record.reply, record.reply
            assert "\n" not in record.reply, record.reply


GREETING = Piece(b"220 fake.test ESMTP\r\n")
EHLO_TLS = Piece(b"250-fake.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")


@fuzz_settings(FULL_EXAMPLES)
@given(st.sampled_from(list(TARGETS)), st.lists(pieces(), max_size=12))
@example("etrn", [GREETING, EHLO_TLS, Piece(b"220 go\r\n"), Piece(b"\x16\x03\x01garbage")])
@example("etrn", [GREETING, Piece(b"250-" + b"z" * 70_000 + b"\r\n")])
@example("etrn-auth", [GREETING, Piece(b"250 fake\r\n"), Piece(b"530 auth first\r\n"), Piece(b"250-x\r\n250 AUTH LOGIN\r\n"),
                      Piece(b"334 VXNlcm5hbWU6\r\n"), Piece(b"334 UGFzc3dvcmQ6\r\n"), Piece(b"235 ok\r\n")])
@example("atrn", [GREETING, Piece(b"250-x\r\n250 AUTH PLAIN\r\n"), Piece(b"235 ok\r\n"), Piece(b"250 reversing\r\n"),
                  Piece(b"EHLO provider\r\n"), Piece(b"MAIL FROM:<a@b>\r\n"), Piece(b"QUIT\r\n")])
@example("custom", [Piece(b"220-first\n220 second\r\n", (3, 10)), Piece(b"250 ok\r")])
def test_reply_stream_fuzz(kind: str, stream: list[Piece]) -> None:
    """Any reply stream ends in records from the outcome vocabulary, never an exception or a hang."""
    check_records(asyncio.run(run_stream(kind, stream)))


class DripServer:
    """Greets (or not), then sends one reply byte every ``interval`` seconds until the client leaves."""

    def __init__(self, drip_greeting: bool, interval: float, total: int) -> None:
        self.drip_greeting = drip_greeting
        self.interval = interval
        self.total = total
        self.sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self.drip_greeting:
                writer.write(b"220 fake.test ESMTP\r\n")
                await reader.readline()
            writer.write(b"250-")
            for _ in range(self.total):
                await asyncio.sleep(self.interval)
                writer.write(b"x")
                await writer.drain()
                self.sent += 1
        except (OSError, ValueError):
            pass
        finally:
            writer.transport.abort()


@pytest.mark.parametrize("drip_greeting", [True, False], ids=["greeting", "command-reply"])
async def test_slow_drip_times_out(drip_greeting: bool) -> None:
    """A server that drips one byte at a time cannot keep the client past its timeout."""
    drip = DripServer(drip_greeting, interval=0.05, total=1200)
    server = await asyncio.start_server(drip.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(HANG_BOUND):
            records = await signal_target(make_target("qsnd", port), run=1)
    finally:
        server.close()
        await server.wait_closed()

    assert [record.outcome for record in records] == [Outcome.TIMEOUT]
    # The client left while the server still had most of its 1,200 bytes (60 s) to drip.
    assert drip.sent < drip.total // 2, drip.sent
