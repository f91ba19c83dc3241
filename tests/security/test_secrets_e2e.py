"""Secrets end to end: AUTH through the real CLI with debug logging leaks no password.

Each test starts the loopback provider on a background loop, runs
``python -m mailreleased once`` as a subprocess with ``log.level: debug``,
and searches standard output and error for the password in every form an
SMTP client sends it: plain, base64, and the base64 PLAIN blob.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider
from tests.reliability.servers import BackgroundLoop, background_loop

USER = "customer"
PASSWORD = "Zq7-unusual-Passw0rd"
DOMAIN = "example.test"
CLI_TIMEOUT = 60


def secret_forms(user: str, password: str) -> list[str]:
    """Return the password as it may appear on the wire or in a careless log."""
    forms = [password, base64.b64encode(password.encode()).decode()]
    for blob in (f"\0{user}\0{password}", f"{user}\0{user}\0{password}"):
        forms.append(base64.b64encode(blob.encode()).decode())
    # Base64 of the password shifted by one or two bytes, as it appears inside a longer blob.
    for prefix in ("\0", "\0\0"):
        encoded = base64.b64encode((prefix + password).encode()).decode()
        forms.append(encoded[4:-4])
    return forms


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    """A background event loop for the provider."""
    with background_loop() as background:
        yield background


def start_provider(loop: BackgroundLoop, **kwargs: Any) -> Provider:
    """Start a provider that accepts USER with PASSWORD."""
    provider = Provider(users={USER: PASSWORD}, **kwargs)
    loop.call(provider.start())
    return provider


def run_once(tmp_path: Path, target: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run ``mailreleased once --json`` with debug JSON logging for one target."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(PASSWORD + "\n")
    target["auth"] = {"username": USER, "password_file": str(secret_file), **target.get("auth", {})}
    config = tmp_path / "mailreleased.yaml"
    document = {"state_dir": str(tmp_path / "state"), "log": {"format": "json", "level": "debug"}, "targets": [target]}
    config.write_text(yaml.safe_dump(document))
    return subprocess.run(
        [sys.executable, "-m", "mailreleased", "once", "-c", str(config), "--json"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )


def assert_no_secret(output: str) -> None:
    """Fail if any form of the password appears in ``output``."""
    for form in secret_forms(USER, PASSWORD):
        assert form not in output, f"secret form {form!r} found in output"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_debug_log_has_no_secret(mechanism: str, tmp_path: Path, loop: BackgroundLoop) -> None:
    """A successful AUTH logged at debug level shows the exchange, never the password."""
    provider = start_provider(loop)
    try:
        target = {"name": "isp", "method": "etrn", "host": "127.0.0.1", "port": provider.port, "domains": [DOMAIN],
                  "tls": "off", "auth": {"mechanisms": [mechanism], "allow_plaintext": True}}
        result = run_once(tmp_path, target)
    finally:
        loop.call(provider.close())

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["outcome"] == "released"
    assert '"level": "debug"' in result.stderr, "debug logging was not on, so the test proves nothing"
    assert "AUTH" in result.stderr, "the AUTH exchange was not logged"
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_failed_auth_has_no_secret(mechanism: str, tmp_path: Path, loop: BackgroundLoop) -> None:
    """A rejected AUTH (535) leaks no secret in the record, log or error text."""
    provider = start_provider(loop, faults=Faults(refuse_auth=True))
    try:
        target = {"name": "isp", "method": "etrn", "host": "127.0.0.1", "port": provider.port, "domains": [DOMAIN],
                  "tls": "off", "auth": {"mechanisms": [mechanism], "allow_plaintext": True}}
        result = run_once(tmp_path, target)
    finally:
        loop.call(provider.close())

    assert result.returncode == 77, result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_atrn_debug_log_has_no_secret(tmp_path: Path, loop: BackgroundLoop) -> None:
    """An ATRN drain at debug level leaks no secret either."""
    provider = start_provider(loop, queue=make_messages(DOMAIN, 3))
    try:
        target = {"name": "odmr", "method": "atrn", "host": "127.0.0.1", "port": provider.port, "domains": [DOMAIN],
                  "tls": "off", "auth": {"mechanisms": ["PLAIN"], "allow_plaintext": True},
                  "delivery": {"type": "maildir", "path": str(tmp_path / "Maildir")}}
        result = run_once(tmp_path, target)
    finally:
        loop.call(provider.close())

    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 3
    assert_no_secret(result.stdout + result.stderr)


def test_plaintext_auth_refused_without_tls(tmp_path: Path, loop: BackgroundLoop) -> None:
    """PLAIN and LOGIN are never sent on a cleartext link unless allow_plaintext is true."""
    provider = start_provider(loop)
    try:
        target = {"name": "isp", "method": "etrn", "host": "127.0.0.1", "port": provider.port, "domains": [DOMAIN],
                  "tls": "off", "auth": {"mechanisms": ["PLAIN", "LOGIN"]}}
        result = run_once(tmp_path, target)
        received = provider.received_lines()
    finally:
        loop.call(provider.close())

    record = json.loads(result.stdout.splitlines()[0])
    assert record["outcome"] == "auth_failed"
    assert result.returncode == 77
    assert not any(line.upper().startswith("AUTH") for line in received), received
    assert "<auth answer>" not in [line for line in received]
    assert_no_secret(result.stdout + result.stderr)


def test_tls_verify_rejects_unknown_ca(tmp_path: Path, loop: BackgroundLoop) -> None:
    """With default settings a certificate from an unknown CA fails verification."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    provider = start_provider(loop, tls_context=context)
    try:
        target = {"name": "isp", "method": "etrn", "host": "127.0.0.1", "port": provider.port, "domains": [DOMAIN],
                  "tls": "starttls", "auth": {"mechanisms": ["PLAIN"]}}
        result = run_once(tmp_path, target)
        received = provider.received_lines()
    finally:
        loop.call(provider.close())

    record = json.loads(result.stdout.splitlines()[0])
    assert record["outcome"] == "tls_failed"
    assert not any(line.upper().startswith("AUTH") for line in received)
    assert_no_secret(result.stdout + result.stderr)
