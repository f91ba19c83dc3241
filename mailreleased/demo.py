"""``mailreleased demo``: release mail from the built-in loopback provider with ETRN and ATRN.

The demo starts the test provider on 127.0.0.1 with a few queued messages.
It writes a commented config with one ETRN and one ATRN target, and a
password file, and loads the config through the normal loader. Then it runs
one processing run and prints the outcomes and where the released mail
landed. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mailreleased.outcome import EX_SOFTWARE, SUCCESS_OUTCOMES, SignalRecord, exit_code_for_run
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

DEMO_DOMAIN = "example.test"
DEMO_USER = "demo-customer"
DEMO_MESSAGES = 5
DEMO_MESSAGE_SIZE = 2048
# Upper bound in seconds for the processing run, so a stuck peer ends the demo instead of hanging it.
DEMO_TIME_LIMIT = 60.0
# Seconds the provider waits for each command or reply.
PROVIDER_TIMEOUT = 15.0

CONFIG_TEMPLATE = """\
# mailreleased demo configuration, written by `mailreleased demo`.
# Both targets point at the built-in test provider, which listened on
# 127.0.0.1:{port} only while the demo ran.

schedule:
  interval: 5m
state_dir: {directory}/state        # run counters and last outcomes
log:
  format: console
  level: warning
control:
  socket: {directory}/control.sock

targets:
  # ETRN (RFC 1985): ask the provider to start its queue for the domain.
  # The provider only records the request; it does not open a connection back.
  - name: demo-etrn
    method: etrn
    host: 127.0.0.1
    port: {port}
    domains: [{domain}]
    tls: "off"                      # loopback only; use starttls with a real provider
    timeouts: {{connect: 5s, greeting: 10s, reply: 10s}}

  # ODMR (RFC 2645): AUTH CRAM-MD5, then ATRN; the provider turns the line
  # around and delivers the queued mail over the same connection.
  - name: demo-atrn
    method: atrn
    host: 127.0.0.1
    port: {port}
    domains: [{domain}]
    tls: "off"                      # CRAM-MD5 never sends the password itself
    auth:
      username: {user}
      password_file: {directory}/atrn.password
      mechanisms: [CRAM-MD5]
    timeouts: {{connect: 5s, greeting: 10s, reply: 10s}}
    delivery: {{type: maildir, path: {directory}/Maildir}}
"""


def write_demo_config(directory: Path, port: int, password: str) -> Path:
    """Write the password file and the demo config into ``directory``; return the config path."""
    password_file = directory / "atrn.password"
    password_file.touch(mode=0o600)
    password_file.chmod(0o600)
    password_file.write_text(password + "\n", encoding="utf-8")
    config_path = directory / "mailreleased.yaml"
    config_path.write_text(
        CONFIG_TEMPLATE.format(directory=directory, port=port, domain=DEMO_DOMAIN, user=DEMO_USER),
        encoding="utf-8",
    )
    return config_path


def format_table(records: Sequence[SignalRecord]) -> str:
    """Format records as a plain-text table: target, method, outcome, code, messages, bytes."""
    header = ("target", "method", "outcome", "code", "messages", "bytes")
    rows = [header] + [
        (
            record.target,
            record.method,
            str(record.outcome),
            _cell(record.code),
            _cell(record.messages),
            _cell(record.bytes),
        )
        for record in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


async def run_demo(directory: Path | None) -> int:
    """Run the demo in ``directory`` (a new temporary directory when None); return the exit code."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="mailreleased-demo-"))
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        from mailreleased.runner import run_once
    except ImportError as exc:
        print(f"error: the demo needs mailreleased.runner, which failed to import: {exc}", file=sys.stderr)
        return EX_SOFTWARE
    from mailreleased.config.loader import load_config
    from mailreleased.log import configure_logging, register_secret

    password = secrets.token_urlsafe(18)
    register_secret(password, DEMO_USER)
    queue = make_messages(DEMO_DOMAIN, DEMO_MESSAGES, DEMO_MESSAGE_SIZE)
    async with Provider(
        domains=[DEMO_DOMAIN],
        users={DEMO_USER: password},
        queue=queue,
        command_timeout=PROVIDER_TIMEOUT,
        reply_timeout=PROVIDER_TIMEOUT,
        record_transcript=False,
    ) as provider:
        config_path = write_demo_config(directory, provider.port, password)
        config = load_config(config_path)
        configure_logging(config.log.format, config.log.level)
        print(f"provider listening on {provider.host}:{provider.port} with {len(queue)} messages for {DEMO_DOMAIN}")
        print(f"config written to {config_path}")
        async with asyncio.timeout(DEMO_TIME_LIMIT):
            records = await run_once(config, force=True)
            await provider.wait_idle(PROVIDER_TIMEOUT)
        etrn_requests = list(provider.etrn_requests)
        delivered = len(provider.delivered)
        still_queued = len(provider.queue)
    print()
    print(format_table(records))
    print()
    print(_summary(directory, etrn_requests, delivered, still_queued))
    return _exit_code(records, still_queued)


def _summary(directory: Path, etrn_requests: list[str], delivered: int, still_queued: int) -> str:
    new = directory / "Maildir" / "new"
    count = len(os.listdir(new)) if new.is_dir() else 0
    lines = [
        f"ETRN requests the provider recorded: {', '.join(etrn_requests) or 'none'}",
        f"released mail: {delivered} messages delivered in this run; {new} now holds {count} files",
        f"messages still queued at the provider: {still_queued}",
        f"demo files are in {directory}; remove the directory when done",
    ]
    return "\n".join(lines)


def _exit_code(records: Sequence[SignalRecord], still_queued: int) -> int:
    if all(record.outcome in SUCCESS_OUTCOMES for record in records) and still_queued == 0:
        return 0
    code = exit_code_for_run([record.outcome for record in records])
    return code if code != 0 else EX_SOFTWARE


def main_demo(directory: Path | None = None) -> int:
    """Run ``mailreleased demo [--dir DIR]`` and return its exit code."""
    return asyncio.run(run_demo(directory))
