"""Process, port and directory helpers shared by the peer starters."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Upper bound for any one helper command (postfix start, exim -bpc, openssl).
COMMAND_TIMEOUT = 60.0


class PeerNotInstalled(RuntimeError):
    """A peer program is missing; the message names it and how to install it."""


class PeerFailed(RuntimeError):
    """A peer program was found but did not start or behave as expected."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free when the kernel chose it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises PeerFailed after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise PeerFailed(f"nothing accepted connections on {host}:{port} within {timeout:.0f}s ({last_error})")


def run(
    argv: list[str],
    *,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    input_bytes: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a timeout and captured text output.

    With ``check`` a non-zero exit raises PeerFailed that includes the output.
    """
    completed = subprocess.run(
        argv,
        input=input_bytes.decode("latin-1") if input_bytes is not None else None,
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=timeout,
        check=False,
        env=env,
    )
    if check and completed.returncode != 0:
        raise PeerFailed(
            f"{' '.join(argv)} exited with {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}".rstrip()
        )
    return completed


def require_program(path: str, install_hint: str = "run .ci/install-peers as root") -> str:
    """Return ``path`` if it is an executable file, else raise PeerNotInstalled."""
    resolved = shutil.which(path)
    if resolved is None:
        raise PeerNotInstalled(f"{path} not found; {install_hint}")
    return resolved


def require_root() -> None:
    """Raise PeerNotInstalled unless running as root.

    The peers switch to their own system users (postfix, Debian-exim), so
    only root can start them.
    """
    if os.geteuid() != 0:
        raise PeerNotInstalled("the mail peers must be started as root (they switch to their own users)")


def make_shared_tempdir(prefix: str, parent: str | None = None) -> Path:
    """Create a temporary directory that the peers' system users can traverse.

    pytest's tmp_path is mode 0700 under root, which the postfix and
    Debian-exim users cannot enter, so peers get a 0755 directory instead.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path


def pid_is_running(pid: int) -> bool:
    """Return whether a process with ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_is_running(pid):
            return True
        time.sleep(0.05)
    return not pid_is_running(pid)


def stop_pid(pid: int, grace: float = 5.0) -> None:
    """Send SIGTERM to ``pid``, then SIGKILL if it is still running after ``grace`` seconds."""
    if not pid_is_running(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_for_exit(pid, grace):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for_exit(pid, grace)


def stop_popen(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a child started with Popen and reap it, killing it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def read_pid_file(path: Path, timeout: float = 10.0) -> int:
    """Wait for a pid file to appear and return the pid it contains."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    raise PeerFailed(f"pid file {path} did not appear within {timeout:.0f}s")
