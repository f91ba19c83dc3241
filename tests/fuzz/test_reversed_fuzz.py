"""Fuzz the receiver of the reversed ATRN session with hostile command streams.

A loopback client plays a provider that sends generated commands, message
bodies and raw bytes, pipelined and cut at random points. Every byte the
receiver sends back must form syntactically valid SMTP replies
(``NNN[ -]text CRLF``, one code per reply, at most 512 octets a line), the
session must end with a result and no exception, and memory must stay
bounded even for huge lines and bodies.
"""

from __future__ import annotations

import asyncio
import re
import tracemalloc
from collections.abc import AsyncIterator

from hypothesis import example, given
from hypothesis import strategies as st

from mailreleased.config.model import ReceiverLimits
from mailreleased.odmr.receiver import SessionResult, serve_reversed
from mailreleased.odmr.sinks.base import ACCEPTED, DeliveryResult, Envelope, Sink

from .profiles import fuzz_settings

FULL_EXAMPLES = 10_000
DOMAIN = "example.test"
LIMITS = ReceiverLimits(
    max_message_size=64 * 1024,
    max_recipients=5,
    command_timeout=0.3,
    session_timeout=20,
    max_line_length=1024,
    max_commands=200,
    max_errors=10,
)
# No session may take longer than this; every wait inside is bounded by LIMITS.
HANG_BOUND = 60.0
REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])([\x20-\x7e]*)$")


class CountingSink(Sink):
    """A sink that reads each body to its end, keeps only its size, and accepts it."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        size = 0
        async for chunk in body:
            size += len(chunk)
        self.sizes.append(size)
        return ACCEPTED


addresses = st.one_of(
    st.sampled_from([f"user@{DOMAIN}", f"u@sub.{DOMAIN}", "x@other.test", "", "no-domain", f'"q\\"x"@{DOMAIN}',
                     f"@route,@r2:user@{DOMAIN}", f"-opt@{DOMAIN}", f"USER@{DOMAIN.upper()}."]),
    st.text(max_size=30),
)
parameters = st.sampled_from(["", " SIZE=100", " SIZE=99999999999", " SIZE=x", " BODY=8BITMIME", " BODY=BINARYMIME",
                              " SMTPUTF8", " FOO=bar", " SIZE", " =x"])
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"Subject: hi\r\n\r\nbody\r\n", b".\r\n", b"..\r\n.\r\n", b"a\n.\nb", b"\r\n.\r", b"x" * 70_000]),
)


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    """Draw one command, body, or run of raw bytes as the provider would send it."""
    kind = draw(st.integers(0, 15))
    ending = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]))
    if kind == 0:
        return b"EHLO " + draw(st.sampled_from([b"provider.test", b"AutoTURN", b"", b"\xff\xfe", b"a" * 2000])) + ending
    if kind == 1:
        return b"HELO provider.test" + ending
    if kind == 2:
        return f"MAIL FROM:<{draw(addresses)}>{draw(parameters)}".encode("utf-8", "surrogateescape") + ending
    if kind in (3, 4):
        return f"RCPT TO:<{draw(addresses)}>{draw(st.sampled_from(['', ' NOTIFY=NEVER']))}".encode(
            "utf-8", "surrogateescape") + ending
    if kind == 5:
        return b"DATA" + ending + draw(bodies) + draw(st.sampled_from([b"\r\n.\r\n", b".\r\n", b""]))
    if kind == 6:
        return draw(st.sampled_from([b"RSET", b"NOOP", b"VRFY x", b"QUIT", b"BDAT 10 LAST", b"STARTTLS", b"AUTH PLAIN",
                                     b"ETRN x", b"TURN", b"HELP", b"DATA x", b"mail from:<a@example.test>"])) + ending
    if kind == 7:
        return draw(st.binary(max_size=100))
    if kind == 8:
        return b"X" * draw(st.integers(1000, 200_000)) + ending
    if kind == 9:
        return draw(st.text(max_size=40)).encode("utf-8", "surrogateescape") + ending
    # The rest build a plausible transaction, so that the deeper states are reached often.
    recipient = draw(st.sampled_from([f"user@{DOMAIN}", "x@other.test"]))
    return (b"MAIL FROM:<s@origin.test>\r\nRCPT TO:<" + recipient.encode() + b">\r\nDATA\r\n"
            + draw(bodies) + b"\r\n.\r\n")


async def run_session(data: bytes, cuts: list[int]) -> tuple[SessionResult, bytes]:
    """Play ``data`` against the receiver; return its result and every byte it sent."""
    result: list[SessionResult] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result.append(await serve_reversed(reader, writer, sink=CountingSink(), server_name="customer.test",
                                               domains=(DOMAIN,), limits=LIMITS))
            # Read the client's remaining bytes before closing, because closing a socket with
            # unread input sends RST, which can discard replies the client has not read yet.
            async with asyncio.timeout(HANG_BOUND):
                while await reader.read(65536):
                    pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(HANG_BOUND):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            received = asyncio.create_task(read_all(reader))
            view = memoryview(data)
            start = 0
            try:
                for cut in (*sorted(c % (len(data) + 1) for c in cuts), len(data)):
                    # Writes of at most 64 KiB keep the client's own buffers out of the memory figure.
                    for piece in range(start, cut, 65536):
                        writer.write(view[piece : min(piece + 65536, cut)])
                        await writer.drain()
                    start = cut
                writer.write_eof()
            except OSError:
                pass  # the receiver closed first, which it may do at any limit
            replies = await received
            writer.close()
            while not result:
                await asyncio.sleep(0)  # let the server task finish; HANG_BOUND bounds this loop
    finally:
        server.close()
        await server.wait_closed()
    return result[0], replies


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Read until EOF or a connection reset; return what arrived."""
    data = bytearray()
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


