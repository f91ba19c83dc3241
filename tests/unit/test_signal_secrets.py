"""The password never shows up in logs, records, exceptions or tracebacks."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.tracebacks import ExceptionDictTransformer

from mailreleased.config.model import Target
from mailreleased.errors import SessionError
from mailreleased.signal import signal_target
from mailreleased.smtp import open_session
from tests.fakes.smtp import Auth, FakeSmtpServer, Hang, Script, StartTls, Step, TlsFiles, make_tls
from tests.fakes.targets import make_target

USERNAME = "user@example.org"
PASSWORD = "Corr3ct-Horse-Battery"


def secret_forms() -> list[str]:
    """The password and every base64 form of it that a mechanism could send."""
    plain_blob = f"\0{USERNAME}\0{PASSWORD}".encode()
    return [
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(plain_blob).decode(),
        # The same blob without padding, as it could appear cut short.
        base64.b64encode(plain_blob).decode().rstrip("="),
    ]


@pytest.fixture
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture every structlog event at debug level, then restore the configuration."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as entries:
            yield entries
    finally:
        structlog.configure(**saved)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


def auth_target(port: int, tls: TlsFiles, mechanism: str, **overrides: Any) -> Target:
    return make_target(
        port,
        tls="starttls",
        tls_ca_file=str(tls.ca_file),
        auth={"username": USERNAME, "password": PASSWORD, "mechanisms": [mechanism]},
        **overrides,
    )


def assert_no_secret(text: str) -> None:
    for form in secret_forms():
        assert form not in text


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_secret_not_in_logs_or_records(
    tls: TlsFiles, debug_logs: list[MutableMapping[str, Any]], mechanism: str
) -> None:
    """A successful AUTH leaves no trace of the password at debug level."""
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 STARTTLS"),
            Step("STARTTLS", StartTls()),
            Step("EHLO", "250-fake.test\n250 AUTH PLAIN LOGIN CRAM-MD5"),
            Step(f"AUTH {mechanism}", Auth(mechanism, USERNAME, PASSWORD)),
            Step("ETRN", "250 OK"),
        )
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        records = await signal_target(auth_target(server.port, tls, mechanism))
    assert server.connections[0].auth_ok is True
    wire_lines = [entry["line"] for entry in debug_logs if entry.get("event") == "wire"]
    assert any(line.startswith(f"AUTH {mechanism}") for line in wire_lines)
    assert any("***" in line for line in wire_lines)
    assert_no_secret(json.dumps(debug_logs, default=repr))
    assert_no_secret(repr(records))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_secret_not_in_failures(tls: TlsFiles, debug_logs: list[MutableMapping[str, Any]], mechanism: str) -> None:
    """A rejected AUTH: records and logs carry no password."""
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 STARTTLS"),
            Step("STARTTLS", StartTls()),
            Step("EHLO", "250-fake.test\n250 AUTH PLAIN LOGIN CRAM-MD5"),
            Step(f"AUTH {mechanism}", Auth(mechanism, USERNAME, "another password")),
        )
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        records = await signal_target(auth_target(server.port, tls, mechanism))
    assert server.connections[0].auth_ok is False
    assert_no_secret(json.dumps(debug_logs, default=repr))
    assert_no_secret(repr(records))


async def test_secret_not_in_traceback_locals(tls: TlsFiles, debug_logs: list[MutableMapping[str, Any]]) -> None:
    """A timeout during AUTH PLAIN: the exception, rendered with locals, contains no password."""
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 STARTTLS"),
            Step("STARTTLS", StartTls()),
            Step("EHLO", "250-fake.test\n250 AUTH PLAIN"),
            Step("AUTH PLAIN", Hang()),
        )
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        target = auth_target(server.port, tls, "PLAIN", timeouts={"connect": 5, "greeting": 5, "reply": 0.2})
        with pytest.raises(SessionError) as caught:
            await open_session(target, "127.0.0.1")
    rendered = ExceptionDictTransformer(show_locals=True, locals_max_string=10_000)(
        (caught.type, caught.value, caught.tb)
    )
    assert_no_secret(json.dumps(rendered, default=repr))
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))
    assert_no_secret(json.dumps(debug_logs, default=repr))
