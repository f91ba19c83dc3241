"""Environment overrides for containers and template units, applied after the config loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailreleased.cli import apply_env_overrides
from mailreleased.config.loader import load_config
from mailreleased.errors import ConfigError
from tests.service.conftest import POKE_TARGETS, WAIT, write_config


def test_overrides_replace_keys(tmp_path: Path) -> None:
    """Each variable replaces its key; other keys and the targets stay as loaded."""
    config = load_config(write_config(tmp_path, POKE_TARGETS))
    updated = apply_env_overrides(config, {
        "MAILRELEASED_LOG_FORMAT": "json",
        "MAILRELEASED_LOG_LEVEL": "debug",
        "MAILRELEASED_STATE_DIR": "/var/lib/mailreleased/isp2",
        "MAILRELEASED_CONTROL_SOCKET": "/run/mailreleased/isp2/control.sock",
    })
    assert updated.log.format == "json"
    assert updated.log.level == "debug"
    assert updated.state_dir == Path("/var/lib/mailreleased/isp2")
    assert updated.control.socket == Path("/run/mailreleased/isp2/control.sock")
    assert updated.targets == config.targets
    assert updated.shutdown_grace == config.shutdown_grace


def test_unset_overrides_change_nothing(tmp_path: Path) -> None:
    """Without the variables the config object is returned unchanged."""
    config = load_config(write_config(tmp_path, POKE_TARGETS))
    assert apply_env_overrides(config, {"MAILRELEASED_LOG_FORMAT": ""}) is config


def test_invalid_override_names_variable(tmp_path: Path) -> None:
    """An invalid value is a config error that names the variable."""
    config = load_config(write_config(tmp_path, POKE_TARGETS))
    with pytest.raises(ConfigError, match="MAILRELEASED_LOG_FORMAT='xml' is invalid"):
        apply_env_overrides(config, {"MAILRELEASED_LOG_FORMAT": "xml"})


def test_invalid_override_exits_78(tmp_path: Path) -> None:
    """check-config with a bad override exits 78 like any config error."""
    config = write_config(tmp_path, POKE_TARGETS)
    result = subprocess.run(
        [sys.executable, "-m", "mailreleased", "check-config", "-c", str(config)],
        capture_output=True, text=True, timeout=WAIT, env={"MAILRELEASED_LOG_LEVEL": "loud", "PATH": "/usr/bin"},
    )
    assert result.returncode == 78
    assert "MAILRELEASED_LOG_LEVEL='loud' is invalid" in result.stderr
