"""Run ``mailreleased once --json`` as a subprocess and parse its outcome records."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Keys of every record that ``once --json`` prints.
RECORD_KEYS = frozenset(
    {"target", "method", "host", "port", "domain", "outcome", "code", "reply", "duration_ms", "messages", "bytes"}
)


@dataclasses.dataclass
class OnceResult:
    """The exit code, raw output and parsed JSON records of one ``once`` run."""

    returncode: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]]

    def single(self) -> dict[str, Any]:
        """Return the only record; raise AssertionError with the output if there is not exactly one."""
        assert len(self.records) == 1, f"expected 1 outcome record, got {len(self.records)}\n{self.describe()}"
        return self.records[0]

    def describe(self) -> str:
        """Return the exit code and output, for assertion messages."""
        return f"exit code {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-6000:]}"


def write_config(directory: Path, targets: list[dict[str, Any]]) -> Path:
    """Write a ``once`` config with debug JSON logs and ``targets`` to ``directory/config.yaml``."""
    config = {
        "schedule": {"interval": "5m"},
        "state_dir": str(directory / "state"),
        "log": {"format": "json", "level": "debug"},
        "targets": targets,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_once(directory: Path, targets: list[dict[str, Any]], timeout: float = 120.0) -> OnceResult:
    """Run ``python -m mailreleased once -c CONFIG --json`` for ``targets``.

    stdout must hold one JSON object per line. Raises AssertionError when a
    line is not a JSON object or lacks a record key, and
    subprocess.TimeoutExpired after ``timeout`` seconds.
    """
    config = write_config(directory, targets)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", "mailreleased", "once", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=directory,
        env=environment,
    )
    records = []
    for line in completed.stdout.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"stdout line is not JSON: {line!r}\n{completed.stderr[-4000:]}") from None
        assert isinstance(record, dict), f"stdout line is not a JSON object: {line!r}"
        missing = RECORD_KEYS - record.keys()
        assert not missing, f"record lacks keys {sorted(missing)}: {line!r}"
        records.append(record)
    return OnceResult(completed.returncode, completed.stdout, completed.stderr, records)
