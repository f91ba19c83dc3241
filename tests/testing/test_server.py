"""The provider's server side: greeting, EHLO, AUTH mechanisms, STARTTLS and ETRN."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import socket
import subprocess
import sys

import pytest

from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider, check_listen_host
from mailreleased.testing.wire import read_reply

from .conftest import TIMEOUT, USERS, connect
from .customer import cram_md5_response, send

DOMAIN = "example.test"


def _smtplib_login(port: int, mechanism: str, password: str) -> int:
    """Log in with the stdlib client using one mechanism; return the final reply code."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="customer.test", timeout=TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = "user", password
        try:
            if mechanism == "PLAIN":
                code, _ = client.auth("PLAIN", client.auth_plain, initial_response_ok=True)
            elif mechanism == "LOGIN":
                code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            else:
                code, _ = client.auth("CRAM-MD5", client.auth_cram_md5, initial_response_ok=False)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        return code


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_mechanism_accepts_password(mechanism: str) -> None:
    """Each mechanism replies 235 to the right password."""
    async with Provider(users=USERS) as provider:
        code = await asyncio.to_thread(_smtplib_login, provider.port, mechanism, "password")
    assert code == 235


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_mechanism_rejects_password(mechanism: str) -> None:
    """Each mechanism replies 535 to a wrong password."""
    async with Provider(users=USERS) as provider:
        code = await asyncio.to_thread(_smtplib_login, provider.port, mechanism, "wrong")
    assert code == 535


async def test_auth_transcript_hides_answers() -> None:
    """AUTH responses never reach the transcript."""
    secret = base64.b64encode(b"\0user\0password").decode()
    async with Provider(users=USERS) as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        await send(writer, reader, "AUTH PLAIN")
        reply = await send(writer, reader, secret)
        writer.close()
    assert reply.code == 235
    assert all(secret not in entry.line for entry in provider.transcript)


async def test_auth_plaintext_requires_tls() -> None:
    """With the TLS switch on, PLAIN before STARTTLS gets 538 but CRAM-MD5 still works."""
    async with Provider(users=USERS, require_tls_for_plaintext_auth=True) as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        plain = await send(writer, reader, "AUTH PLAIN " + base64.b64encode(b"\0user\0password").decode())
        challenge = await send(writer, reader, "AUTH CRAM-MD5")
        cram = await send(writer, reader, cram_md5_response("user", "password", challenge.lines[0]))
        writer.close()
    assert plain.code == 538
    assert cram.code == 235


async def test_auth_refused_by_fault() -> None:
    """The refuse_auth fault turns correct credentials into 535."""
    async with Provider(users=USERS) as provider:
        provider.faults.refuse_auth = True
        code = await asyncio.to_thread(_smtplib_login, provider.port, "CRAM-MD5", "password")
    assert code == 535


async def test_auth_cancel_and_bad_base64() -> None:
    """A "*" answer and undecodable base64 both get 501."""
    async with Provider(users=USERS) as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        await send(writer, reader, "AUTH LOGIN")
        cancelled = await send(writer, reader, "*")
        await send(writer, reader, "AUTH PLAIN")
        garbage = await send(writer, reader, "not base64!")
        unknown = await send(writer, reader, "AUTH GSSAPI")
        writer.close()
    assert cancelled.code == 501
    assert garbage.code == 501
    assert unknown.code == 504


async def test_ehlo_lists_capabilities() -> None:
    """EHLO lists AUTH, ATRN, ETRN, 8BITMIME and SIZE, and STARTTLS only with a certificate."""
    async with Provider(users=USERS) as provider:
        reader, writer = await connect(provider.port)
        reply = await send(writer, reader, "EHLO customer.test")
        writer.close()
    keywords = [line.split()[0] for line in reply.lines[1:]]
    assert "AUTH PLAIN LOGIN CRAM-MD5" in reply.lines
    assert {"ATRN", "ETRN", "8BITMIME", "SIZE"} <= set(keywords)
    assert "STARTTLS" not in keywords


async def test_multiline_greeting() -> None:
    """The greeting can span two lines."""
    async with Provider(multiline_greeting=True) as provider:
        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        first = await reader.readline()
        second = await reader.readline()
        writer.close()
    assert first.startswith(b"220-")
    assert second.startswith(b"220 ")


async def test_greeting_421_fault() -> None:
    """The greeting_421 fault answers 421 and closes."""
    async with Provider() as provider:
        provider.faults.greeting_421 = True
        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        line = await reader.readline()
        rest = await reader.read()
        writer.close()
    assert line.startswith(b"421 ")
    assert rest == b""


