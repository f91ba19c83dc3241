"""Run ODMR (RFC 2645) for one target: AUTH, ATRN, then receive the released mail.

After the provider replies 250 to ATRN the connection turns around and
:mod:`~mailreleased.odmr.receiver` takes the mail. A provider may deliver
only part of its queue per session, or break the connection after some
messages. So after each session that delivered mail the customer connects
again and repeats ATRN. It stops when the provider replies 453, when a
session brings nothing, or at ``max_sessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable

import structlog

from mailreleased.config.model import Target
from mailreleased.odmr.receiver import SessionResult, serve_reversed
from mailreleased.odmr.sinks import Sink, make_sink
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.progress import current_hook
from mailreleased.shutdown import shutdown_requested
from mailreleased.smtp import Action, ClientSession, SessionError, classify_atrn, open_session

log = structlog.get_logger("mailreleased.odmr")

ProgressCallback = Callable[[int, int], None]
PROGRESS_LOG_INTERVAL = 5.0
_CLOSE_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Step:
    """The result of one connection: the ATRN reply and, after a reversal, the session."""

    outcome: Outcome
    host: str
    code: int | None = None
    reply: str | None = None
    detail: str | None = None
    session: SessionResult | None = None

    @property
    def drained_more(self) -> bool:
        """Whether the session delivered mail, so another ATRN may find more.

        A session that broke after accepting messages counts too: the next
        ATRN picks up what it left. One that broke before accepting any does
        not, so a message that always breaks the link cannot cause a loop.
        Nor does one where the sink deferred mail: the provider would offer
        the same messages again at once.
        """
        session = self.session
        return session is not None and session.messages > 0 and not session.stopped and session.deferred == 0


class _Progress:
    """Running totals over all sessions; calls the hook per message and logs every few seconds."""

    def __init__(self, target: str, on_progress: ProgressCallback | None) -> None:
        self.messages = 0
        self.bytes = 0
        self._target = target
        self._on_progress = on_progress
        self._last_log = time.monotonic()

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        if self._on_progress is not None:
            self._on_progress(self.messages, self.bytes)
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_LOG_INTERVAL:
            self._last_log = now
            log.info("atrn_progress", target=self._target, messages=self.messages, bytes=self.bytes)


def _installed_progress(name: str) -> ProgressCallback | None:
    hook = current_hook()
    if hook is None:
        return None
    return lambda messages, size: hook(name, messages, size)


def atrn_command(domains: tuple[str, ...]) -> str:
    """Return the ATRN command line: domains joined by commas without spaces, or bare ATRN."""
    return f"ATRN {','.join(domains)}" if domains else "ATRN"


async def run_atrn(
    target: Target, *, run: int | None = None, on_progress: ProgressCallback | None = None
) -> list[SignalRecord]:
    """Signal ``target`` with ATRN and receive its queue; return one record for the target.

    ``on_progress(messages, bytes)`` is called after each accepted message
    with the totals so far, for a live counter.
    """
    if target.delivery is None:
        raise ValueError(f"target {target.name!r} has no 'delivery'; method 'atrn' requires one")
    if on_progress is None:
        on_progress = _installed_progress(target.name)
    started = time.monotonic()
    progress = _Progress(target.name, on_progress)
    sink = make_sink(target.delivery)
    try:
        try:
            await sink.open()
        except OSError as exc:
            log.error("atrn_sink_unavailable", target=target.name, error=str(exc))
            step = _Step(Outcome.TEMPFAIL, target.effective_hosts[0], detail=f"delivery not ready: {exc}")
            return [_record(target, [step], progress, run, started)]
        steps = await _drain(target, sink, progress)
    finally:
        await sink.aclose()
    return [_record(target, steps, progress, run, started)]


async def _drain(target: Target, sink: Sink, progress: _Progress) -> list[_Step]:
    steps: list[_Step] = []
    hosts = list(target.effective_hosts)
    for _ in range(target.max_sessions):
        step = await _one_session(target, hosts, sink, progress)
        steps.append(step)
        if not step.drained_more or shutdown_requested():
            break
        hosts = [step.host, *(h for h in hosts if h != step.host)]
    return steps


async def _connect(target: Target, hosts: list[str]) -> tuple[ClientSession | None, str, SessionError | None]:
    """Open a session to the first host that accepts a connection."""
    error: SessionError | None = None
    for host in hosts:
        try:
            return await open_session(target, host), host, None
        except SessionError as exc:
            if exc.outcome is not Outcome.CONNECT_FAILED:
                return None, host, exc
            log.warning("atrn_connect_failed", target=target.name, host=host, detail=exc.detail)
            error = exc
    return None, hosts[-1], error


async def _one_session(target: Target, hosts: list[str], sink: Sink, progress: _Progress) -> _Step:
    session, host, error = await _connect(target, hosts)
    if session is None:
        assert error is not None
        return _Step(error.outcome, host, error.code, error.reply, error.detail)
    if not session.authenticated:
        await session.quit()
        return _Step(Outcome.AUTH_FAILED, host, detail="server did not offer AUTH; RFC 2645 requires it before ATRN")
    try:
        reply = await session.command(atrn_command(target.domains), timeout=target.reply_timeout)
    except SessionError as exc:
        return _Step(exc.outcome, host, exc.code, exc.reply, exc.detail)
    decision = classify_atrn(reply)
    if decision is not Action.REVERSE:
        await session.quit()
        outcome = decision if isinstance(decision, Outcome) else Outcome.PROTOCOL_ERROR
        return _Step(outcome, host, reply.code, reply.short())
    reader, writer = session.detach()
    try:
        result = await serve_reversed(
            reader, writer, sink=sink, server_name=target.helo_name or socket.gethostname(),
            domains=target.domains, limits=target.receiver, on_message=progress.add,
        )
    finally:
        await _close(writer)
    log.info("atrn_session", target=target.name, host=host, messages=result.messages, bytes=result.bytes,
             clean=result.clean, detail=result.detail)
    return _Step(_session_outcome(result), host, reply.code, reply.short(), result.detail, result)


def _session_outcome(result: SessionResult) -> Outcome:
    if result.stopped:
        return Outcome.RECEIVED if result.messages else Outcome.TEMPFAIL
    if not result.clean:
        return Outcome.PARTIAL
    if result.deferred:
        # The sink refused for now, so the provider keeps mail that this run did not take.
        return Outcome.PARTIAL if result.messages else Outcome.TEMPFAIL
    return Outcome.RECEIVED if result.messages else Outcome.NO_MAIL


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the connection; abort it if a TLS shutdown does not finish in time."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    writer.transport.abort()


def _record(target: Target, steps: list[_Step], progress: _Progress, run: int | None, started: float) -> SignalRecord:
    """Sum the sessions into one record.

    ``code`` and ``reply`` are those of the last ATRN that turned the line
    around, or of the last ATRN if none did.
    """
    last = steps[-1]
    reversed_steps = [s for s in steps if s.session is not None]
    shown = reversed_steps[-1] if reversed_steps else last
    outcome, detail = _overall(target, steps, progress.messages)
    received = progress.messages > 0 or bool(reversed_steps)
    return SignalRecord(
        target=target.name,
        method=str(target.method),
        host=last.host,
        port=target.effective_port,
        domain=None,
        outcome=outcome,
        code=shown.code,
        reply=shown.reply,
        duration_ms=int((time.monotonic() - started) * 1000),
        messages=progress.messages if received else None,
        bytes=progress.bytes if received else None,
        run=run,
        detail=detail,
    )


def _overall(target: Target, steps: list[_Step], messages: int) -> tuple[Outcome, str | None]:
    outcome, detail = _overall_outcome(target, steps, messages)
    rejected = sum(step.session.rejected for step in steps if step.session is not None)
    if rejected:
        note = f"{rejected} rejected for good (the provider bounces them); see the atrn_rejected events"
        detail = f"{detail}; {note}" if detail else note
    return outcome, detail


def _overall_outcome(target: Target, steps: list[_Step], messages: int) -> tuple[Outcome, str | None]:
    last = steps[-1]
    sessions = f"{len(steps)} session{'s' if len(steps) > 1 else ''}"
    deferred = sum(step.session.deferred for step in steps if step.session is not None)
    if deferred and not (last.session is not None and last.session.stopped):
        why = f"the delivery sink deferred {deferred} replies, so the provider keeps that mail"
        return (Outcome.PARTIAL if messages else Outcome.TEMPFAIL), f"{why} ({messages} messages accepted)"
    if last.session is not None and last.session.stopped:
        return (Outcome.RECEIVED if messages else Outcome.TEMPFAIL), "stopped for shutdown; more mail may be waiting"
    if last.outcome is Outcome.PARTIAL:
        return Outcome.PARTIAL, f"{last.detail} ({messages} messages accepted over {sessions})"
    if last.outcome in (Outcome.RECEIVED, Outcome.NO_MAIL):
        if last.drained_more:
            return Outcome.RECEIVED, f"stopped after max_sessions={target.max_sessions}; more mail may be waiting"
        broken = sum(1 for step in steps if step.outcome is Outcome.PARTIAL)
        detail = f"{broken} of {sessions} ended without QUIT; the next ATRN resumed" if broken else None
        return (Outcome.RECEIVED if messages else Outcome.NO_MAIL), detail
    if messages:
        # Mail already received is stored; a failed follow-up ATRN only means
        # the rest waits for the next run.
        return Outcome.RECEIVED, f"follow-up ATRN failed after {sessions}: {last.outcome} {last.detail or last.reply or ''}".rstrip()
    return last.outcome, last.detail
