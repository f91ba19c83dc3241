"""The sd_notify client: datagrams, abstract names, and the watchdog conditions."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailreleased.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()


def test_send_reaches_path_socket(listener: tuple[socket.socket, str]) -> None:
    """READY=1 and STATUS= arrive in one datagram."""
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).ready("3 targets")
    assert sock.recv(4096) == b"READY=1\nSTATUS=3 targets"


def test_send_reaches_abstract_socket() -> None:
    """A name starting with '@' is in the abstract namespace."""
    name = f"mailreleased-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(10)
        Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(4096) == b"STOPPING=1"


def test_status_is_one_line(listener: tuple[socket.socket, str]) -> None:
    """Newlines in a status would start new KEY=value fields, so they are folded."""
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).status("a\nWATCHDOG=1")
    assert sock.recv(4096) == b"STATUS=a WATCHDOG=1"


def test_without_socket_does_nothing() -> None:
    """No NOTIFY_SOCKET: disabled, and sending is a no-op."""
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready()


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    """A vanished manager socket is logged, not raised."""
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
    ids=["usec-only", "our-pid", "other-pid", "zero", "garbage", "unset"],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """The watchdog runs only when WATCHDOG_USEC is set and WATCHDOG_PID is ours or unset."""
    assert Notifier(environ).watchdog_interval == expected