async def test_odd_ehlo_reply_fault() -> None:
    """The odd_replies fault sends a bare code line and LF-only line ends."""
    async with Provider() as provider:
        provider.faults.odd_replies = True
        reader, writer = await connect(provider.port)
        writer.write(b"EHLO customer.test\r\n")
        first = await reader.readline()
        writer.close()
    assert first == b"250-\n"


async def test_reply_override_fault() -> None:
    """A reply override replaces the ETRN reply, and ETRN is still recorded."""
    async with Provider() as provider:
        provider.faults.replies["ETRN"] = "458 Unable to queue messages"
        reader, writer = await connect(provider.port)
        reply = await send(writer, reader, f"ETRN {DOMAIN}")
        writer.close()
    assert reply.code == 458
    assert provider.etrn_requests == [DOMAIN]


async def test_etrn_records_requests() -> None:
    """ETRN gets 250 Queuing started and each argument is recorded verbatim."""
    async with Provider() as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        first = await send(writer, reader, f"ETRN {DOMAIN}")
        second = await send(writer, reader, "ETRN @other.test")
        missing = await send(writer, reader, "ETRN")
        quit_reply = await send(writer, reader, "QUIT")
        writer.close()
    assert (first.code, first.text) == (250, "Queuing started")
    assert second.code == 250
    assert missing.code == 500
    assert quit_reply.code == 221
    assert provider.etrn_requests == [DOMAIN, "@other.test"]


async def test_etrn_report_empty_gives_251() -> None:
    """With etrn_report_empty, ETRN for a node with no mail gets 251."""
    async with Provider(etrn_report_empty=True, queue=make_messages(DOMAIN, 1)) as provider:
        reader, writer = await connect(provider.port)
        empty = await send(writer, reader, "ETRN other.test")
        full = await send(writer, reader, f"ETRN {DOMAIN}")
        writer.close()
    assert empty.code == 251
    assert full.code == 250


async def test_mail_commands_not_implemented() -> None:
    """MAIL, RCPT and DATA get 502, unknown verbs 500."""
    async with Provider() as provider:
        reader, writer = await connect(provider.port)
        mail = await send(writer, reader, "MAIL FROM:<a@b.test>")
        unknown = await send(writer, reader, "XYZZY")
        writer.close()
    assert mail.code == 502
    assert unknown.code == 500


async def test_slow_replies_fault() -> None:
    """A reply delay still produces complete replies."""
    async with Provider() as provider:
        provider.faults.reply_delay = 0.01
        reader, writer = await connect(provider.port)
        reply = await send(writer, reader, "NOOP")
        writer.close()
    assert reply.code == 250


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "localhost", "::"])
def test_non_loopback_bind_rejected(host: str) -> None:
    """The provider rejects non-loopback and non-literal listen addresses by default."""
    with pytest.raises(ValueError):
        check_listen_host(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "127.0.0.2"])
def test_loopback_bind_allowed(host: str) -> None:
    """Loopback literals pass the check."""
    check_listen_host(host)


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_extra_listener_serves_same_queue() -> None:
    """A second listener (on ::1 when available) shares the queue and the records."""
    extra_host = "::1" if _ipv6_loopback_available() else "127.0.0.1"
    async with Provider(extra_listeners=[(extra_host, 0)]) as provider:
        assert len(provider.addresses) == 2
        host, port = provider.addresses[1]
        reader, writer = await asyncio.open_connection(host, port)
        await read_reply(reader, TIMEOUT)
        reply = await send(writer, reader, f"ETRN {DOMAIN}")
        writer.close()
    assert host == extra_host
    assert reply.code == 250
    assert provider.etrn_requests == [DOMAIN]


def test_cli_rejects_non_loopback_listen() -> None:
    """The provider process exits 64 when asked to listen beyond loopback."""
    completed = subprocess.run(
        [sys.executable, "-m", "mailreleased.testing.provider", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 64
    assert "not a loopback address" in completed.stderr


async def test_reply_override_421_closes() -> None:
    """An overridden 421 reply ends the session."""
    async with Provider() as provider:
        provider.faults.replies["NOOP"] = "421 4.3.2 shutting down"
        reader, writer = await connect(provider.port)
        reply = await send(writer, reader, "NOOP")
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    assert reply.code == 421
    assert rest == b""
