"""The Dockerfile, checked by reading it, because no container engine runs in CI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORDS = re.compile(r"password|passwd|secret|token|credential|api_?key", re.IGNORECASE)


def _instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert pending == "", "the Dockerfile ends inside a continuation line"
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _all(name: str) -> list[str]:
    return [arguments for instruction, arguments in _instructions() if instruction == name]


def test_base_image_is_slim_python() -> None:
    """The final stage builds on python:3.12-slim."""
    assert _all("FROM")[-1].split()[0] == "python:3.12-slim"


def test_runs_as_non_root() -> None:
    """The last USER is neither root nor UID 0."""
    users = _all("USER")
    assert users, "no USER instruction, so the container runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_healthcheck_runs_status_check() -> None:
    """HEALTHCHECK runs `mailreleased status --check` in exec form."""
    checks = _all("HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].split("CMD", 1)[1].strip()
    assert json.loads(command) == ["mailreleased", "status", "--check"]


def test_default_command_runs_daemon() -> None:
    """CMD starts the daemon in the foreground."""
    assert json.loads(_all("CMD")[-1]) == ["mailreleased", "run"]


@pytest.mark.parametrize("instruction", ["ENV", "ARG", "LABEL"])
def test_no_secret_in_build_values(instruction: str) -> None:
    """No ENV, ARG or LABEL contains a password, secret or token."""
    for arguments in _all(instruction):
        assert not SECRET_WORDS.search(arguments), f"{instruction} {arguments}"


def test_copies_only_package_files() -> None:
    """COPY takes the package sources, never configs or credentials."""
    sources = [part for arguments in _all("COPY") for part in arguments.split()[:-1] if not part.startswith("--")]
    assert sources, "nothing is copied into the image"
    for source in sources:
        assert source in ("pyproject.toml", "README.md", "mailreleased"), source


def test_state_volume_and_json_logs() -> None:
    """State lives in a volume and logs are JSON whether or not a TTY is attached."""
    assert "/var/lib/mailreleased" in _all("VOLUME")
    assert any("MAILRELEASED_LOG_FORMAT=json" in arguments for arguments in _all("ENV"))


def test_dockerignore_is_an_allowlist() -> None:
    """.dockerignore excludes everything except the package, so stray files stay out."""
    lines = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!pyproject.toml", "!README.md", "!mailreleased/"}
