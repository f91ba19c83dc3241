"""Fault matrix: each fault gives its outcome, one ``signal`` log line, an exit code, and no crash.

Every row runs ``mailreleased once`` in-process (through ``cli.main``) against
a loopback fault, checks the exit code and that exactly one ``signal`` line
was logged at the right level with the right outcome, then runs two daemon
ticks against the same fault to show that the daemon carries on. The table
in docs/reliability.md is this table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme
import yaml

from mailreleased import cli
from mailreleased.config.loader import load_config
from mailreleased.daemon import Daemon
from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

from .servers import BackgroundLoop, background_loop, closed_port, smtp_script, start_scripted

DOMAIN = "example.test"
USER = "customer"
PASSWORD = "fault-matrix-secret"
SHORT = 0.5  # seconds: the timeouts that the timeout rows run into


@dataclasses.dataclass
class Env:
    """What a row's setup may use: the server loop, a scratch directory and pytest helpers."""

    loop: BackgroundLoop
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    ca: trustme.CA
    cleanups: list[Callable[[], None]]

    def provider(self, **kwargs: Any) -> Provider:
        """Start a loopback provider on the background loop; it stops after the test."""
        kwargs.setdefault("users", {USER: PASSWORD})
        provider = Provider(**kwargs)
        self.loop.call(provider.start())
        self.cleanups.append(lambda: self.loop.call(provider.close()))
        return provider

    def scripted(self, replies: dict[str, str], greeting: str = "220 fake.test ESMTP") -> int:
        """Start a scripted SMTP server; return its port."""
        server, port = self.loop.call(start_scripted(smtp_script(replies, greeting)))
        self.cleanups.append(lambda: server.close())
        return port

    def tls_provider(self, cert: trustme.LeafCert) -> Provider:
        """Start a provider that offers STARTTLS with ``cert``."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return self.provider(tls_context=context)

    def ca_file(self) -> str:
        """Write the test CA to a file and return its path."""
        path = self.tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return str(path)


def etrn(port: int, **extra: Any) -> dict[str, Any]:
    """An ETRN target for ``port`` with short timeouts and TLS off unless overridden."""
    target = {
        "name": "isp",
        "method": "etrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": [DOMAIN],
        "tls": "off",
        "timeouts": {"connect": "5s", "greeting": SHORT, "reply": SHORT},
    }
    target.update(extra)
    return target


def atrn(port: int, delivery: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An ATRN target for ``port`` delivering to ``delivery``."""
    target = {
        "name": "odmr",
        "method": "atrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": [DOMAIN],
        "tls": "off",
        "auth": {"username": USER, "password": PASSWORD, "mechanisms": ["CRAM-MD5"]},
        "timeouts": {"connect": "5s", "greeting": "10s", "reply": "10s"},
        "delivery": delivery,
        "receiver": {"command_timeout": "10s"},
    }
    target.update(extra)
    return target


def auth_etrn(env: Env, reply: str) -> dict[str, Any]:
    provider = env.provider(faults=Faults(replies={"AUTH": reply}))
    return etrn(provider.port, auth={"username": USER, "password": PASSWORD, "mechanisms": ["CRAM-MD5"]})


def unresolvable(env: Env) -> dict[str, Any]:
    # The resolver in /etc/resolv.conf is a network server, so a .invalid lookup is answered locally here.
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    env.monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    return etrn(25, host="mx.example.invalid")


def wrong_name(env: Env) -> dict[str, Any]:
    provider = env.tls_provider(env.ca.issue_cert("other.example"))
    return etrn(provider.port, tls="starttls", tls_ca_file=env.ca_file())


def expired(env: Env) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = env.ca.issue_cert(
        "127.0.0.1", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
    )
    provider = env.tls_provider(cert)
    return etrn(provider.port, tls="starttls", tls_ca_file=env.ca_file())


def drop_first_message(env: Env) -> dict[str, Any]:
    provider = env.provider(
        queue=make_messages(DOMAIN, 3, 20_000), faults=Faults(drop_after_messages=0, drop_after_bytes=5000)
    )
    return atrn(provider.port, {"type": "maildir", "path": str(env.tmp_path / "Maildir")})


