"""QSND, custom commands, FINGER and connect pokes against loopback fakes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailreleased.config.model import Method, Target
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.signal import LAZY_TARGET_SIGNALERS, signal_target
from mailreleased.signal.smtp_methods import release_commands
from mailreleased.signal.telnet import DO, DONT, IAC, SB, SE, WILL, WONT, TelnetRefuser
from tests.fakes.smtp import FakeSmtpServer, Script, Step
from tests.fakes.targets import closed_port, make_target
from tests.fakes.tcp import FakeTcpServer


async def test_qsnd_sends_no_ehlo_by_default() -> None:
    """QSND goes straight after the greeting, once per domain."""
    steps = (Step("QSND a.example", "250 OK"), Step("QSND b.example", "251 nothing"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        target = make_target(server.port, method="qsnd", domains=["a.example", "b.example"])
        records = await signal_target(target)
    assert [r.outcome for r in records] == [Outcome.RELEASED, Outcome.RELEASED]
    assert server.connections[0].lines == ["QSND a.example", "QSND b.example", "QUIT"]


async def test_qsnd_unknown_verb_is_unsupported() -> None:
    """A 500 to QSND: unsupported."""
    steps = (Step("QSND", "500 5.5.2 Error: command not recognized"),)
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, method="qsnd"))
    assert records[0].outcome is Outcome.UNSUPPORTED


async def test_custom_command_per_domain() -> None:
    """A custom command with {domain} is sent once per domain."""
    steps = (Step("XQUEUE a.example", "250 OK"), Step("XQUEUE b.example", "550 no"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        target = make_target(
            server.port, method="custom", command="XQUEUE {domain}", domains=["a.example", "b.example"]
        )
        records = await signal_target(target)
    assert [r.outcome for r in records] == [Outcome.RELEASED, Outcome.REFUSED]
    assert [r.domain for r in records] == ["a.example", "b.example"]


async def test_custom_command_once_with_ehlo() -> None:
    """A custom command without {domain} goes out once, after EHLO when enabled."""
    steps = (Step("EHLO", "250 fake.test"), Step("TURNME", "250 started"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        target = make_target(server.port, method="custom", command="TURNME", domains=[], ehlo=True)
        records = await signal_target(target)
    assert len(records) == 1
    assert records[0].domain is None
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].lines == ["EHLO client.test", "TURNME", "QUIT"]


async def test_custom_empty_command_connects_only() -> None:
    """command "" only connects and quits, and counts as released."""
    async with FakeSmtpServer(Script()) as server:
        records = await signal_target(make_target(server.port, method="custom", command="", domains=[]))
    assert records[0].outcome is Outcome.RELEASED
    assert records[0].code == 220
    assert server.connections[0].lines == ["QUIT"]


def test_release_commands_forms() -> None:
    """Verbs, templates and the empty command produce the expected lines."""
    etrn = make_target(25, domains=["a.example", "#q"])
    assert release_commands(etrn) == [("a.example", "ETRN a.example"), ("#q", "ETRN #q")]
    template = make_target(25, command="ETRN @{domain}", domains=["a.example"])
    assert release_commands(template) == [("a.example", "ETRN @a.example")]
    assert release_commands(make_target(25, method="custom", command="", domains=[])) == []


async def finger_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    query = await reader.readline()
    writer.write(b"query was " + repr(query).encode() + b"\r\n\x1b[31mFinger online list denied\r\n")
    await writer.drain()


async def test_finger_empty_query() -> None:
    """FINGER sends a bare CRLF and records the sanitized response."""
    async with FakeTcpServer(finger_handler) as server:
        records = await signal_target(make_target(server.port, method="finger", domains=[]))
    assert records[0].outcome is Outcome.RELEASED
    assert records[0].reply == "query was b'\\r\\n' | ?[31mFinger online list denied"


async def test_finger_user_query() -> None:
    """The configured command is the query line."""
    async with FakeTcpServer(finger_handler) as server:
        records = await signal_target(make_target(server.port, method="finger", command="alice", domains=[]))
    assert records[0].reply is not None
    assert records[0].reply.startswith("query was b'alice\\r\\n'")


async def test_finger_close_without_data() -> None:
    """A server that closes without a response still counts as released."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()

    async with FakeTcpServer(silent) as server:
        records = await signal_target(make_target(server.port, method="finger", domains=[]))
    assert records[0].outcome is Outcome.RELEASED
    assert records[0].reply == ""


