"""Opening a client session: connect, greeting, EHLO or HELO, STARTTLS and AUTH, with fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from mailreleased.config.model import Target, TlsMode
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome
from mailreleased.smtp.classify import Action, Failure, Stage, classify
from mailreleased.smtp.protocol import ReleaseProtocol
from mailreleased.smtp.reply import Reply
from mailreleased.smtp.session import ClientSession, Restart, TlsUnavailable
from mailreleased.smtp.tls import client_context
from mailreleased.smtp.wire import WireLog

# One connection, plus one reconnect with HELO and one without STARTTLS.
MAX_CONNECTIONS = 3

_log = structlog.get_logger("mailreleased.smtp")


async def open_session(target: Target, host: str) -> ClientSession:
    """Connect to ``host`` and make the session ready for the release command.

    Waits for the complete greeting, sends EHLO (HELO on 500/502, or on a new
    connection if the server hangs up on EHLO), runs STARTTLS as ``target.tls``
    sets and AUTH when the server offers it and ``target.auth`` is set.
    STARTTLS and AUTH need EHLO, so ``tls: starttls`` and ``auth`` send it
    even with ``ehlo: false``. With ``ehlo: false`` and neither of them, no
    EHLO goes out, so opportunistic STARTTLS cannot happen.
    Raises SessionError for anything that stops the session.
    """
    helo_only = False
    skip_starttls = False
    for _ in range(MAX_CONNECTIONS):
        session = await connect(target, host)
        session.tls_fell_back = skip_starttls
        try:
            await _negotiate(session, target, helo_only=helo_only, skip_starttls=skip_starttls)
        except Restart as restart:
            await session.aclose()
            helo_only = helo_only or restart.helo_only
            skip_starttls = skip_starttls or restart.skip_starttls
            continue
        except BaseException:
            await session.aclose()
            raise
        return session
    raise SessionError(Outcome.PROTOCOL_ERROR, detail=f"gave up after {MAX_CONNECTIONS} connections")


@contextlib.asynccontextmanager
async def connect_failures(host: str, port: int, limit: float) -> AsyncIterator[None]:
    """Bound a TCP connect by ``limit`` seconds; turn its failures into SessionError(connect_failed)."""
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise SessionError(
            Outcome.CONNECT_FAILED, detail=f"connecting to {host} port {port} timed out after {limit:g}s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SessionError(Outcome.CONNECT_FAILED, detail=f"cannot connect to {host} port {port}: {reason}") from exc


async def connect(target: Target, host: str) -> ClientSession:
    """Open the TCP connection (and TLS for ``tls: implicit``) and read the whole greeting.

    After a 554 greeting it sends QUIT and reads the reply before closing
    (RFC 5321 section 3.1). Raises SessionError on any failure.
    """
    loop = asyncio.get_running_loop()
    port = target.effective_port
    limit = target.timeouts.connect
    async with connect_failures(host, port, limit):
        _, protocol = await loop.create_connection(lambda: ReleaseProtocol(loop), host, port)
    session = ClientSession(protocol, target, host, WireLog(target.name, host))
    if target.tls is TlsMode.IMPLICIT:
        try:
            await session.handshake(client_context(target), limit)
        except TlsUnavailable as exc:
            raise SessionError(Outcome.TLS_FAILED, detail=exc.detail) from exc
    await _read_greeting(session, target)
    return session


async def _read_greeting(session: ClientSession, target: Target) -> None:
    result = await session.read_reply(target.timeouts.greeting)
    decision = classify(Stage.GREETING, result)
    if decision is Action.PROCEED:
        assert isinstance(result, Reply)
        session.greeting = result
        return
    if isinstance(result, Reply) and result.code >= 500:
        await session.quit()
    else:
        await session.aclose()
    if result is Failure.TIMEOUT:
        raise SessionError(
            Outcome.TIMEOUT, detail=f"no complete greeting within {target.timeouts.greeting:g}s"
        )
    raise session.failure_error(Stage.GREETING, result, "greeting")


async def _negotiate(session: ClientSession, target: Target, *, helo_only: bool, skip_starttls: bool) -> None:
    mode = target.tls
    if target.use_ehlo or mode is TlsMode.STARTTLS or target.auth is not None or helo_only:
        await session.hello(esmtp=not helo_only)
    offered = "STARTTLS" in session.capabilities
    if mode is TlsMode.STARTTLS and not offered:
        raise SessionError(Outcome.TLS_FAILED, detail="server does not offer STARTTLS, which 'tls: starttls' requires")
    if mode is TlsMode.STARTTLS or (mode is TlsMode.OPPORTUNISTIC and offered and not skip_starttls):
        await _start_tls(session, target)
    if target.auth is None:
        return
    if session.auth_mechanisms:
        await session.login()
    else:
        # Servers that do not list AUTH may still demand it with a 530, to which
        # the release step responds with AUTH and one retry.
        _log.info("auth_not_offered", target=target.name, host=session.host)


async def _start_tls(session: ClientSession, target: Target) -> None:
    try:
        await session.start_tls(client_context(target))
    except TlsUnavailable as exc:
        if target.tls is TlsMode.STARTTLS:
            raise SessionError(Outcome.TLS_FAILED, exc.code, exc.reply, exc.detail) from exc
        # Opportunistic: never continue the half-broken session, start over in cleartext.
        _log.warning("tls_fallback", target=target.name, host=session.host, reason=exc.detail)
        raise Restart(skip_starttls=True) from exc
