"""The control socket: newline-delimited JSON between the CLI and a running daemon.

Each request is one JSON object on one line, such as
``{"command": "release", "targets": ["isp"], "force": false}`` or
``{"command": "status"}``, and gets one JSON object line back with
``"ok": true`` or ``"ok": false`` and an ``"error"`` message. The socket is
mode 0660, so the daemon's user and group may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from mailreleased.errors import ControlError, ControlSocketInUse, ControlSocketUnavailable

log = structlog.get_logger("mailreleased.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

SOCKET_MODE = 0o660
# A request is a few hundred bytes; the cap stops a stray client from filling memory.
MAX_LINE_BYTES = 64 * 1024
# How long start-up waits for a daemon that may already listen on the socket.
PROBE_TIMEOUT = 2.0


class ControlServer:
    """Listens on the control socket and passes each request to ``handler``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Create the socket; raise ControlSocketInUse or ControlSocketUnavailable."""
        prepare_socket_path(self.path)
        sock = _bind(self.path)
        self._inode = os.stat(self.path).st_ino
        self._server = await asyncio.start_unix_server(self._serve_client, sock=sock, limit=MAX_LINE_BYTES)
        log.info("control_listening", socket=str(self.path))

    async def close(self) -> None:
        """Stop listening, drop open connections and remove the socket file."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None
        # Remove the file only if it is still ours, not a successor's socket.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await _reply(writer, {"ok": False, "error": f"request longer than {MAX_LINE_BYTES} bytes"})
                    return
                if not line:
                    return
                await _reply(writer, await self._dispatch(line))
        except ConnectionError as exc:
            log.debug("control_client_gone", error=str(exc))
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not valid JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'request must be a JSON object with a "command" string'}
        try:
            return await self._handler(request)
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the control server
            log.exception("control_request_failed", command=request.get("command"))
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}


async def _reply(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    writer.write(json.dumps(response).encode() + b"\n")
    await writer.drain()


def prepare_socket_path(path: Path) -> None:
    """Create the socket's directory and remove a stale socket left by a dead daemon."""
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise ControlSocketUnavailable(
            f"control socket directory {str(path.parent)!r} cannot be created: {exc.strerror}; "
            "create it or set 'control.socket'"
        ) from None
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketUnavailable(
            f"control socket path {str(path)!r} exists and is not a socket; remove it or set 'control.socket'"
        )
    if _answers(path):
        raise ControlSocketInUse(
            f"another mailreleased daemon is listening on {str(path)!r}; "
            "stop it first, or give this one its own 'control.socket'"
        )
    log.info("stale_control_socket_removed", socket=str(path))
    path.unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            raise ControlSocketUnavailable(f"control socket {str(path)!r} cannot be probed: {exc}") from None
    return True


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bind under a umask that yields mode 0660, so the socket is never briefly wider open.
        with _umask(0o777 & ~SOCKET_MODE):
            sock.bind(str(path))
        os.chmod(path, SOCKET_MODE)
    except OSError as exc:
        sock.close()
        raise ControlSocketUnavailable(f"control socket {str(path)!r} cannot be created: {exc.strerror}") from None
    return sock


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def request(path: Path, payload: dict[str, Any], *, timeout: float | None = 10.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its response object.

    Raises ControlError when the daemon cannot be reached or its response is
    invalid. ``timeout`` (seconds, None for no limit) bounds the whole exchange.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            line = _read_line(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no mailreleased daemon is listening on {str(path)!r}; is it running?") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {str(path)!r}; run as the daemon's user or a member of its group"
            ) from None
        except TimeoutError:
            raise ControlError(f"the daemon on {str(path)!r} did not respond within {timeout} s") from None
        except OSError as exc:
            raise ControlError(f"control socket {str(path)!r} failed: {exc}") from None
    try:
        response = json.loads(line)
    except ValueError:
        raise ControlError(f"the daemon on {str(path)!r} sent an invalid response: {line[:200]!r}") from None
    if not isinstance(response, dict):
        raise ControlError(f"the daemon on {str(path)!r} sent an invalid response: {line[:200]!r}")
    return response


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError(errno.ECONNRESET, "the daemon closed the connection without a response")
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
