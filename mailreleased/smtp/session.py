"""The SMTP client session: greeting, EHLO or HELO, STARTTLS, AUTH, then commands.

Framing, command writing and the TLS upgrade come from aiosmtplib's
protocol layer (see :mod:`mailreleased.smtp.protocol`). aiosmtplib's
``SMTP`` class is not used because it closes the connection on a non-220
greeting (so no QUIT after a 554), uses one timeout for connect and
greeting, and drops bytes that arrive after the STARTTLS 220 instead of
aborting.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable

import structlog
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.esmtp import parse_esmtp_extensions

from mailreleased.config.model import Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome
from mailreleased.smtp.auth import authenticate, choose_mechanisms
from mailreleased.smtp.classify import Action, Failure, Stage, classify
from mailreleased.smtp.helo import helo_name
from mailreleased.smtp.reply import MAX_REPLY_LINES, Reply, decode_server_text
from mailreleased.smtp.protocol import ReleaseProtocol
from mailreleased.smtp.wire import MASK, WireLog, mask_auth_command

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# Seconds to wait for the reply to QUIT, which is a courtesy and must not delay the run.
QUIT_TIMEOUT = 10.0

_log = structlog.get_logger("mailreleased.smtp")


class ClientSession:
    """A greeted, and possibly encrypted and authenticated, SMTP client connection."""

    def __init__(self, protocol: ReleaseProtocol, target: Target, host: str, wire: WireLog) -> None:
        self._protocol = protocol
        self._target = target
        self._wire = wire
        self.host = host
        port = target.effective_port
        self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.capabilities: dict[str, str] = {}
        self.auth_mechanisms: tuple[str, ...] = ()
        self.esmtp = False
        self.greeted = False
        self.tls_active = False
        self.authenticated = False
        self.tls_fell_back = False
        self.closed = False
        self.greeting: Reply | None = None

    async def command(self, line: str, *, timeout: float | None = None) -> Reply:
        """Send one command line and return its complete reply.

        Raises SessionError on EOF, timeout or a malformed reply; the
        connection is closed then.
        """
        result = await self.exchange(line, timeout=timeout)
        if isinstance(result, Failure):
            raise self.failure_error(Stage.RELEASE, result, line.split(" ", 1)[0])
        return result

    async def exchange(self, line: str, *, timeout: float | None = None) -> Reply | Failure:
        """Send one line and return the reply, or the Failure that prevented one.

        Raises ValueError if ``line`` contains a control character, because
        CR or LF in it would smuggle in another command.
        """
        if _CONTROL_CHARS.search(line):
            raise ValueError("SMTP command line contains a control character")
        self._wire.client(mask_auth_command(line))
        return await self._round_trip(line.encode("utf-8") + b"\r\n", timeout)

    async def exchange_secret(self, build: Callable[[], bytes], log_as: str = MASK) -> Reply | Failure:
        """Send the line returned by ``build`` (an AUTH payload); the wire log shows ``log_as``."""
        self._wire.client(log_as)
        return await self._round_trip(build, None)

    async def read_reply(self, timeout: float) -> Reply | Failure:
        """Wait for a reply without sending anything (the greeting)."""
        return await self._round_trip(None, timeout)

    async def _round_trip(self, payload: bytes | Callable[[], bytes] | None, timeout: float | None) -> Reply | Failure:
        stray = self._protocol.take_unsolicited()
        if stray:
            self._wire.server_raw(decode_server_text(stray))
        try:
            if callable(payload):
                self._protocol.write(payload() + b"\r\n")
            elif payload is not None:
                self._protocol.write(payload)
            response = await self._protocol.read_response(
                timeout=self._target.reply_timeout if timeout is None else timeout
            )
        except SMTPReadTimeoutError:
            await self.aclose()
            return Failure.TIMEOUT
        except SMTPResponseException as exc:
            self._wire.server_raw(f"malformed reply: {exc.message}")
            await self.aclose()
            return Failure.GARBAGE
        except (SMTPServerDisconnected, ConnectionError):
            await self.aclose()
            return Failure.EOF
        reply = Reply(response.code, tuple(decode_server_text(response.message).split("\n")))
        self._wire.server(reply)
        if not 100 <= reply.code <= 599 or len(reply.lines) > MAX_REPLY_LINES:
            await self.aclose()
            return Failure.GARBAGE
        return reply

    def failure_error(self, stage: Stage, result: Reply | Failure, command_name: str) -> SessionError:
        """Build the SessionError for a reply or failure that ends the session at ``stage``."""
        decision = classify(stage, result)
        outcome = decision if isinstance(decision, Outcome) else Outcome.PROTOCOL_ERROR
        if isinstance(result, Reply):
            return SessionError(outcome, result.code, result.short(), detail=f"{command_name} rejected")
        return SessionError(outcome, detail=_FAILURE_TEXT[result].format(command=command_name))

    async def hello(self, *, esmtp: bool) -> None:
        """Send EHLO (falling back to HELO on 500/502) or HELO.

        Raises Restart when the server drops the connection on EHLO.
        """
        name = await helo_name(self._target, self._protocol)
        if esmtp:
            result = await self.exchange(f"EHLO {name}")
            decision = classify(Stage.EHLO, result)
            if decision is Action.PROCEED:
                assert isinstance(result, Reply)
                self._set_capabilities(result)
                return
            if decision is Action.RECONNECT_WITH_HELO:
                _log.info("ehlo_fallback", target=self._target.name, host=self.host, reason="connection closed on EHLO")
                raise Restart(helo_only=True)
            if decision is not Action.HELO_FALLBACK:
                raise self.failure_error(Stage.EHLO, result, "EHLO")
            assert isinstance(result, Reply)
            _log.info("ehlo_fallback", target=self._target.name, host=self.host, reason=f"EHLO rejected with {result.code}")
        result = await self.exchange(f"HELO {name}")
        if classify(Stage.HELO, result) is not Action.PROCEED:
            raise self.failure_error(Stage.HELO, result, "HELO")
        self.greeted = True
        self.capabilities = {}
        self.auth_mechanisms = ()

    def _set_capabilities(self, reply: Reply) -> None:
        extensions, mechanisms = parse_esmtp_extensions("\n".join(reply.lines))
        self.capabilities = {keyword.upper(): value for keyword, value in extensions.items()}
        self.auth_mechanisms = tuple(dict.fromkeys(name.upper() for name in mechanisms))
        if self.auth_mechanisms:
            self.capabilities["AUTH"] = " ".join(self.auth_mechanisms)
        self.esmtp = True
        self.greeted = True

    async def login(self) -> None:
        """Run AUTH with the first configured mechanism the server offers; raise SessionError on failure."""
        auth = self._target.auth
        if auth is None:
            raise SessionError(Outcome.AUTH_FAILED, detail="the server requires AUTH but the target has no 'auth'")
        mechanisms = choose_mechanisms(
            auth, self.auth_mechanisms, encrypted=self.tls_active, after_tls_failure=self.tls_fell_back
        )
        await authenticate(self, auth, mechanisms)
        self.authenticated = True

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Send STARTTLS, run the handshake and send EHLO again.

        Raises SessionError, or TlsUnavailable when the server rejected STARTTLS
        or the handshake failed (the caller decides whether to fall back).
        """
        result = await self.exchange("STARTTLS")
        decision = classify(Stage.STARTTLS, result)
        if decision is Outcome.TLS_FAILED:
            assert isinstance(result, Reply)
            raise TlsUnavailable(result.code, result.short(), "server rejected STARTTLS")
        if decision is not Action.PROCEED:
            raise self.failure_error(Stage.STARTTLS, result, "STARTTLS")
        if self._protocol.pending_bytes():
            await self.aclose()
            raise SessionError(
                Outcome.PROTOCOL_ERROR,
                220,
                detail="server sent data after its 220 to STARTTLS; closed without starting TLS",
            )
        await self.handshake(context, self._target.timeouts.connect)
        # RFC 3207: forget everything learnt before TLS and ask again.
        self.capabilities = {}
        self.auth_mechanisms = ()
        try:
            await self.hello(esmtp=True)
        except Restart:
            # Reconnecting with HELO here would silently drop TLS.
            raise SessionError(Outcome.PROTOCOL_ERROR, detail="connection closed on EHLO after STARTTLS") from None

    async def handshake(self, context: ssl.SSLContext, timeout: float) -> None:
        """Run the TLS handshake on the connection; raise TlsUnavailable if it fails."""
        try:
            await self._protocol.upgrade_tls(context, self.host, timeout)
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            await self.aclose()
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise TlsUnavailable(None, None, f"TLS handshake failed: {reason}") from exc
        self.tls_active = True

    async def quit(self) -> None:
        """Send QUIT and wait briefly for any reply; never raises for network errors."""
        if not self.closed:
            await self.exchange("QUIT", timeout=min(QUIT_TIMEOUT, self._target.reply_timeout))
        await self.aclose()

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the live connection (same TLS session) over as asyncio streams.

        Bytes already received but not consumed come first in the reader.
        The session is unusable afterwards.
        """
        streams = self._protocol.detach()
        self.closed = True
        return streams

    async def aclose(self) -> None:
        """Close the connection without QUIT."""
        if self.closed:
            return
        self.closed = True
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()


_FAILURE_TEXT = {
    Failure.EOF: "connection closed before a complete reply to {command}",
    Failure.GARBAGE: "malformed or oversized reply to {command}",
    Failure.TIMEOUT: "no reply to {command} within the reply timeout",
    Failure.CONNECT: "cannot connect",
    Failure.TLS: "TLS handshake failed",
}


class Restart(Exception):
    """Open a new connection with a changed plan (HELO only, or no STARTTLS)."""

    def __init__(self, *, helo_only: bool = False, skip_starttls: bool = False) -> None:
        super().__init__("restart")
        self.helo_only = helo_only
        self.skip_starttls = skip_starttls


class TlsUnavailable(Exception):
    """STARTTLS was rejected or the handshake failed."""

    def __init__(self, code: int | None, reply: str | None, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reply = reply
        self.detail = detail

