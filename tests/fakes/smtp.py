"""A scripted fake SMTP server on 127.0.0.1 that records every line it receives.

A :class:`Script` is what one connection plays: a greeting, then one
:class:`Step` per expected client command. Connection number *n* plays
script *n* (the last script repeats). After the steps, QUIT gets ``221``
and anything else ``502``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme

# Bounds a server-side handshake that the client abandoned.
HANDSHAKE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Drop:
    """Close the connection instead of replying."""


@dataclass(frozen=True)
class Hang:
    """Never reply; wait until the client goes away."""


@dataclass(frozen=True)
class Close:
    """Send ``reply``, then close the connection (as after a 421)."""

    reply: str


@dataclass(frozen=True)
class StartTls:
    """Reply to STARTTLS with ``reply``, then send ``inject`` raw, or, if empty, run the TLS handshake."""

    reply: str = "220 2.0.0 Ready to start TLS"
    inject: bytes = b""


@dataclass(frozen=True)
class Auth:
    """Run one AUTH exchange for ``mechanism`` and check the credentials."""

    mechanism: str
    username: str
    password: str
    success: str = "235 2.7.0 Authentication successful"
    failure: str = "535 5.7.8 Authentication credentials invalid"


Reply = str | bytes | Drop | Hang | Close | StartTls | Auth


@dataclass(frozen=True)
class Step:
    """One expected client line (matched by case-insensitive prefix) and what to do about it."""

    expect: str
    reply: Reply


@dataclass(frozen=True)
class Script:
    """What one connection plays. ``greeting`` lines are separated by newlines; ``pause``
    seconds pass before the last greeting line, while the fake watches for early talkers."""

    greeting: str | Hang = "220 fake.test ESMTP"
    steps: tuple[Step, ...] = ()
    pause: float = 0.0
    line_ending: bytes = b"\r\n"


@dataclass
class Connection:
    """What the fake saw on one connection."""

    lines: list[str] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    mismatches: list[str] = field(default_factory=list)
    early_talker: bool = False
    tls: bool = False
    tls_error: str | None = None
    auth_ok: bool | None = None
    after_inject: bytes = b""


@dataclass
class TlsFiles:
    """A trustme CA file for clients and a server context with a certificate for ``name``."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path, name: str = "127.0.0.1") -> TlsFiles:
    """Create a CA in ``directory`` and a server certificate for ``name``."""
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return TlsFiles(ca_file, context)