def drop_after_each_message(env: Env) -> dict[str, Any]:
    provider = env.provider(
        queue=make_messages(DOMAIN, 5, 20_000), faults=Faults(drop_after_messages=1, drop_after_bytes=5000)
    )
    return atrn(provider.port, {"type": "maildir", "path": str(env.tmp_path / "Maildir")})


def sink_down(env: Env) -> dict[str, Any]:
    provider = env.provider(queue=make_messages(DOMAIN, 2))
    return atrn(provider.port, {"type": "smtp", "host": "127.0.0.1", "port": closed_port(), "timeout": "5s"})


def sink_slow(env: Env) -> dict[str, Any]:
    provider = env.provider(queue=make_messages(DOMAIN, 1))
    slow = [sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(30)"]
    return atrn(provider.port, {"type": "command", "argv": slow, "timeout": SHORT})


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def disk_full(env: Env) -> dict[str, Any]:
    mount = env.tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.decode().strip()}")
    env.cleanups.append(lambda: _unmount(mount))
    provider = env.provider(queue=make_messages(DOMAIN, 4, 400_000))
    return atrn(provider.port, {"type": "maildir", "path": str(mount / "Maildir")})


@dataclasses.dataclass(frozen=True)
class Row:
    """One fault, how to set it up, and what mailreleased must report."""

    setup: Callable[[Env], dict[str, Any]]
    outcome: str
    exit_code: int
    level: str
    # Set when mailreleased does not yet report this fault as it should; the reason says what it reports.
    known_bug: str | None = None
    # Outcome of the daemon ticks after 'once', when 'once' cleared the fault (default: ``outcome``).
    tick_outcome: str | None = None


ROWS: dict[str, Row] = {
    "connection refused": Row(lambda env: etrn(closed_port()), "connect_failed", 75, "warning"),
    "unresolvable name": Row(unresolvable, "connect_failed", 75, "warning"),
    "greeting timeout": Row(lambda env: etrn(env.scripted({}, greeting="")), "timeout", 75, "warning"),
    "reply timeout": Row(lambda env: etrn(env.scripted({"EHLO": ""})), "timeout", 75, "warning"),
    "silent mid-reply": Row(
        lambda env: etrn(env.scripted({"EHLO": "250-fake.test first line"})), "timeout", 75, "warning"
    ),
    "421 at greeting": Row(
        lambda env: etrn(env.provider(faults=Faults(greeting_421=True)).port), "tempfail", 75, "warning"
    ),
    "421 after EHLO": Row(
        lambda env: etrn(env.scripted({"EHLO": "421 4.3.2 shutting down"})), "tempfail", 75, "warning"
    ),
    "TLS handshake failure": Row(
        lambda env: etrn(env.scripted({"EHLO": "250-fake.test\n250 STARTTLS", "STARTTLS": "220 go ahead"}), tls="starttls"),
        "tls_failed", 75, "warning",
    ),
    "certificate for another name": Row(wrong_name, "tls_failed", 75, "warning"),
    "expired certificate": Row(expired, "tls_failed", 75, "warning"),
    "AUTH 535": Row(lambda env: auth_etrn(env, "535 5.7.8 Authentication credentials invalid"), "auth_failed", 77, "error"),
    "AUTH 454": Row(lambda env: auth_etrn(env, "454 4.7.0 Temporary authentication failure"), "tempfail", 75, "warning"),
    "AUTH 538": Row(
        lambda env: auth_etrn(env, "538 5.7.11 Encryption required for requested authentication mechanism"),
        "auth_failed", 77, "error",
    ),
    "provider drops mid-DATA of the first message": Row(drop_first_message, "partial", 75, "warning"),
    # Each broken session stored one message, so mailreleased repeats ATRN until the queue is empty.
    "provider drops mid-DATA after each message": Row(
        drop_after_each_message, "received", 0, "info", tick_outcome="no_mail"
    ),
    "sink down": Row(sink_down, "tempfail", 75, "warning"),
    "sink slower than its timeout": Row(sink_slow, "tempfail", 75, "warning"),
    # The disk stays full, so the daemon's later ticks store nothing and defer everything.
    "Maildir disk full": Row(disk_full, "partial", 75, "warning", tick_outcome="tempfail"),
}


