"""mailreleased config files for the measures, written as YAML into a run's directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.procs import LOOPBACK
from bench.servers import DOMAIN, PASSWORD, USER


def write_config(directory: Path, targets: list[dict[str, Any]], *, interval: str = "1h") -> Path:
    """Write a config with ``targets``, state and control socket under ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "schedule": {"interval": interval},
        "state_dir": str(directory / "state"),
        "log": {"format": "json", "level": "info"},
        "control": {"socket": str(directory / "control.sock")},
        "targets": targets,
    }
    path = directory / "mailreleased.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def atrn_target(port: int, delivery: dict[str, Any], *, max_message_size: str = "50M") -> dict[str, Any]:
    """Return an ATRN target for the provider on ``port`` with the given delivery."""
    return {
        "name": "provider",
        "method": "atrn",
        "host": LOOPBACK,
        "port": port,
        "domains": [DOMAIN],
        "tls": "off",
        "auth": {"username": USER, "password": PASSWORD},
        "delivery": delivery,
        "receiver": {"max_message_size": max_message_size},
    }


def etrn_target(name: str, port: int, domains: list[str]) -> dict[str, Any]:
    """Return an ETRN target without TLS for ``domains`` on ``LOOPBACK:port``."""
    return {"name": name, "method": "etrn", "host": LOOPBACK, "port": port, "domains": domains, "tls": "off"}
