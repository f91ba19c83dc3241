"""One processing run: apply the every-N rule, signal the due targets, record outcomes.

A processing run is one scheduler tick or one ``mailreleased once``. Targets are
signalled concurrently; each target's transient failures are retried with
backoff inside the run, following its retry policy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from mailreleased.config.model import Config, Method, RetryPolicy, Target, TlsMode
from mailreleased.outcome import TRANSIENT_OUTCOMES, Outcome, SignalRecord, log_level_for
from mailreleased.shutdown import shutdown_requested
from mailreleased.state import StateStore, should_signal

log = structlog.get_logger("mailreleased.runner")

Sleeper = Callable[[float], Awaitable[None]]
RecordHook = Callable[[Target, list[SignalRecord]], None]


async def run_once(
    config: Config,
    *,
    targets: Sequence[str] | None = None,
    force: bool = False,
    store: StateStore | None = None,
    sleep: Sleeper = asyncio.sleep,
    on_records: RecordHook | None = None,
) -> list[SignalRecord]:
    """Run one processing run over ``targets`` (default: all) and return every outcome record.

    ``force`` bypasses the every-N rule and leaves the counters alone. The state
    file is loaded (unless a loaded ``store`` is given) and saved afterwards.
    """
    if store is None:
        store = StateStore(config.state_dir)
        store.load()
    selected = select_targets(config, targets)
    with store.transaction():
        runs = [_count_run(store, target, force=force) for target in selected]
    results = await asyncio.gather(
        *(_run_target(config, target, run, force=force, sleep=sleep) for target, run in zip(selected, runs))
    )
    records = [record for batch in results for record in batch]
    with store.transaction():
        for target, batch in zip(selected, results):
            _remember(store, target, batch)
    if on_records is not None:
        for target, batch in zip(selected, results):
            on_records(target, batch)
    return records


def select_targets(config: Config, names: Sequence[str] | None) -> list[Target]:
    """Return the configured targets named in ``names`` (all when None), in config order.

    Raises KeyError with the first unknown name.
    """
    if not names:
        return list(config.targets)
    for name in names:
        config.target(name)
    return [target for target in config.targets if target.name in names]


def _count_run(store: StateStore, target: Target, *, force: bool) -> int:
    """Advance the target's run counter (unless forced) and return this run's number."""
    state = store.get(target.name)
    if force:
        return state.runs
    state.runs += 1
    return state.runs


async def _run_target(
    config: Config, target: Target, run: int, *, force: bool, sleep: Sleeper
) -> list[SignalRecord]:
    if not force and not should_signal(run, target.every):
        records = skipped_records(target, run)
        _log_records(records)
        return records
    return await signal_with_retries(target, config.retry_for(target), run=run, sleep=sleep)


async def signal_with_retries(
    target: Target, policy: RetryPolicy, *, run: int | None, sleep: Sleeper = asyncio.sleep
) -> list[SignalRecord]:
    """Signal ``target``; retry the records with transient outcomes, following ``policy``.

    Only the domains that failed transiently are signalled again. Every attempt's
    records are logged; the last attempt's records stand for each domain.
    """
    from mailreleased.signal import signal_target

    final: dict[str | None, SignalRecord] = {}
    pending = target
    for attempt in range(1, policy.attempts + 1):
        records = await signal_target(pending, run=run)
        _log_records(records, attempt=attempt)
        for record in records:
            final[record.domain] = record
        retry_domains = [r.domain for r in records if _retryable(target, r)]
        # A stopping daemon keeps what it has rather than start another session.
        if attempt == policy.attempts or not retry_domains or shutdown_requested():
            break
        delay = backoff_delay(policy, attempt)
        log.info("retry_scheduled", target=target.name, attempt=attempt + 1, delay_s=round(delay, 3))
        await sleep(delay)
        if shutdown_requested():
            break
        pending = _retry_target(pending, records, retry_domains)
    return list(final.values())


def _retryable(target: Target, record: SignalRecord) -> bool:
    if record.outcome not in TRANSIENT_OUTCOMES:
        return False
    # A partial ATRN drain already re-connects inside the signaler; retry it like any transient failure.
    return record.outcome is not Outcome.TLS_FAILED or target.tls is TlsMode.OPPORTUNISTIC


def _retry_target(target: Target, records: list[SignalRecord], retry_domains: list[str | None]) -> Target:
    """Return the target for the next attempt: only the failed domains, and TLS as is safe.

    After a failed opportunistic handshake the retry goes without STARTTLS only
    when there is no AUTH. With AUTH it requires STARTTLS, so a password never
    crosses the wire in clear because a handshake failed.
    """
    update: dict[str, Any] = {}
    if None not in retry_domains:
        update["domains"] = tuple(domain for domain in retry_domains if domain is not None)
    if target.tls is TlsMode.OPPORTUNISTIC and any(r.outcome is Outcome.TLS_FAILED for r in records):
        update["tls"] = TlsMode.STARTTLS if target.auth is not None else TlsMode.OFF
    return target.model_copy(update=update) if update else target


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Return the wait before retry number ``attempt`` + 1: exponential, capped, optionally jittered."""
    delay = float(min(policy.backoff * (2 ** (attempt - 1)), policy.max_backoff))
    if policy.jitter:
        # Full jitter would allow near-zero waits; keep at least half the delay so waits still grow.
        delay = delay / 2 + (rng or random).uniform(0, delay / 2)
    return delay


