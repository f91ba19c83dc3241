"""Start the processes a measure talks to: provider, discard sink, feeder, child run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.procs import REPOSITORY, BenchError, python_command, start_server, stop_process, tail

USER = "bench"
PASSWORD = "bench-secret"
DOMAIN = "bench.test"
# Upper bound for one child run or feed; the largest full-size drain takes well under this.
RUN_TIMEOUT = 1200.0


class Server:
    """A started server process and its port; ``stop()`` ends it by PID."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_file: Path) -> None:
        self.process = process
        self.port = port
        self.log_file = log_file

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.process.pid

    def stop(self) -> int:
        """Stop the server (SIGTERM, then SIGKILL) and return its exit status."""
        return stop_process(self.process)


def start_provider(directory: Path, *, count: int, size: int) -> Server:
    """Start the built-in provider seeded with ``count`` messages of about ``size`` bytes for DOMAIN."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "provider.port"
    log_file = directory / "provider.log"
    argv = python_command(
        "mailreleased.testing.provider",
        "--listen", "127.0.0.1:0",
        "--domain", DOMAIN,
        "--user", f"{USER}:{PASSWORD}",
        "--seed", str(count),
        "--size", str(size),
        "--port-file", str(port_file),
        "--timeout", "600",
    )
    process, port = start_server(argv, port_file, log_file)
    return Server(process, port, log_file)


def start_discard(directory: Path, *, greeting_delay: float = 0.0) -> Server:
    """Start the discard SMTP sink; its totals land in ``directory/discard.json`` when stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "discard.port"
    argv = python_command(
        "bench.discard",
        "--port-file", str(port_file),
        "--count-file", str(directory / "discard.json"),
        "--greeting-delay", str(greeting_delay),
    )
    process, port = start_server(argv, port_file, directory / "discard.log")
    return Server(process, port, directory / "discard.log")


def discard_totals(directory: Path) -> dict[str, int]:
    """Return the totals a stopped discard sink wrote."""
    return dict(json.loads((directory / "discard.json").read_text()))


def run_json_child(argv: list[str], result_file: Path, log_file: Path, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Run a bench child process to completion and return the JSON it wrote to ``result_file``."""
    with log_file.open("ab") as log:
        completed = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False, cwd=REPOSITORY)
    if completed.returncode != 0 or not result_file.exists():
        raise BenchError(f"{' '.join(argv[:4])} exited with {completed.returncode}:\n{tail(log_file)}")
    return dict(json.loads(result_file.read_text()))


def run_feeder(directory: Path, port: int, *, count: int, size: int) -> dict[str, Any]:
    """Feed ``count`` generated messages to ``port`` with the provider's delivery client."""
    result = directory / "feeder.json"
    argv = python_command(
        "bench.feeder", "--port", str(port), "--count", str(count), "--size", str(size), "--result", str(result)
    )
    return run_json_child(argv, result, directory / "feeder.log")


def run_child(directory: Path, config: Path) -> dict[str, Any]:
    """Run one mailreleased processing run in a child process (see bench.child)."""
    result = directory / "child.json"
    argv = python_command("bench.child", "--config", str(config), "--result", str(result))
    return run_json_child(argv, result, directory / "child.log")


def timed_command(argv: list[str], log_file: Path, *, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> tuple[float, int]:
    """Run ``argv`` and return its wall time in seconds and exit status."""
    with log_file.open("ab") as log:
        started = time.perf_counter()
        completed = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
        elapsed = time.perf_counter() - started
    return elapsed, completed.returncode