def _params() -> list[Any]:
    params = []
    for name, row in ROWS.items():
        marks = [pytest.mark.xfail(strict=True, reason=row.known_bug)] if row.known_bug else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo the logging set-up that cli.main does, so later tests log as before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority."""
    return trustme.CA()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: trustme.CA) -> Iterator[Env]:
    """A background server loop that is torn down after the test."""
    with background_loop() as loop:
        environment = Env(loop, tmp_path, monkeypatch, ca, [])
        try:
            yield environment
        finally:
            for cleanup in reversed(environment.cleanups):
                cleanup()


def write_config(tmp_path: Path, target: dict[str, Any]) -> Path:
    """Write a config with one target, JSON logs at info level, and return its path."""
    path = tmp_path / "mailreleased.yaml"
    document = {"state_dir": str(tmp_path / "state"), "log": {"format": "json", "level": "info"}, "targets": [target]}
    path.write_text(yaml.safe_dump(document))
    return path


def signal_lines(stderr: str) -> list[dict[str, Any]]:
    """Return the ``signal`` events among the JSON log lines."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [event for event in events if event.get("event") == "signal"]


async def two_ticks(config_path: Path) -> list[list[Any]]:
    """Run two daemon processing runs against the same config; return their records."""
    daemon = Daemon(load_config(config_path), config_path)
    daemon.store.load()
    first = await daemon.run()
    second = await daemon.run()
    return [first, second]


@pytest.mark.parametrize("fault", _params())
def test_fault_outcome(fault: str, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The fault gives its outcome, exit code and one signal line; the daemon carries on."""
    row = ROWS[fault]
    config_path = write_config(env.tmp_path, row.setup(env))

    code = cli.main(["once", "-c", str(config_path), "--json"])
    captured = capsys.readouterr()

    records = [json.loads(line) for line in captured.out.splitlines()]
    lines = signal_lines(captured.err)
    assert len(records) == 1, captured.out
    assert records[0]["outcome"] == row.outcome, records[0]
    assert code == row.exit_code, captured
    assert len(lines) == 1, captured.err
    assert lines[0]["outcome"] == row.outcome
    assert lines[0]["level"] == row.level
    assert PASSWORD not in captured.err
    assert PASSWORD not in captured.out

    ticks = asyncio.run(two_ticks(config_path))
    assert [len(batch) for batch in ticks] == [1, 1]
    tick_outcome = row.tick_outcome or row.outcome
    assert [str(batch[0].outcome) for batch in ticks] == [tick_outcome, tick_outcome]


def test_state_dir_under_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state_dir below a regular file stops 'once' with exit 73 and a clear message."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = etrn(closed_port())
    path = tmp_path / "mailreleased.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(blocker / "state"), "log": {"format": "json"}, "targets": [target]}))

    code = cli.main(["once", "-c", str(path)])
    captured = capsys.readouterr()

    assert code == 73
    assert "state_dir" in captured.err
    assert signal_lines(captured.err) == []


def test_state_dir_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A read-only state_dir (bind mount) stops 'once' with exit 73 before any signal."""
    state = tmp_path / "state"
    state.mkdir()
    bound = subprocess.run(["mount", "--bind", str(state), str(state)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount (needs root): {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(state)], check=True, capture_output=True)
        path = tmp_path / "mailreleased.yaml"
        document = {"state_dir": str(state), "log": {"format": "json"}, "targets": [etrn(closed_port())]}
        path.write_text(yaml.safe_dump(document))

        code = cli.main(["once", "-c", str(path)])
        captured = capsys.readouterr()
    finally:
        subprocess.run(["umount", str(state)], check=False)

    assert code == 73
    assert "not writable" in captured.err
    assert signal_lines(captured.err) == []
