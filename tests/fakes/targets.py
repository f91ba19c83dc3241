"""Target configurations aimed at loopback fakes."""

from __future__ import annotations

import socket
from typing import Any

from mailreleased.config.model import Target

# Generous bounds so that a hung test fails instead of waiting forever.
TEST_TIMEOUTS = {"connect": 5, "greeting": 5, "reply": 5}


def make_target(port: int, **overrides: Any) -> Target:
    """Return an ETRN target for 127.0.0.1:``port`` with TLS off; ``overrides`` replace keys."""
    data: dict[str, Any] = {
        "name": "fake",
        "method": "etrn",
        "host": "127.0.0.1",
        "port": port,
        "domains": ["example.org"],
        "helo_name": "client.test",
        "tls": "off",
        "timeouts": dict(TEST_TIMEOUTS),
    }
    data.update(overrides)
    return Target.model_validate(data)


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
