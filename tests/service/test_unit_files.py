"""The systemd unit files: `systemd-analyze verify` is clean and the sandbox scores well.

systemd-analyze comes from the Debian "systemd" package (.ci/install-service-tools
installs it). The tests skip without it, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = {
    "mailreleased.service": "mailreleased.service",
    "mailreleased@.service": "mailreleased@isp2.service",
}
MAX_EXPOSURE = 2.0
# Settings that differ between the plain and the template unit on purpose.
PER_INSTANCE_KEYS = {"Description", "ExecStart", "Environment", "StateDirectory", "RuntimeDirectory", "LoadCredential"}


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing; run .ci/install-service-tools as root")
        pytest.skip("systemd-analyze is missing (Debian package: systemd)")
    return path


def _installed_copy(tmp_path: Path, source: str, name: str) -> Path:
    """Copy a unit, pointing ExecStart at an executable that exists, because verify checks it."""
    executable = Path(sys.executable).with_name("mailreleased")
    assert executable.exists(), f"{executable} missing; install the package into the venv"
    text = (ROOT / "systemd" / source).read_text()
    copy = tmp_path / name
    copy.write_text(text.replace("/usr/local/bin/mailreleased", str(executable)))
    return copy


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_verifies_cleanly(tmp_path: Path, source: str) -> None:
    """verify exits 0 and prints nothing, because it reports unknown keys only as warnings."""
    analyze = _systemd_analyze()
    unit = _installed_copy(tmp_path, source, UNITS[source])
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    own_lines = [line for line in result.stderr.splitlines() if unit.name in line]
    assert own_lines == []


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_exposure_is_low(tmp_path: Path, source: str) -> None:
    """The offline security score stays at or below 2.0 ("OK")."""
    analyze = _systemd_analyze()
    unit = _installed_copy(tmp_path, source, UNITS[source])
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def _service_settings(source: str) -> set[tuple[str, str]]:
    settings = set()
    section = ""
    for line in (ROOT / "systemd" / source).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if key not in PER_INSTANCE_KEYS:
                settings.add((key, value))
    return settings


def test_template_matches_main_unit() -> None:
    """Both units share every setting except the per-instance paths."""
    assert _service_settings("mailreleased.service") == _service_settings("mailreleased@.service")


def test_unit_uses_notify_and_directories() -> None:
    """The unit declares what the daemon relies on: notify, watchdog and its directories."""
    settings = dict(_service_settings("mailreleased.service"))
    assert settings["Type"] == "notify"
    text = (ROOT / "systemd" / "mailreleased.service").read_text()
    for line in ("StateDirectory=mailreleased", "RuntimeDirectory=mailreleased", "ConfigurationDirectory=mailreleased"):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
    assert "WatchdogSec=" in text
    assert "${CREDENTIALS_DIRECTORY}/isp" in text