def check_replies(data: bytes) -> None:
    """Assert that ``data`` is a sequence of complete, well-formed SMTP replies."""
    assert data.startswith(b"220 "), data[:80]
    assert data.endswith(b"\r\n"), data[-80:]
    lines = data[:-2].split(b"\r\n")
    open_code: bytes | None = None
    for line in lines:
        assert len(line) + 2 <= 512, line[:80]
        match = REPLY_LINE.match(line)
        assert match is not None, line[:120]
        code, separator = match.group(1), match.group(2)
        if open_code is not None:
            assert code == open_code, (open_code, line[:80])
        open_code = code if separator == b"-" else None
    assert open_code is None, "the last reply is not finished"


@fuzz_settings(FULL_EXAMPLES)
@given(st.lists(commands(), max_size=15), st.lists(st.integers(0, 10**6), max_size=5))
@example([b"EHLO p\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", b"x" * 70_000,
          b"\r\n.\r\n", b"QUIT\r\n"], [])
@example([b"EHLO p\r\n", b"X" * 200_000 + b"\r\n", b"QUIT\r\n"], [7, 5000])
@example([b"EHLO p\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<x@other.test>\r\n", b"DATA\r\n", b"QUIT\r\n"], [])
@example([b"\xff\xfe\r\n" * 12], [])
@example([b"EHLO p\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"], [1, 2, 3])
def test_reversed_session_fuzz(stream: list[bytes], cuts: list[int]) -> None:
    """Every reply is valid SMTP and the session ends with a result."""
    result, replies = asyncio.run(run_session(b"".join(stream), cuts))
    assert isinstance(result, SessionResult)
    check_replies(replies)


def test_reversed_session_memory_bounded() -> None:
    """Huge lines and bodies do not grow memory past a few read buffers."""
    data = b"".join([b"EHLO p\r\n", b"Y" * 5_000_000 + b"\r\n", b"MAIL FROM:<a@b.test>\r\n",
                     b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", b"z" * 5_000_000, b"\r\n.\r\n", b"QUIT\r\n"])
    tracemalloc.start()
    try:
        result, replies = asyncio.run(run_session(data, []))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check_replies(replies)
    assert b"500 5.5.6" in replies
    assert b"552 5.3.4" in replies
    assert result.clean
    # 10 MB went through; the receiver may hold a few 256 KiB reads and the 64 KiB limit at once.
    assert peak < 4 * 1024 * 1024, peak
