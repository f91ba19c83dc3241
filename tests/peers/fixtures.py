"""pytest fixtures that start the peers and stop them after each test.

Every fixture skips the test with the reason when its peer is not
installed (see .ci/install-peers). tests/interop/conftest.py turns such
skips into failures when CI=true.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._process import PeerNotInstalled, make_shared_tempdir
from .exim_etrn import Exim496EtrnServer
from .exim_odmr import EximOdmrProvider, ensure_odmr_capable
from .fingerd import FingerServer
from .postfix import PostfixBackupMx
from .receiver import RecordingReceiver


def _skip_if_missing(starter: Callable[[], object]) -> object:
    try:
        return starter()
    except PeerNotInstalled as exc:
        pytest.skip(f"peer not installed: {exc}")


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], RecordingReceiver]]:
    """Start a recording SMTP receiver on a given loopback port; stopped after the test."""
    started: list[RecordingReceiver] = []

    def start(port: int) -> RecordingReceiver:
        receiver = RecordingReceiver(port)
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def postfix_factory() -> Iterator[Callable[..., PostfixBackupMx]]:
    """Start a private Postfix backup MX for hold.test; keyword arguments go to PostfixBackupMx."""
    started: list[PostfixBackupMx] = []

    def start(**options: object) -> PostfixBackupMx:
        instance = _skip_if_missing(lambda: PostfixBackupMx(**options))  # type: ignore[arg-type]
        assert isinstance(instance, PostfixBackupMx)
        started.append(instance)
        instance.start()
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def postfix_backup_mx(postfix_factory: Callable[..., PostfixBackupMx]) -> PostfixBackupMx:
    """A private Postfix backup MX with default settings."""
    return postfix_factory()


@pytest.fixture
def exim496_etrn() -> Iterator[Exim496EtrnServer]:
    """A private Exim 4.96 holding mail for hold.test until ETRN #hold.test."""
    instance = _skip_if_missing(Exim496EtrnServer)
    assert isinstance(instance, Exim496EtrnServer)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def finger_server() -> Iterator[FingerServer]:
    """in.fingerd behind socat on a free loopback port."""
    instance = _skip_if_missing(FingerServer)
    assert isinstance(instance, FingerServer)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def odmr_provider() -> Iterator[EximOdmrProvider]:
    """The sid Exim as an ODMR provider for odmr.test, user ``odmr``."""
    instance = _skip_if_missing(EximOdmrProvider)
    assert isinstance(instance, EximOdmrProvider)
    try:
        ensure_odmr_capable()
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A scratch directory for the product's config, state and Maildir, removed afterwards.

    Unlike tmp_path it is mode 0755, so paths in it can also be handed to
    peers that run as their own users.
    """
    path = make_shared_tempdir("mailreleased-interop-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
