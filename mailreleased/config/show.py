"""Render the effective configuration (defaults filled in, secrets masked) as YAML."""

from __future__ import annotations

from typing import Any

import yaml

from mailreleased.config.model import Config, Method

MASK = "***"


def effective_config(config: Config) -> dict[str, Any]:
    """Return the config as plain data with defaults filled in and secrets masked."""
    data = config.model_dump(mode="json", exclude_none=True)
    for target_data, target in zip(data["targets"], config.targets):
        if target.port is not None or target.method is not Method.CONNECT:
            target_data["port"] = target.effective_port
        target_data["ehlo"] = target.use_ehlo
        target_data.setdefault("timeouts", {})["reply"] = target.reply_timeout
        auth = target_data.get("auth")
        if auth is not None and "password" in auth:
            auth["password"] = MASK
    return data


def render_effective_config(config: Config) -> str:
    """Return the effective config as a YAML document."""
    return yaml.safe_dump(effective_config(config), sort_keys=False, default_flow_style=False)
