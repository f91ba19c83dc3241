"""Tests for the command sink: argv expansion, exit statuses, timeouts and no shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mailreleased.config.model import CommandDelivery
from mailreleased.odmr.sinks.base import BodyIncomplete, Envelope
from mailreleased.odmr.sinks.command import CommandSink, expand_argv

from .helpers import body_of, broken_body

ENVELOPE = Envelope("alice@example.net", ("bob@example.org", "carol@example.org"), "ID1")

RECORDER = """
import json, sys
data = sys.stdin.buffer.read()
with open(sys.argv[1], "w") as out:
    json.dump({"argv": sys.argv[2:], "stdin": data.decode("latin-1")}, out)
sys.exit(int(sys.argv[2]))
"""


def sink_for(*argv: str, timeout: float = 30.0) -> CommandSink:
    return CommandSink(CommandDelivery(type="command", argv=argv, timeout=timeout))


def recorder(tmp_path: Path, status: int, *extra: str) -> tuple[CommandSink, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    output = tmp_path / "out.json"
    return sink_for(sys.executable, str(script), str(output), str(status), *extra), output


def test_expand_argv() -> None:
    """{recipients} alone becomes one item per recipient; inside an item it is comma-joined."""
    argv = ("prog", "-f", "{sender}", "--to={recipients}", "{recipients}")
    assert expand_argv(argv, ENVELOPE) == [
        "prog", "-f", "alice@example.net", "--to=bob@example.org,carol@example.org",
        "bob@example.org", "carol@example.org",
    ]
    assert expand_argv(("{sender}",), Envelope("", ("x@y.z",))) == ["<>"]


async def test_exit_zero_delivers(tmp_path: Path) -> None:
    """Exit 0 gives 250 and the program got the whole message on stdin and the expanded argv."""
    sink, output = recorder(tmp_path, 0, "-f", "{sender}", "{recipients}")
    result = await sink.deliver(ENVELOPE, body_of(b"Subject: x\r\n", b"\r\nbody\r\n"))
    assert result.code == 250
    recorded = json.loads(output.read_text())
    assert recorded["argv"] == ["0", "-f", "alice@example.net", "bob@example.org", "carol@example.org"]
    assert recorded["stdin"] == "Subject: x\r\n\r\nbody\r\n"


@pytest.mark.parametrize(("status", "code"), [(75, 451), (1, 554), (64, 554)])
async def test_exit_status_mapping(tmp_path: Path, status: int, code: int) -> None:
    """Exit 75 (EX_TEMPFAIL) gives 451; other non-zero statuses give 554."""
    sink, _ = recorder(tmp_path, status)
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == code


async def test_no_shell(tmp_path: Path) -> None:
    """An argv item with shell syntax reaches the program literally."""
    marker = tmp_path / "pwned"
    sink, output = recorder(tmp_path, 0, f"x; touch {marker}", "$(touch {marker})")
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 250
    assert json.loads(output.read_text())["argv"][1] == f"x; touch {marker}"
    assert not marker.exists()


async def test_timeout_kills_and_gives_451() -> None:
    """A program that never exits is killed at the timeout and the reply is 451."""
    sink = sink_for(sys.executable, "-c", "import signal; signal.pause()", timeout=0.5)
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 451


async def test_missing_program_gives_451(tmp_path: Path) -> None:
    """A program that cannot be started gives 451, so the provider keeps the message."""
    sink = sink_for(str(tmp_path / "missing"))
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 451


async def test_broken_body_kills_program(tmp_path: Path) -> None:
    """A body cut short raises through the sink and the program never reads EOF on stdin."""
    sink, output = recorder(tmp_path, 0)
    with pytest.raises(BodyIncomplete):
        await sink.deliver(ENVELOPE, broken_body(b"half"))
    assert not output.exists()


async def test_option_like_addresses_rejected() -> None:
    """Addresses starting with '-' never reach the program's argv."""
    sink = sink_for("true")
    assert (await sink.check_sender("-oQ@example.net")).code == 553
    assert (await sink.check_recipient("-X@example.org")).code == 553
