"""The SMTP release methods: ETRN (RFC 1985), QSND and a custom command.

Each release command goes on its own round trip, never pipelined. A
connection carries at most :data:`MAX_COMMANDS_PER_SESSION` of them,
because servers slow down or drop clients that send many (sendmail from
8 ETRNs, Exim after 10 non-mail commands).
"""

from __future__ import annotations

import structlog

from mailreleased.config.model import Method, Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.signal.records import RecordMaker
from mailreleased.smtp.classify import Action, Stage, classify, etrn_pending_count
from mailreleased.smtp.opening import open_session
from mailreleased.smtp.session import ClientSession, Restart

MAX_COMMANDS_PER_SESSION = 8

_VERBS = {Method.ETRN: "ETRN", Method.QSND: "QSND"}

_log = structlog.get_logger("mailreleased.signal")

# One release command: the domain it stands for (None when it names none) and the line to send.
Command = tuple[str | None, str]


def release_commands(target: Target) -> list[Command]:
    """Return the release commands for a target, in configured order.

    ``command`` replaces the method's verb: it is sent once per domain when it
    contains ``{domain}``, else once. An empty ``command`` (or a custom target
    without one) sends nothing, so the session only connects and quits.
    Domains go on the wire verbatim, with any ``@`` or ``#`` prefix kept.
    """
    if target.command is None and target.method in _VERBS:
        verb = _VERBS[target.method]
        return [(domain, f"{verb} {domain}") for domain in target.domains]
    command = target.command or ""
    if not command:
        return []
    if "{domain}" in command:
        return [(domain, command.replace("{domain}", domain)) for domain in target.domains]
    return [(None, command)]


async def release_over_smtp(target: Target, host: str, run: int | None) -> list[SignalRecord]:
    """Send the target's release commands to ``host`` and return one record per command."""
    maker = RecordMaker(target, host, run)
    commands = release_commands(target)
    if target.command and "{domain}" in target.command and not target.domains:
        return [maker.make(None, Outcome.PROTOCOL_ERROR, detail="'command' uses {domain} but 'domains' is empty")]
    if not commands:
        return [await _connect_only(target, host, maker)]
    records: list[SignalRecord] = []
    pending = commands
    while pending:
        batch, pending = pending[:MAX_COMMANDS_PER_SESSION], pending[MAX_COMMANDS_PER_SESSION:]
        try:
            session = await open_session(target, host)
        except SessionError as exc:
            # The next connection would most likely fail the same way.
            return records + [maker.failed(domain, exc) for domain, _ in batch + pending]
        records += await _run_batch(session, target, batch, maker)
        if records[-1].outcome is Outcome.UNSUPPORTED and pending:
            records += [_not_sent(maker, domain, records[-1]) for domain, _ in pending]
            break
    return records


async def _connect_only(target: Target, host: str, maker: RecordMaker) -> SignalRecord:
    try:
        session = await open_session(target, host)
    except SessionError as exc:
        return maker.failed(None, exc)
    greeting = session.greeting
    await session.quit()
    return maker.make(
        None,
        Outcome.RELEASED,
        code=greeting.code if greeting else None,
        reply=greeting.short() if greeting else None,
        detail="connected; no command configured",
    )


async def _run_batch(
    session: ClientSession, target: Target, batch: list[Command], maker: RecordMaker
) -> list[SignalRecord]:
    """Send each command of ``batch`` on one session, then QUIT."""
    records: list[SignalRecord] = []
    try:
        for index, (domain, line) in enumerate(batch):
            try:
                record = await _release_one(session, target, domain, line, maker)
            except SessionError as exc:
                records.append(maker.failed(domain, exc))
                records += [_not_sent(maker, rest, records[-1]) for rest, _ in batch[index + 1 :]]
                return records
            records.append(record)
            if record.code == 421 or record.outcome is Outcome.UNSUPPORTED:
                # 421: the server is closing the connection. Unsupported: the rest would fail alike.
                records += [_not_sent(maker, rest, record) for rest, _ in batch[index + 1 :]]
                break
        await session.quit()
    finally:
        await session.aclose()
    return records


async def _release_one(
    session: ClientSession, target: Target, domain: str | None, line: str, maker: RecordMaker
) -> SignalRecord:
    """Send one release command, with the one retry that a 503 or 530 earns."""
    retried = False
    while True:
        reply = await session.command(line)
        decision = classify(
            Stage.RELEASE,
            reply,
            method=str(target.method),
            ehlo_sent=session.greeted,
            has_credentials=target.auth is not None and not session.authenticated,
            retried=retried,
        )
        if isinstance(decision, Outcome):
            break
        retried = True
        if decision is Action.EHLO_AND_RETRY:
            await _late_hello(session, target)
        elif decision is Action.AUTH_AND_RETRY:
            await session.login()
    count = etrn_pending_count(reply) if target.method is Method.ETRN else None
    if count is not None:
        _log.info("etrn_pending_messages", target=target.name, host=session.host, domain=domain, messages=count)
    return maker.make(domain, decision, code=reply.code, reply=reply.short(), messages=count)


async def _late_hello(session: ClientSession, target: Target) -> None:
    """Send EHLO after a 503 (and AUTH, if configured and offered) before the retry."""
    try:
        await session.hello(esmtp=True)
    except Restart:
        raise SessionError(Outcome.PROTOCOL_ERROR, detail="connection closed on EHLO") from None
    if target.auth is not None and session.auth_mechanisms and not session.authenticated:
        await session.login()


def _not_sent(maker: RecordMaker, domain: str | None, cause: SignalRecord) -> SignalRecord:
    return maker.make(
        domain,
        cause.outcome,
        code=cause.code,
        reply=cause.reply,
        detail=f"not sent: an earlier command on this connection ended with {cause.outcome}",
    )