def skipped_records(target: Target, run: int) -> list[SignalRecord]:
    """Return the ``skipped`` records for a run that the every-N rule passes over."""
    domains: Sequence[str | None] = target.domains if _per_domain(target) else (None,)
    host = target.effective_hosts[0]
    port = None if target.method is Method.CONNECT and target.port is None else target.effective_port
    return [
        SignalRecord(
            target=target.name,
            method=str(target.method),
            host=host,
            port=port,
            domain=domain,
            outcome=Outcome.SKIPPED,
            duration_ms=0,
            run=run,
            detail=f"every {target.every}: next signal on run {_next_signal_run(run, target.every)}",
        )
        for domain in domains
    ]


def _per_domain(target: Target) -> bool:
    if target.method in (Method.ETRN, Method.QSND):
        return bool(target.domains)
    if target.method is Method.CUSTOM:
        return bool(target.domains) and target.command is not None and "{domain}" in target.command
    return False


def _next_signal_run(run: int, every: int) -> int:
    return run + (every - (run - 1) % every)


def _log_records(records: list[SignalRecord], *, attempt: int = 1) -> None:
    for record in records:
        fields = {
            "target": record.target,
            "method": record.method,
            "host": record.host,
            "port": record.port,
            "domain": record.domain,
            "outcome": str(record.outcome),
            "code": record.code,
            "reply": record.reply,
            "duration_ms": record.duration_ms,
            "run": record.run,
        }
        if record.messages is not None:
            fields["messages"] = record.messages
            fields["bytes"] = record.bytes
        if record.detail:
            fields["detail"] = record.detail
        if attempt > 1:
            fields["attempt"] = attempt
        getattr(log, log_level_for(record.outcome))("signal", **fields)


def _remember(store: StateStore, target: Target, records: list[SignalRecord]) -> None:
    if not records or all(record.outcome is Outcome.SKIPPED for record in records):
        return
    state = store.get(target.name)
    now = time.time()
    worst = max(records, key=lambda record: _rank(record.outcome))
    state.last_outcome = str(worst.outcome)
    state.last_time = now
    if all(record.outcome in (Outcome.RELEASED, Outcome.NO_MAIL, Outcome.RECEIVED) for record in records):
        state.last_success = now


def _rank(outcome: Outcome) -> int:
    level = log_level_for(outcome)
    return {"info": 0, "warning": 1, "error": 2}[level]
