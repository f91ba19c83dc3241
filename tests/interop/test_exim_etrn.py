"""ETRN against a real Exim 4.96 (Debian 12) that holds mail for hold.test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peers.cli import run_once
from peers.exim_etrn import HOLD_DOMAIN, Exim496EtrnServer
from peers.receiver import RecordingReceiver

pytestmark = pytest.mark.interop

ARRIVAL_TIMEOUT = 5.0


def etrn_target(port: int, domain: str) -> dict[str, Any]:
    return {
        "name": "exim",
        "method": "etrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": [domain],
        "ehlo": True,
        "tls": "off",
        "helo_name": "client.test",
        "timeouts": {"connect": "5s", "greeting": "10s", "reply": "10s"},
    }


def body_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[1]


def test_etrn_hash_domain_releases_mail(
    exim496_etrn: Exim496EtrnServer,
    receiver_factory: Callable[[int], RecordingReceiver],
    work_dir: Path,
) -> None:
    sent = exim496_etrn.queue_messages(3)
    receiver = receiver_factory(exim496_etrn.receiver_port)

    result = run_once(work_dir, [etrn_target(exim496_etrn.port, f"#{HOLD_DOMAIN}")])

    record = result.single()
    assert record["outcome"] == "released", result.describe()
    assert record["code"] == 250, result.describe()
    assert result.returncode == 0, result.describe()
    arrived = receiver.wait_for(len(sent), ARRIVAL_TIMEOUT)
    assert sorted(body_of(message.data) for message in arrived) == sorted(body_of(message) for message in sent)
    exim496_etrn.wait_queue_count(0)


def test_etrn_plain_domain_refused_501(exim496_etrn: Exim496EtrnServer, work_dir: Path) -> None:
    # Without smtp_etrn_command Exim accepts only the "#domain" form and
    # replies "501 argument must begin with #" otherwise.
    exim496_etrn.queue_messages(1)

    result = run_once(work_dir, [etrn_target(exim496_etrn.port, HOLD_DOMAIN)])

    record = result.single()
    assert record["outcome"] == "refused", result.describe()
    assert record["code"] == 501, result.describe()
    assert result.returncode != 0, result.describe()
    assert exim496_etrn.queue_count() == 1
