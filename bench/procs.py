"""Child processes of a benchmark: start with a port file, stop by PID, read /proc.

Every server a measure talks to runs in its own process, so that the sender
and the receiver never share one interpreter and one event loop.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPOSITORY = Path(__file__).resolve().parent.parent
# Seconds a child gets to bind and write its port file (seeding 10,000 messages takes a few).
START_TIMEOUT = 120.0
STOP_GRACE = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark step failed; the message names the step and the cause."""


def free_port() -> int:
    """Return a loopback TCP port that was free when the kernel picked it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def python_command(module: str, *args: str) -> list[str]:
    """Return the argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def start_server(argv: Sequence[str], port_file: Path, log_file: Path, timeout: float = START_TIMEOUT) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv``, wait until it writes its port to ``port_file``, return the process and port.

    Raises BenchError with the log tail if the child exits or stays silent for ``timeout`` seconds.
    """
    with log_file.open("ab") as log:
        process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{argv[0:3]} exited with {process.returncode}:\n{tail(log_file)}")
        try:
            text = port_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text.isdigit():
            return process, int(text)
        time.sleep(0.05)
    stop_process(process)
    raise BenchError(f"{argv[0:3]} wrote no port file within {timeout:.0f}s:\n{tail(log_file)}")


def stop_process(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> int:
    """Send SIGTERM to a child we started, SIGKILL it after ``grace`` seconds, reap it; return its status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
    return int(process.returncode)


def tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def proc_status_kib(pid: int) -> dict[str, int]:
    """Return the ``Vm*`` and ``Rss*`` fields of /proc/PID/status in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """Return user plus system CPU time of ``pid`` in seconds, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    after_name = stat.rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically, so a reader never sees a partial number."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(f"{port}\n")
    os.replace(temporary, path)