async def test_finger_no_answer_times_out() -> None:
    """No data and no close within the reply timeout: timeout."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with FakeTcpServer(mute) as server:
        target = make_target(
            server.port, method="finger", domains=[], timeouts={"connect": 5, "greeting": 5, "reply": 0.2}
        )
        records = await signal_target(target)
    assert records[0].outcome is Outcome.TIMEOUT


async def test_finger_connect_failed() -> None:
    """Nothing listening: connect_failed."""
    records = await signal_target(make_target(closed_port(), method="finger", domains=[]))
    assert records[0].outcome is Outcome.CONNECT_FAILED


TELNET_REQUESTS = bytes((IAC, DO, 24, IAC, DO, 32, IAC, WILL, 1, IAC, DONT, 5, IAC, WONT, 6))
TELNET_ANSWERS = bytes((IAC, WONT, 24, IAC, WONT, 32, IAC, DONT, 1))


async def test_connect_poke_refuses_telnet_options() -> None:
    """A telnet daemon's DO and WILL requests get WONT and DONT; WONT and DONT get nothing."""
    received = bytearray()
    lines: list[bytes] = []

    async def telnetd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append(await reader.readline())
        writer.write(TELNET_REQUESTS)
        await writer.drain()
        async with asyncio.timeout(5):
            received.extend(await reader.readexactly(len(TELNET_ANSWERS)))

    async with FakeTcpServer(telnetd) as server:
        target = make_target(server.port, method="connect", command="hello", domains=[], hold=30)
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert lines == [b"hello\r\n"]
    assert bytes(received) == TELNET_ANSWERS
    assert server.errors == []


async def test_connect_poke_without_hold() -> None:
    """hold 0 and no command: connect, close, released."""
    got: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read())

    async with FakeTcpServer(listener) as server:
        records = await signal_target(make_target(server.port, method="connect", domains=[]))
    assert records[0].outcome is Outcome.RELEASED
    assert got == [b""]


async def test_connect_poke_connect_failed() -> None:
    """Nothing listening: connect_failed."""
    records = await signal_target(make_target(closed_port(), method="connect", domains=[]))
    assert records[0].outcome is Outcome.CONNECT_FAILED


@pytest.mark.parametrize(
    ("received", "answer", "data_bytes"),
    [
        pytest.param(bytes((IAC, DO, 24)), bytes((IAC, WONT, 24)), 0, id="do-gets-wont"),
        pytest.param(bytes((IAC, WILL, 1)), bytes((IAC, DONT, 1)), 0, id="will-gets-dont"),
        pytest.param(bytes((IAC, WONT, 1, IAC, DONT, 3)), b"", 0, id="wont-dont-unanswered"),
        pytest.param(bytes((IAC, IAC)), b"", 1, id="iac-iac-is-data"),
        pytest.param(bytes((IAC, SB, 24, 1, IAC, SE)) + b"ok", b"", 2, id="subnegotiation-skipped"),
        pytest.param(bytes((IAC, SB, 24, IAC, IAC, 7, IAC, SE, IAC, DO, 3)), bytes((IAC, WONT, 3)), 0, id="iac-inside-sb"),
        pytest.param(b"login: ", b"", 7, id="plain-data"),
    ],
)
def test_telnet_refuser(received: bytes, answer: bytes, data_bytes: int) -> None:
    """Each negotiation form gets the refusal RFC 854 allows, or none."""
    refuser = TelnetRefuser()
    assert refuser.feed(received) == answer
    assert refuser.data_bytes == data_bytes


def test_telnet_refuser_split_chunks() -> None:
    """A request split across reads still gets one refusal."""
    refuser = TelnetRefuser()
    assert refuser.feed(bytes((IAC,))) == b""
    assert refuser.feed(bytes((DO,))) == b""
    assert refuser.feed(bytes((24,))) == bytes((IAC, WONT, 24))


def atrn_target() -> Target:
    return make_target(
        366,
        method="atrn",
        auth={"username": "user", "password": "pw"},
        delivery={"type": "maildir", "path": "/nonexistent/Maildir"},
    )


async def test_atrn_missing_signaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ATRN implementation that cannot be imported yields one protocol_error record."""
    monkeypatch.setitem(LAZY_TARGET_SIGNALERS, Method.ATRN, "mailreleased.no_such_module:run_atrn")
    records = await signal_target(atrn_target(), run=2)
    assert len(records) == 1
    assert records[0].outcome is Outcome.PROTOCOL_ERROR
    assert records[0].run == 2
    assert records[0].detail is not None and "cannot be imported" in records[0].detail


async def test_atrn_dispatch_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ATRN entry is imported when used and called with the target and run."""
    monkeypatch.setitem(LAZY_TARGET_SIGNALERS, Method.ATRN, f"{__name__}:fake_run_atrn")
    records = await signal_target(atrn_target(), run=5)
    assert records == [FAKE_ATRN_RECORD]


FAKE_ATRN_RECORD = SignalRecord("fake", "atrn", "127.0.0.1", 366, None, Outcome.NO_MAIL, run=5)


async def fake_run_atrn(target: Target, *, run: int | None) -> list[SignalRecord]:
    assert run == 5
    return [FAKE_ATRN_RECORD]


@given(stream=st.binary(max_size=200), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_telnet_refuser_chunking_invariant(stream: bytes, cuts: list[int]) -> None:
    """Any split of the same byte stream produces the same refusals."""
    whole = TelnetRefuser().feed(stream)
    refuser = TelnetRefuser()
    pieces = []
    start = 0
    for cut in sorted(min(cut, len(stream)) for cut in cuts):
        pieces.append(refuser.feed(stream[start:cut]))
        start = cut
    pieces.append(refuser.feed(stream[start:]))
    assert b"".join(pieces) == whole
