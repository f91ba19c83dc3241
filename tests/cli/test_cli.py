"""The CLI end to end: config errors, the every-N rule across restarts, the daemon's stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import ConnectionCounter, run_cli, write_config

BAD_CONFIGS = {
    "bad-port": (
        "targets:\n  - name: isp\n    method: etrn\n    host: h\n    port: 70000\n    domains: [x.example]\n",
        ":5: targets[0].port:",
    ),
    "unknown-key": (
        "targets:\n  - name: isp\n    method: etrn\n    host: h\n    domain: [x.example]\n",
        ":5: targets[0].domain: unknown key 'domain'; did you mean 'domains'?",
    ),
    "missing-password-file": (
        "targets:\n  - name: isp\n    method: etrn\n    host: h\n    domains: [x.example]\n"
        "    auth: {username: u, password_file: /nonexistent/mailreleased-pw}\n",
        ":6: targets[0].auth: password file '/nonexistent/mailreleased-pw' not found",
    ),
    "malformed-yaml": (
        "targets:\n  - name: isp\n   method: etrn\n",
        ":3: malformed YAML",
    ),
    "domain-crlf": (
        'targets:\n  - name: isp\n    method: etrn\n    host: h\n    domains: ["x.example\\r\\nDATA"]\n',
        ":5: targets[0].domains:",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["once", "check-config", "run"])
def test_config_error_is_one_line(tmp_path: Path, case: str, command: str) -> None:
    """Each user mistake gives one located line, exit 78 and no traceback."""
    text, expected = BAD_CONFIGS[case]
    config = write_config(tmp_path / "bad.yaml", text)
    result = run_cli(command, "-c", str(config))
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mailreleased: error: {config}")
    assert expected in lines[0]
    assert result.stdout == ""


def _connect_config(tmp_path: Path, port: int, every: int, interval: str = "5m") -> Path:
    return write_config(
        tmp_path / "mailreleased.yaml",
        f"""\
schedule: {{interval: {interval}}}
state_dir: {tmp_path}/state
log: {{format: json, level: info}}
control: {{socket: {tmp_path}/control.sock}}
targets:
  - name: poke
    method: connect
    host: 127.0.0.1
    port: {port}
    every: {every}
    timeouts: {{connect: 5s, greeting: 5s, reply: 5s}}
""",
    )


def test_every_three_across_restarts(tmp_path: Path, counter: ConnectionCounter) -> None:
    """every: 3 signals on runs 1, 4 and 7; each run is a new process."""
    config = _connect_config(tmp_path, counter.port, every=3)
    outcomes = []
    for _ in range(7):
        result = run_cli("once", "-c", str(config), "--json")
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(records) == 1
        outcomes.append(records[0]["outcome"])
    assert outcomes == ["released", "skipped", "skipped", "released", "skipped", "skipped", "released"]
    assert counter.count == 3


def test_force_bypasses_the_rule(tmp_path: Path, counter: ConnectionCounter) -> None:
    """--force signals on a run the rule would skip and leaves the counter alone."""
    config = _connect_config(tmp_path, counter.port, every=3)
    assert run_cli("once", "-c", str(config)).returncode == 0
    forced = run_cli("once", "-c", str(config), "--json", "--force")
    assert json.loads(forced.stdout)["outcome"] == "released"
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["targets"]["poke"]["runs"] == 1


def test_json_record_keys(tmp_path: Path, counter: ConnectionCounter) -> None:
    """once --json prints the documented keys, null where unused."""
    config = _connect_config(tmp_path, counter.port, every=0)
    result = run_cli("once", "-c", str(config), "--json")
    record = json.loads(result.stdout)
    assert list(record) == [
        "target", "method", "host", "port", "domain", "outcome",
        "code", "reply", "duration_ms", "messages", "bytes",
    ]
    assert record["messages"] is None
    assert record["port"] == counter.port


def test_unknown_target_name(tmp_path: Path, counter: ConnectionCounter) -> None:
    """--target with an unknown name lists the configured ones."""
    config = _connect_config(tmp_path, counter.port, every=0)
    result = run_cli("once", "-c", str(config), "--target", "nope")
    assert result.returncode == 64
    assert "unknown target 'nope'" in result.stderr
    assert "poke" in result.stderr


def test_connect_failed_exit_code(tmp_path: Path) -> None:
    """A closed port gives connect_failed and exit 75."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = _connect_config(tmp_path, closed_port, every=0)
    result = run_cli("once", "-c", str(config), "--json")
    assert json.loads(result.stdout)["outcome"] == "connect_failed"
    assert result.returncode == 75


def test_daemon_runs_and_stops_on_sigterm(tmp_path: Path, counter: ConnectionCounter) -> None:
    """run with a 1 s interval performs several runs and exits 0 within 2 s of SIGTERM."""
    config = _connect_config(tmp_path, counter.port, every=0, interval="1s")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailreleased", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": ""},
    )
    try:
        deadline = time.monotonic() + 30
        while counter.count < 3 and time.monotonic() < deadline and process.poll() is None:
            counter.event.wait(timeout=0.5)
            counter.event.clear()
        assert counter.count >= 3
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        _, stderr = process.communicate(timeout=10)
        elapsed = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert process.returncode == 0, stderr
    assert elapsed < 2.0
    assert "Traceback" not in stderr
