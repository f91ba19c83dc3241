"""The finger method against Debian's in.fingerd (run per connection by socat)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peers.cli import run_once
from peers.fingerd import FingerServer

pytestmark = pytest.mark.interop

# in.fingerd replies to every request with one of these: an empty request
# lists logged-in users, a name gets a user entry or "no such user", and
# "@host" forwarding is disabled.
FINGERD_TEXTS = ("No one logged on", "no such user", "Login:", "forwarding not allowed")


def test_finger_released_and_reply_logged(finger_server: FingerServer, work_dir: Path) -> None:
    target = {
        "name": "fingerd",
        "method": "finger",
        "host": "127.0.0.1",
        "port": finger_server.port,
        "domains": ["hold.test"],
        "timeouts": {"connect": "5s", "greeting": "10s", "reply": "10s"},
    }

    result = run_once(work_dir, [target])

    record = result.single()
    assert record["outcome"] == "released", result.describe()
    assert result.returncode == 0, result.describe()
    reply = record["reply"]
    assert isinstance(reply, str) and reply.strip(), result.describe()
    assert any(text in reply for text in FINGERD_TEXTS), f"not an in.fingerd reply: {reply!r}"

    # The log goes to stderr as JSON lines. Some line must carry the reply.
    first_reply_line = reply.strip().splitlines()[0].strip()
    matching = [line for line in result.stderr.splitlines() if first_reply_line in line]
    assert matching, result.describe()
    assert isinstance(json.loads(matching[0]), dict), f"log line is not a JSON object: {matching[0]!r}"
