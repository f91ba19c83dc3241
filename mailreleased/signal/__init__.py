"""Per-method release signals and the dispatch from a target to its signaler."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

import structlog

from mailreleased.config.model import Method, Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.signal.finger import finger_poke
from mailreleased.signal.poke import connect_poke
from mailreleased.signal.records import RecordMaker
from mailreleased.signal.smtp_methods import release_over_smtp

# Signals one host of a target: (target, host, run) -> records.
HostSignaler = Callable[[Target, str, int | None], Awaitable[list[SignalRecord]]]
# Signals a whole target, choosing hosts itself: (target, run=...) -> records.
TargetSignaler = Callable[..., Awaitable[list[SignalRecord]]]

HOST_SIGNALERS: dict[Method, HostSignaler] = {
    Method.ETRN: release_over_smtp,
    Method.QSND: release_over_smtp,
    Method.CUSTOM: release_over_smtp,
    Method.FINGER: finger_poke,
    Method.CONNECT: connect_poke,
}

# Imported only when used, as "module:function".
LAZY_TARGET_SIGNALERS: dict[Method, str] = {
    Method.ATRN: "mailreleased.odmr.atrn:run_atrn",
}

_log = structlog.get_logger("mailreleased.signal")


async def signal_target(target: Target, *, run: int | None = None) -> list[SignalRecord]:
    """Send the target's release signal once (all its domains) and return one record per (target, domain).

    Methods without domains return one record per target. Network and
    protocol problems become records; this function does not raise for them.
    """
    if target.method in LAZY_TARGET_SIGNALERS:
        return await _run_lazy(target, LAZY_TARGET_SIGNALERS[target.method], run)
    return await _with_failover(target, HOST_SIGNALERS[target.method], run)


async def _with_failover(target: Target, signaler: HostSignaler, run: int | None) -> list[SignalRecord]:
    """Try each host in order while every record of the previous one is connect_failed."""
    hosts = target.effective_hosts
    records: list[SignalRecord] = []
    for index, host in enumerate(hosts):
        try:
            records = await signaler(target, host, run)
        except SessionError as exc:
            records = [RecordMaker(target, host, run).failed(domain, exc) for domain in _record_domains(target)]
        if any(record.outcome is not Outcome.CONNECT_FAILED for record in records):
            return records
        if index + 1 < len(hosts):
            _log.info("host_failover", target=target.name, host=host, next_host=hosts[index + 1])
    return records


async def _run_lazy(target: Target, location: str, run: int | None) -> list[SignalRecord]:
    module_name, _, function_name = location.partition(":")
    try:
        signaler: TargetSignaler = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError):
        _log.error("signaler_missing", target=target.name, method=str(target.method), location=location)
        maker = RecordMaker(target, target.effective_hosts[0], run)
        detail = f"method {target.method} is not available: {location} cannot be imported"
        return [maker.make(None, Outcome.PROTOCOL_ERROR, detail=detail)]
    return await signaler(target, run=run)


def _record_domains(target: Target) -> list[str | None]:
    if target.method in (Method.ETRN, Method.QSND) and target.domains:
        return list(target.domains)
    return [None]


__all__ = ["HOST_SIGNALERS", "LAZY_TARGET_SIGNALERS", "signal_target"]
