"""ClientSession details the ATRN side relies on: detach, HELO names, plain commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome
from mailreleased.smtp import open_session
from mailreleased.smtp import helo as helo_module
from tests.fakes.smtp import FakeSmtpServer, Script, StartTls, Step, make_tls
from tests.fakes.targets import make_target

EHLO_ATRN = "250-fake.test\n250 ATRN"
# The provider's reply and its first reversed-role line in one segment.
ATRN_WITH_QUIT = b"250 OK now reversing the connection\r\nQUIT\r\n"


async def test_detach_keeps_buffered_bytes() -> None:
    """Bytes that came with the ATRN reply are the first thing the detached reader returns."""
    script = Script(steps=(Step("EHLO", EHLO_ATRN), Step("ATRN", ATRN_WITH_QUIT), Step("221", b"")))
    async with FakeSmtpServer(script) as server:
        session = await open_session(make_target(server.port, method="etrn"), "127.0.0.1")
        reply = await session.command("ATRN example.org")
        reader, writer = session.detach()
        async with asyncio.timeout(5):
            line = await reader.readline()
            writer.write(b"221 2.0.0 bye\r\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
    assert reply.code == 250
    assert line == b"QUIT\r\n"
    assert server.connections[0].lines[-1] == "221 2.0.0 bye"


async def test_detach_over_tls(tmp_path: Path) -> None:
    """Detached streams keep using the session's TLS connection."""
    tls = make_tls(tmp_path)
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 STARTTLS"),
            Step("STARTTLS", StartTls()),
            Step("EHLO", EHLO_ATRN),
            Step("ATRN", ATRN_WITH_QUIT),
            Step("221", b""),
        )
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(server.port, tls="starttls", tls_ca_file=str(tls.ca_file))
        session = await open_session(target, "127.0.0.1")
        assert session.tls_active is True
        await session.command("ATRN example.org")
        reader, writer = session.detach()
        async with asyncio.timeout(5):
            line = await reader.readline()
            writer.write(b"221 2.0.0 bye\r\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
    assert line == b"QUIT\r\n"
    assert writer.get_extra_info("sslcontext") is not None
    assert server.connections[0].tls is True
    assert server.connections[0].lines[-1] == "221 2.0.0 bye"


async def test_capabilities_parse_both_auth_forms() -> None:
    """AUTH and AUTH= lines are merged into one mechanism list."""
    ehlo = "250-fake.test\n250-AUTH LOGIN PLAIN\n250-AUTH=CRAM-MD5 LOGIN\n250 ATRN"
    async with FakeSmtpServer(Script(steps=(Step("EHLO", ehlo),))) as server:
        session = await open_session(make_target(server.port), "127.0.0.1")
        await session.quit()
    assert session.auth_mechanisms == ("LOGIN", "PLAIN", "CRAM-MD5")
    assert session.capabilities["AUTH"] == "LOGIN PLAIN CRAM-MD5"
    assert "ATRN" in session.capabilities
    assert session.peer == f"127.0.0.1:{server.port}"


async def test_open_session_raises_session_error() -> None:
    """A 421 greeting raises SessionError with outcome and code."""
    async with FakeSmtpServer(Script(greeting="421 4.3.2 try later")) as server:
        with pytest.raises(SessionError) as caught:
            await open_session(make_target(server.port), "127.0.0.1")
    assert caught.value.outcome is Outcome.TEMPFAIL
    assert caught.value.code == 421
    assert caught.value.reply == "4.3.2 try later"


@pytest.mark.parametrize(
    ("fqdn", "expected"),
    [
        pytest.param("mx.example.net", "EHLO mx.example.net", id="fqdn"),
        pytest.param("localhost", "EHLO [127.0.0.1]", id="no-dot-address-literal"),
    ],
)
async def test_default_helo_name(monkeypatch: pytest.MonkeyPatch, fqdn: str, expected: str) -> None:
    """Without helo_name: the machine's FQDN, or the local address when it has no dot."""
    monkeypatch.setattr(helo_module, "_machine_fqdn", fqdn)
    async with FakeSmtpServer(Script(steps=(Step("EHLO", "250 fake.test"),))) as server:
        session = await open_session(make_target(server.port, helo_name=None), "127.0.0.1")
        await session.quit()
    assert server.connections[0].lines[0] == expected


async def test_quit_ignores_closed_connection() -> None:
    """QUIT on a connection the server already closed returns quietly."""
    script = Script(steps=(Step("EHLO", "250 fake.test"), Step("NOOP", b"250 OK\r\n")))
    async with FakeSmtpServer(script) as server:
        session = await open_session(make_target(server.port), "127.0.0.1")
        await session.command("NOOP")
        await session.aclose()
        await session.quit()
    assert session.closed is True
