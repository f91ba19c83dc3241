"""The ``release`` and ``status`` commands: clients of a running daemon's control socket."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mailreleased.cli import EX_UNAVAILABLE, EX_UNHEALTHY, EX_USAGE, STATUS_TIMEOUT, error, record_line
from mailreleased.control import request
from mailreleased.errors import ControlError
from mailreleased.outcome import Outcome, SignalRecord, exit_code_for_run
from mailreleased.status import format_status


def release_command(socket_path: Path, args: argparse.Namespace) -> int:
    """Ask the daemon for a processing run now, print its records, exit like ``once``."""
    payload = {"command": "release", "targets": args.target or None, "force": args.force}
    try:
        # No timeout: an ATRN drain may legitimately take hours.
        response = request(socket_path, payload, timeout=None)
    except ControlError as exc:
        error(str(exc))
        return EX_UNAVAILABLE
    if not response.get("ok"):
        error(str(response.get("error", "the daemon rejected the request")))
        return EX_USAGE if "unknown_target" in response else EX_UNAVAILABLE
    records = [_record(item) for item in response.get("records", [])]
    for item, record in zip(response.get("records", []), records):
        print(json.dumps(item) if args.json else record_line(record), flush=True)
    return exit_code_for_run([record.outcome for record in records])


def status_command(socket_path: Path, args: argparse.Namespace) -> int:
    """Print the daemon's status; with ``--check`` exit 1 when it is unhealthy."""
    unreachable_code = EX_UNHEALTHY if args.check else EX_UNAVAILABLE
    try:
        snapshot = request(socket_path, {"command": "status"}, timeout=STATUS_TIMEOUT)
    except ControlError as exc:
        error(str(exc))
        return unreachable_code
    if not snapshot.get("ok"):
        error(str(snapshot.get("error", "the daemon rejected the request")))
        return unreachable_code
    print(json.dumps(snapshot) if args.json else format_status(snapshot), flush=True)
    if args.check and snapshot.get("problems"):
        return EX_UNHEALTHY
    return 0


def _record(item: dict[str, Any]) -> SignalRecord:
    return SignalRecord(
        target=item["target"],
        method=item["method"],
        host=item["host"],
        port=item["port"],
        domain=item["domain"],
        outcome=Outcome(item["outcome"]),
        code=item["code"],
        reply=item["reply"],
        duration_ms=item["duration_ms"],
        messages=item["messages"],
        bytes=item["bytes"],
    )
