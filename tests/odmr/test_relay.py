"""Tests for the SMTP and LMTP relay sinks against a scripted local server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mailreleased.config.model import LmtpDelivery, SmtpDelivery
from mailreleased.odmr.sinks.base import BodyIncomplete, Envelope
from mailreleased.odmr.sinks.relay import RelaySink, lmtp_sink, smtp_sink

from .fake_mta import FakeMta
from .helpers import body_of, broken_body, message, run_script

ENVELOPE = Envelope("alice@example.net", ("bob@example.org", "carol@example.org"), "ID1")


def smtp_to(port: int) -> RelaySink:
    return smtp_sink(SmtpDelivery(type="smtp", host="127.0.0.1", port=port, timeout=10))


def lmtp_to(port: int) -> RelaySink:
    return lmtp_sink(LmtpDelivery(type="lmtp", host="127.0.0.1", port=port, timeout=10))


def closed_port() -> int:
    """Return a loopback port with no listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_smtp_relays_with_envelope() -> None:
    """deliver() alone relays the message with its envelope, dot-stuffing intact."""
    async with FakeMta() as mta:
        sink = smtp_to(mta.port)
        result = await sink.deliver(ENVELOPE, body_of(b"Subject: x\r\n\r\n", b".dot\r\n"))
        await sink.aclose()
    assert result.code == 250
    assert mta.messages == [("alice@example.net", ["bob@example.org", "carol@example.org"], b"Subject: x\r\n\r\n.dot\r\n")]


async def test_smtp_null_sender_kept() -> None:
    """The null sender reaches the local server as MAIL FROM:<>."""
    async with FakeMta() as mta:
        sink = smtp_to(mta.port)
        await sink.deliver(Envelope("", ("bob@example.org",)), body_of(b"x\r\n"))
        await sink.aclose()
    assert "MAIL FROM:<> BODY=8BITMIME" in mta.commands


async def test_smtp_down_gives_451() -> None:
    """No local server listening gives 451 at MAIL and from deliver()."""
    sink = smtp_to(closed_port())
    assert (await sink.check_sender("a@example.net")).code == 451
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 451


async def test_smtp_rcpt_verdicts_reach_provider() -> None:
    """Through the receiver, the local server's RCPT verdicts become the provider's RCPT replies."""
    async with FakeMta(rcpt_codes={"carol@example.org": 550, "dave@example.org": 451}) as mta:
        sink = smtp_to(mta.port)
        rcpts = ("bob@example.org", "carol@example.org", "dave@example.org")
        transcript = await run_script([b"EHLO p\r\n", message(b"x\r\n.\r\n", recipients=rcpts), b"QUIT\r\n"], sink)
        await sink.aclose()
    assert transcript.codes == [220, 250, 250, 250, 550, 451, 354, 250, 221]
    assert mta.messages[0][1] == ["bob@example.org"]


async def test_smtp_data_rejection_gives_554() -> None:
    """A permanent rejection after DATA gives 554; a temporary one 451."""
    for data_code, expected in ((554, 554), (452, 451)):
        async with FakeMta(data_code=data_code) as mta:
            sink = smtp_to(mta.port)
            assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == expected
            await sink.aclose()


async def test_smtp_all_recipients_rejected_standalone() -> None:
    """deliver() alone with every recipient rejected permanently gives 554 and sends no DATA."""
    async with FakeMta(rcpt_codes={"bob@example.org": 550, "carol@example.org": 550}) as mta:
        sink = smtp_to(mta.port)
        assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 554
        await sink.aclose()
    assert "DATA" not in mta.commands


async def test_smtp_broken_body_never_completes() -> None:
    """A body cut short aborts the relay connection before the end-of-data line."""
    async with FakeMta() as mta:
        sink = smtp_to(mta.port)
        with pytest.raises(BodyIncomplete):
            await sink.deliver(ENVELOPE, broken_body(b"half"))
        await sink.aclose()
    assert mta.messages == []


async def test_lmtp_delivers() -> None:
    """LMTP uses LHLO and gives 250 when every recipient succeeds."""
    async with FakeMta(lmtp=True) as mta:
        sink = lmtp_to(mta.port)
        assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 250
        await sink.aclose()
    assert mta.commands[0].startswith("LHLO ")
    assert len(mta.messages) == 1


@pytest.mark.parametrize(
    ("data_codes", "expected"),
    [({"carol@example.org": 452}, 451), ({"carol@example.org": 550}, 451),
     ({"bob@example.org": 550, "carol@example.org": 552}, 554)],
    ids=["one-temporary", "mixed-permanent", "all-permanent"],
)
async def test_lmtp_per_recipient_policy(data_codes: dict[str, int], expected: int) -> None:
    """After DATA: all 5xx gives 554, any other failure 451, so no undelivered copy is acknowledged."""
    async with FakeMta(lmtp=True, data_codes=data_codes) as mta:
        sink = lmtp_to(mta.port)
        assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == expected
        await sink.aclose()


async def test_lmtp_down_gives_451() -> None:
    """No LMTP server listening gives 451."""
    sink = lmtp_to(closed_port())
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 451


async def test_lmtp_unix_socket(tmp_path: Path) -> None:
    """LMTP over a unix socket delivers; a socket path that does not exist gives 451."""
    path = str(tmp_path / "lmtp.sock")
    async with FakeMta(lmtp=True, unix_path=path) as mta:
        sink = lmtp_sink(LmtpDelivery(type="lmtp", path=path, timeout=5))
        assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 250
        await sink.aclose()
    assert len(mta.messages) == 1
    missing = lmtp_sink(LmtpDelivery(type="lmtp", path=str(tmp_path / "missing.sock"), timeout=5))
    assert (await missing.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 451


async def test_smtp_reconnects_after_idle_close() -> None:
    """A relay connection the server closed while idle is replaced at the next MAIL."""
    async with FakeMta() as mta:
        sink = smtp_to(mta.port)
        assert (await sink.deliver(ENVELOPE, body_of(b"one\r\n"))).code == 250
        assert sink._connection is not None
        sink._connection.abort()
        assert (await sink.deliver(ENVELOPE, body_of(b"two\r\n"))).code == 250
        await sink.aclose()
    assert [data for _, _, data in mta.messages] == [b"one\r\n", b"two\r\n"]
