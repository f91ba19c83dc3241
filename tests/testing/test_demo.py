"""The ``mailreleased demo`` command body: config it writes, table it prints, end-to-end run."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest

from mailreleased.config.loader import load_config
from mailreleased.config.model import Method, TlsMode
from mailreleased.demo import DEMO_MESSAGES, format_table, run_demo, write_demo_config
from mailreleased.outcome import Outcome, SignalRecord

# The ATRN signaler is written separately; the end-to-end demo needs it.
ATRN_AVAILABLE = importlib.util.find_spec("mailreleased.odmr.atrn") is not None


def test_demo_config_loads(tmp_path: Path) -> None:
    """The written config passes the real loader with one ETRN and one ATRN target."""
    config = load_config(write_demo_config(tmp_path, 4321, "pw-123456"))
    etrn, atrn = config.targets
    assert (etrn.method, atrn.method) == (Method.ETRN, Method.ATRN)
    assert etrn.host == atrn.host == "127.0.0.1"
    assert etrn.port == atrn.port == 4321
    assert atrn.tls is TlsMode.OFF
    assert atrn.auth is not None
    assert atrn.auth.mechanisms == ("CRAM-MD5",)
    assert atrn.auth.secret.get_secret_value() == "pw-123456"
    assert config.state_dir == tmp_path / "state"


def test_demo_password_file_private(tmp_path: Path) -> None:
    """The password file is readable by its owner only."""
    write_demo_config(tmp_path, 4321, "pw-123456")
    mode = stat.S_IMODE((tmp_path / "atrn.password").stat().st_mode)
    assert mode == 0o600


def test_demo_table_columns() -> None:
    """The table has one header row and one row per record, with '-' for missing values."""
    record = SignalRecord("demo-etrn", "etrn", "127.0.0.1", 1, "example.test", Outcome.RELEASED, code=250)
    lines = format_table([record]).splitlines()
    assert lines[0].split() == ["target", "method", "outcome", "code", "messages", "bytes"]
    assert lines[1].split() == ["demo-etrn", "etrn", "released", "250", "-", "-"]


@pytest.mark.skipif(not ATRN_AVAILABLE, reason="the ATRN signaler mailreleased.odmr.atrn is not in this build yet")
async def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One demo run releases every queued message into the Maildir and exits 0."""
    status = await run_demo(tmp_path)
    output = capsys.readouterr().out
    assert status == 0, output
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == DEMO_MESSAGES
    assert f"released mail: {DEMO_MESSAGES} messages delivered" in output
    assert "demo-etrn" in output
    assert "demo-atrn" in output
