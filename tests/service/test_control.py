"""The control socket: status, release, errors, and the socket file's life cycle."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from mailreleased.control import ControlServer, ControlSocketInUse, ControlSocketUnavailable, prepare_socket_path
from mailreleased.outcome import Outcome
from tests.service.conftest import POKE_TARGETS, WAIT, ScriptedSignaler, running_daemon, write_config


async def _first_run_done(signaler: ScriptedSignaler, name: str) -> None:
    while signaler.count(name) == 0:
        signaler.started.clear()
        await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)


async def test_status_reports_targets(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """status lists each target with its counter, last outcome and next run."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        await _first_run_done(signaler, "alpha")
        response = await daemon.request({"command": "release", "targets": ["alpha"]})
        assert response["ok"] is True
        status = await daemon.request({"command": "status"})
    assert status["ok"] is True
    assert status["scheduler_running"] is True
    assert status["problems"] == []
    by_name = {target["name"]: target for target in status["targets"]}
    assert set(by_name) == {"alpha", "beta"}
    assert by_name["alpha"]["runs"] == 2
    assert by_name["alpha"]["last_outcome"] == "released"
    assert by_name["alpha"]["last_success"] is not None
    assert by_name["alpha"]["next_run"] is not None


async def test_release_applies_every_rule(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """Without force, run 2 of an every-3 target is skipped; with force it signals."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        await _first_run_done(signaler, "beta")
        plain = await daemon.request({"command": "release", "targets": ["beta"]})
        forced = await daemon.request({"command": "release", "targets": ["beta"], "force": True})
    assert [record["outcome"] for record in plain["records"]] == ["skipped"]
    assert [record["outcome"] for record in forced["records"]] == ["released"]
    assert signaler.count("beta") == 2


async def test_release_unknown_target(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """An unknown target name is rejected with the configured names."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        response = await daemon.request({"command": "release", "targets": ["gamma"]})
    assert response["ok"] is False
    assert response["unknown_target"] == "gamma"
    assert "alpha, beta" in response["error"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json\n", "not valid JSON"),
        (b"[1, 2]\n", '"command" string'),
        (b'{"command": "dance"}\n', "unknown command 'dance'"),
    ],
    ids=["not-json", "not-object", "unknown-command"],
)
async def test_bad_request_gets_error(tmp_path: Path, signaler: ScriptedSignaler, line: bytes, message: str) -> None:
    """A malformed request gets an error response and the connection stays usable."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        reader, writer = await asyncio.open_unix_connection(str(daemon.socket))
        writer.write(line + b'{"command": "ping"}\n')
        first = json.loads(await asyncio.wait_for(reader.readline(), timeout=WAIT))
        second = json.loads(await asyncio.wait_for(reader.readline(), timeout=WAIT))
        writer.close()
    assert first["ok"] is False
    assert message in first["error"]
    assert second == {"ok": True, "pid": os.getpid()}


async def test_socket_mode_and_removal(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """The socket is mode 0660 while the daemon runs and is gone after it stops."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
        path = daemon.socket
    assert mode == 0o660
    assert not path.exists()


async def test_second_daemon_is_rejected(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """A daemon listening on the socket makes a second start fail; its socket survives."""
    async with running_daemon(write_config(tmp_path, POKE_TARGETS)) as daemon:
        with pytest.raises(ControlSocketInUse):
            await asyncio.to_thread(prepare_socket_path, daemon.socket)
        assert (await daemon.request({"command": "ping"}))["ok"] is True


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    """A socket file without a listener is removed."""
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))
    prepare_socket_path(path)
    assert not path.exists()


def test_regular_file_is_not_removed(tmp_path: Path) -> None:
    """A regular file at the socket path is left alone and start-up fails."""
    path = tmp_path / "control.sock"
    path.write_text("keep me")
    with pytest.raises(ControlSocketUnavailable, match="not a socket"):
        prepare_socket_path(path)
    assert path.read_text() == "keep me"


async def test_close_keeps_successor_socket(tmp_path: Path) -> None:
    """Closing a server does not unlink a socket file that another server created since."""

    async def handler(request: dict[str, object]) -> dict[str, object]:
        return {"ok": True}

    path = tmp_path / "control.sock"
    server = ControlServer(path, handler)
    await server.start()
    path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as successor:
        successor.bind(str(path))
        await server.close()
        assert path.exists()


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailreleased", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=WAIT * 2)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cli_release_prints_records(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """release --json prints the once --json objects and exits like once."""
    config = write_config(tmp_path, POKE_TARGETS)
    signaler.outcomes["alpha"] = [Outcome.RELEASED, Outcome.TEMPFAIL]
    async with running_daemon(config):
        await _first_run_done(signaler, "alpha")
        code, stdout, stderr = await _cli("release", "-c", str(config), "--target", "alpha", "--json")
    assert code == 75, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [record["outcome"] for record in records] == ["tempfail"]
    assert set(records[0]) == {
        "target", "method", "host", "port", "domain", "outcome", "code", "reply", "duration_ms", "messages", "bytes",
    }


async def test_cli_release_unknown_target(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """release --target with an unknown name exits 64 like once."""
    config = write_config(tmp_path, POKE_TARGETS)
    async with running_daemon(config):
        code, _stdout, stderr = await _cli("release", "-c", str(config), "--target", "gamma")
    assert code == 64
    assert "unknown target 'gamma'" in stderr


async def test_cli_status_check_healthy(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """status --check exits 0 for a healthy daemon and prints each target."""
    config = write_config(tmp_path, POKE_TARGETS)
    async with running_daemon(config):
        code, stdout, stderr = await _cli("status", "-c", str(config), "--check")
    assert code == 0, stderr
    assert "alpha (connect)" in stdout
    assert "problems: none" in stdout


async def test_cli_status_check_alert_after(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """status --check exits 1 when a target has had no success for longer than alert_after."""
    targets = "- {name: alpha, method: connect, host: 127.0.0.1, port: 9, alert_after: 1s}\n"
    config = write_config(tmp_path, targets)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text(json.dumps(
        {"version": 1, "targets": {"alpha": {"runs": 4, "last_success": 1000.0}}}
    ))
    signaler.gates["alpha"] = asyncio.Event()
    async with running_daemon(config):
        await asyncio.wait_for(signaler.started.wait(), timeout=WAIT)
        code, stdout, _stderr = await _cli("status", "-c", str(config), "--check", "--json")
        signaler.gates["alpha"].set()
    assert code == 1
    assert json.loads(stdout)["targets"][0]["in_flight"] is True
    problems = json.loads(stdout)["problems"]
    assert len(problems) == 1
    assert "alpha has had no success" in problems[0]


async def test_cli_status_unreachable(tmp_path: Path) -> None:
    """status exits 69 without a daemon, and status --check exits 1."""
    config = write_config(tmp_path, POKE_TARGETS)
    plain, _out, stderr = await _cli("status", "-c", str(config))
    checked, _out, _err = await _cli("status", "--socket", str(tmp_path / "run" / "control.sock"), "--check")
    assert plain == 69
    assert "no mailreleased daemon is listening" in stderr
    assert checked == 1
