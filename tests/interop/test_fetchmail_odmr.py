"""fetchmail as an ODMR customer of the built-in provider, relaying to a loopback SMTP listener.

fetchmail (Debian's package) authenticates with CRAM-MD5, sends
``ATRN <fetchdomains>`` and after the 250 proxies the connection to its
``smtphost``, so the provider receives the listener's greeting as the
customer's greeting. Every queued message must arrive there unchanged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

pytestmark = pytest.mark.interop

FETCHMAIL = shutil.which("fetchmail")
DOMAIN = "example.test"
# Upper bound for one fetchmail poll; a loopback poll of a few messages takes well under a second.
POLL_TIMEOUT = 60.0


class RecordingHandler:
    """aiosmtpd handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_listener() -> Iterator[tuple[RecordingHandler, int]]:
    """Start a recording SMTP listener on loopback and stop it after the test."""
    handler = RecordingHandler()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _write_rcfile(directory: Path, provider_port: int, smtp_port: int) -> Path:
    rcfile = directory / "fetchmailrc"
    rcfile.write_text(
        f"poll 127.0.0.1 proto odmr port {provider_port}\n"
        f"    user customer password secret-word\n"
        f"    fetchdomains {DOMAIN}\n"
        f"    smtphost 127.0.0.1/{smtp_port}\n",
        encoding="ascii",
    )
    # fetchmail refuses a run control file that others can read.
    os.chmod(rcfile, 0o600)
    return rcfile


async def _run_fetchmail(rcfile: Path, home: Path) -> tuple[int, str]:
    assert FETCHMAIL is not None
    environment = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    process = await asyncio.create_subprocess_exec(
        FETCHMAIL, "-N", "-f", str(rcfile), "--nosyslog", "-v",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), POLL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", errors="replace")


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed; run .ci/install-peers or apt-get install fetchmail")
async def test_fetchmail_odmr_receives_queue(
    tmp_path: Path, smtp_listener: tuple[RecordingHandler, int]
) -> None:
    """fetchmail releases the whole queue with ATRN and relays every message unchanged."""
    handler, smtp_port = smtp_listener
    messages = make_messages(DOMAIN, 20, 3000)
    async with Provider(users={"customer": "secret-word"}, queue=messages) as provider:
        rcfile = _write_rcfile(tmp_path, provider.port, smtp_port)
        status, output = await _run_fetchmail(rcfile, tmp_path)
        await provider.wait_idle(POLL_TIMEOUT)

    assert status == 0, output
    assert "secret-word" not in output
    assert provider.queue == []
    assert [m.id for m in provider.delivered] == [m.id for m in messages]
    received = provider.received_lines()
    assert "AUTH CRAM-MD5" in received
    assert f"ATRN {DOMAIN}" in received
    assert [e.rcpt_tos for e in handler.envelopes] == [list(m.recipients) for m in messages]
    assert [e.mail_from for e in handler.envelopes] == [m.sender for m in messages]
    assert [e.original_content for e in handler.envelopes] == [m.data for m in messages]


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed; run .ci/install-peers or apt-get install fetchmail")
async def test_fetchmail_odmr_empty_queue(tmp_path: Path, smtp_listener: tuple[RecordingHandler, int]) -> None:
    """With nothing queued the provider replies 453 and fetchmail reports no mail."""
    handler, smtp_port = smtp_listener
    async with Provider(users={"customer": "secret-word"}) as provider:
        rcfile = _write_rcfile(tmp_path, provider.port, smtp_port)
        status, output = await _run_fetchmail(rcfile, tmp_path)

    # fetchmail 6.4.37 counts a 453 as a successful poll and exits 0.
    assert status == 0, output
    assert "You have no mail" in output
    assert "ATRN example.test" in provider.received_lines()
    assert handler.envelopes == []