class FakeSmtpServer:
    """The fake server; use ``async with`` and read ``port`` and ``connections``."""

    def __init__(self, *scripts: Script, tls: TlsFiles | None = None, implicit_tls: bool = False) -> None:
        self.scripts = scripts or (Script(),)
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.connections: list[Connection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> FakeSmtpServer:
        context = self.tls.server_context if self.implicit_tls and self.tls else None
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Aborting the connections lets each handler finish on its own, which
        # avoids cancelling a handler in the middle of a TLS handshake.
        for writer in self._writers:
            writer.transport.abort()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                task.cancel()
        await self._server.wait_closed()

    @property
    def mismatches(self) -> list[str]:
        """Every client line that did not match its step, over all connections."""
        return [line for conn in self.connections for line in conn.mismatches]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        conn = Connection(tls=self.implicit_tls)
        self.connections.append(conn)
        self._writers.append(writer)
        try:
            await _Player(self, script, conn, reader, writer).play()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


class _Player:
    def __init__(
        self,
        server: FakeSmtpServer,
        script: Script,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.script = script
        self.conn = conn
        self.reader = reader
        self.writer = writer

    async def play(self) -> None:
        if isinstance(self.script.greeting, Hang):
            await self._drain_until_eof()
            return
        await self._greet(self.script.greeting.split("\n"))
        for step in self.script.steps:
            line = await self.readline()
            if line is None:
                return
            if not line.upper().startswith(step.expect.upper()):
                self.conn.mismatches.append(line)
            if not await self._perform(step.reply, line):
                return
        while (line := await self.readline()) is not None:
            if line.upper() == "QUIT":
                await self.send("221 2.0.0 Bye")
                return
            self.conn.mismatches.append(line)
            await self.send("502 5.5.2 fake: script ended")

    async def _greet(self, lines: list[str]) -> None:
        ending = self.script.line_ending
        if len(lines) > 1 and self.script.pause > 0:
            self.writer.write(b"".join(line.encode() + ending for line in lines[:-1]))
            await self.writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.script.pause):
                    self.conn.early_talker = bool(await self.reader.read(1))
            lines = lines[-1:]
        await self.send("\n".join(lines))

    async def readline(self) -> str | None:
        raw = await self.reader.readline()
        if not raw:
            return None
        self.conn.raw += raw
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.conn.lines.append(line)
        return line

    async def send(self, text: str) -> None:
        ending = self.script.line_ending
        self.writer.write(b"".join(line.encode() + ending for line in text.split("\n")))
        await self.writer.drain()

    async def _perform(self, reply: Reply, line: str) -> bool:
        """Carry out one step; return False when the connection is over."""
        if isinstance(reply, str):
            await self.send(reply)
        elif isinstance(reply, bytes):
            self.writer.write(reply)
            await self.writer.drain()
        elif isinstance(reply, Close):
            await self.send(reply.reply)
            return False
        elif isinstance(reply, Drop):
            return False
        elif isinstance(reply, Hang):
            await self._drain_until_eof()
            return False
        elif isinstance(reply, StartTls):
            return await self._start_tls(reply)
        else:
            await self._auth(reply, line)
        return True

    async def _drain_until_eof(self) -> None:
        while data := await self.reader.read(4096):
            self.conn.raw += data

    async def _start_tls(self, step: StartTls) -> bool:
        # No await between writing the 220 and start_tls: the client's
        # ClientHello must reach the TLS layer, not the plaintext reader.
        self.writer.write(step.reply.encode() + b"\r\n" + step.inject)
        if step.inject:
            while data := await self.reader.read(4096):
                self.conn.after_inject += data
            return False
        if not step.reply.startswith("220"):
            return True
        assert self.server.tls is not None
        plain_transport = self.writer.transport
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await self.writer.start_tls(self.server.tls.server_context)
        except (ssl.SSLError, ConnectionError, TimeoutError, AttributeError) as exc:
            self.conn.tls_error = str(exc) or type(exc).__name__
            if self.writer.transport is None:
                # Python 3.11 gets no TLS transport when the client hangs up
                # right after the handshake, then fails with AttributeError;
                # StreamWriter.__del__ would fail on the None transport too.
                self.writer._transport = plain_transport  # noqa: SLF001
            return False
        self.conn.tls = True
        return True

    async def _auth(self, step: Auth, line: str) -> None:
        words = line.split(" ")
        if step.mechanism == "PLAIN":
            blob = words[2] if len(words) > 2 else await self._challenge("")
            expected = f"\0{step.username}\0{step.password}"
            ok = _b64decode(blob) == expected
        elif step.mechanism == "LOGIN":
            user = _b64decode(await self._challenge("Username:"))
            password = _b64decode(await self._challenge("Password:"))
            ok = (user, password) == (step.username, step.password)
        else:
            challenge = "<1896.697170952@fake.test>"
            answer = _b64decode(await self._challenge(challenge))
            digest = hmac.new(step.password.encode(), challenge.encode(), hashlib.md5).hexdigest()
            ok = answer == f"{step.username} {digest}"
        self.conn.auth_ok = ok
        await self.send(step.success if ok else step.failure)

    async def _challenge(self, text: str) -> str:
        await self.send("334 " + base64.b64encode(text.encode()).decode())
        line = await self.readline()
        return line or ""


def _b64decode(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "<invalid base64>"
