"""ETRN against a real Postfix backup MX (Debian 12's Postfix 3.7) that holds mail for hold.test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peers.cli import run_once
from peers.postfix import HOLD_DOMAIN, PostfixBackupMx
from peers.receiver import RecordingReceiver

pytestmark = pytest.mark.interop

# The held mail must reach the receiver this soon after ``once`` returns.
ARRIVAL_TIMEOUT = 5.0


def etrn_target(port: int, domain: str, *, ehlo: bool = True) -> dict[str, Any]:
    return {
        "name": "pfx",
        "method": "etrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": [domain],
        "ehlo": ehlo,
        "tls": "off",
        "helo_name": "client.test",
        "timeouts": {"connect": "5s", "greeting": "10s", "reply": "10s"},
    }


def body_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[1]


def assert_all_arrived(sent: list[bytes], receiver: RecordingReceiver) -> None:
    """Wait for every sent message and check that its body arrived unchanged."""
    arrived = receiver.wait_for(len(sent), ARRIVAL_TIMEOUT)
    assert len(arrived) == len(sent)
    assert sorted(body_of(message.data) for message in arrived) == sorted(body_of(message) for message in sent)
    assert {message.recipients for message in arrived} == {(f"user{i}@{HOLD_DOMAIN}",) for i in range(len(sent))}


def test_etrn_releases_held_mail(
    postfix_backup_mx: PostfixBackupMx,
    receiver_factory: Callable[[int], RecordingReceiver],
    work_dir: Path,
) -> None:
    sent = postfix_backup_mx.queue_messages(3)
    receiver = receiver_factory(postfix_backup_mx.receiver_port)

    result = run_once(work_dir, [etrn_target(postfix_backup_mx.port, HOLD_DOMAIN)])

    record = result.single()
    assert record["outcome"] == "released", result.describe()
    assert record["code"] == 250, result.describe()
    assert record["method"] == "etrn"
    assert record["domain"] == HOLD_DOMAIN
    assert record["port"] == postfix_backup_mx.port
    assert result.returncode == 0, result.describe()
    assert_all_arrived(sent, receiver)


def test_etrn_domain_outside_fast_flush(postfix_backup_mx: PostfixBackupMx, work_dir: Path) -> None:
    # Postfix replies "459 <domain>: service unavailable" for a domain that
    # fast_flush_domains does not list.
    result = run_once(work_dir, [etrn_target(postfix_backup_mx.port, "elsewhere.test")])

    record = result.single()
    assert record["outcome"] == "refused", result.describe()
    assert record["code"] == 459, result.describe()
    assert result.returncode != 0, result.describe()
    assert postfix_backup_mx.queue_count() == 0


def test_etrn_helo_required_retries_with_ehlo(
    postfix_factory: Callable[..., PostfixBackupMx],
    receiver_factory: Callable[[int], RecordingReceiver],
    work_dir: Path,
) -> None:
    # With smtpd_helo_required=yes Postfix replies a bare ETRN with
    # "503 Error: send HELO/EHLO first". The client must then greet and retry.
    postfix = postfix_factory(helo_required=True)
    sent = postfix.queue_messages(3)
    receiver = receiver_factory(postfix.receiver_port)

    result = run_once(work_dir, [etrn_target(postfix.port, HOLD_DOMAIN, ehlo=False)])

    record = result.single()
    assert record["outcome"] == "released", result.describe()
    assert record["code"] == 250, result.describe()
    assert result.returncode == 0, result.describe()
    assert_all_arrived(sent, receiver)
