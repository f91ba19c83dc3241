"""Checks of the peers themselves with stdlib clients, independent of mailreleased.

When a product interop test fails, these show whether the peer still
behaves as the product tests assume.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest
from peers.exim_etrn import Exim496EtrnServer
from peers.exim_odmr import ODMR_DOMAIN, EximOdmrProvider, exim_version
from peers.fingerd import FingerServer
from peers.odmr_customer import run_odmr_session
from peers.postfix import HOLD_DOMAIN, PostfixBackupMx
from peers.receiver import RecordingReceiver

pytestmark = pytest.mark.interop


def etrn(port: int, argument: str, *, ehlo: bool = True) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
        if ehlo:
            client.ehlo()
        return client.docmd("ETRN", argument)


def test_postfix_peer_etrn_flushes(
    postfix_backup_mx: PostfixBackupMx, receiver_factory: Callable[[int], RecordingReceiver]
) -> None:
    postfix_backup_mx.queue_messages(3)
    assert postfix_backup_mx.queue_count() == 3
    receiver = receiver_factory(postfix_backup_mx.receiver_port)

    assert etrn(postfix_backup_mx.port, HOLD_DOMAIN) == (250, b"Queuing started")

    assert len(receiver.wait_for(3, 5.0)) == 3
    assert etrn(postfix_backup_mx.port, "elsewhere.test") == (459, b"<elsewhere.test>: service unavailable")


def test_postfix_peer_helo_required(postfix_factory: Callable[..., PostfixBackupMx]) -> None:
    postfix = postfix_factory(helo_required=True)

    code, text = etrn(postfix.port, HOLD_DOMAIN, ehlo=False)

    assert code == 503
    assert b"HELO/EHLO" in text


def test_exim496_peer_etrn(
    exim496_etrn: Exim496EtrnServer, receiver_factory: Callable[[int], RecordingReceiver]
) -> None:
    exim496_etrn.queue_messages(2)
    receiver = receiver_factory(exim496_etrn.receiver_port)

    assert etrn(exim496_etrn.port, HOLD_DOMAIN) == (501, b"argument must begin with #")
    assert etrn(exim496_etrn.port, f"#{HOLD_DOMAIN}") == (250, b"OK")

    assert len(receiver.wait_for(2, 5.0)) == 2
    exim496_etrn.wait_queue_count(0)


def test_fingerd_peer_replies(finger_server: FingerServer) -> None:
    assert finger_server.query("") == "No one logged on.\r\n"
    assert "no such user" in finger_server.query(HOLD_DOMAIN)


def test_odmr_peer_plaintext_session(odmr_provider: EximOdmrProvider) -> None:
    injected = odmr_provider.inject_messages(20)

    session = run_odmr_session(
        odmr_provider.odmr_port,
        username=odmr_provider.username,
        password=odmr_provider.password,
        domain=ODMR_DOMAIN,
        mechanism="CRAM-MD5",
    )

    assert session.error is None, "\n".join(session.transcript)
    assert session.atrn_reply == "250 ODMR provider turning line around"
    assert session.ended_with_quit
    assert len(session.messages) == 20
    bodies = sorted(message.data.split(b"\r\n\r\n", 1)[1] for message in session.messages)
    assert bodies == sorted(message.split(b"\r\n\r\n", 1)[1] for message in injected)
    odmr_provider.wait_queue_count(0)


def test_odmr_peer_starttls_session(odmr_provider: EximOdmrProvider) -> None:
    odmr_provider.inject_messages(3)

    session = run_odmr_session(
        odmr_provider.odmr_port,
        username=odmr_provider.username,
        password=odmr_provider.password,
        domain=ODMR_DOMAIN,
        starttls_cafile=odmr_provider.cert_file,
    )

    assert session.atrn_reply == "250 ODMR provider turning line around"
    assert len(session.messages) >= 1, "\n".join(session.transcript)
    if len(session.messages) < 3 and exim_version().startswith("4.100."):
        pytest.xfail(f"Exim {exim_version()} delivers only the first message of an ATRN session over STARTTLS")
    assert len(session.messages) == 3, "\n".join(session.transcript)


@pytest.mark.parametrize(
    ("mechanism", "password", "domain", "expected"),
    [
        ("CRAM-MD5", None, ODMR_DOMAIN, "453 You have no mail"),
        ("PLAIN", "wrong", ODMR_DOMAIN, "530 ATRN is not permitted without authentication"),
        ("NONE", None, ODMR_DOMAIN, "530 ATRN is not permitted without authentication"),
        ("CRAM-MD5", None, "elsewhere.test", "450 Administrative prohibition"),
    ],
)
def test_odmr_peer_refusals(
    odmr_provider: EximOdmrProvider, mechanism: str, password: str | None, domain: str, expected: str
) -> None:
    if domain != ODMR_DOMAIN:
        odmr_provider.inject_messages(1)

    session = run_odmr_session(
        odmr_provider.odmr_port,
        username=odmr_provider.username,
        password=password or odmr_provider.password,
        domain=domain,
        mechanism=mechanism,
    )

    assert session.atrn_reply == expected, "\n".join(session.transcript)
    if password is not None:
        assert "S: 535 Incorrect authentication data" in session.transcript
