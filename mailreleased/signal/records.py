"""Building outcome records for one signal attempt to one host."""

from __future__ import annotations

import time

from mailreleased.config.model import Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome, SignalRecord


class RecordMaker:
    """Makes SignalRecords for one target and host; durations count from its creation."""

    def __init__(self, target: Target, host: str, run: int | None) -> None:
        self._target = target
        self._host = host
        self._run = run
        self._started = time.monotonic()

    def make(
        self,
        domain: str | None,
        outcome: Outcome,
        *,
        code: int | None = None,
        reply: str | None = None,
        detail: str | None = None,
        messages: int | None = None,
    ) -> SignalRecord:
        """Return a record for ``domain`` (None for methods without domains)."""
        return SignalRecord(
            target=self._target.name,
            method=str(self._target.method),
            host=self._host,
            port=self._target.effective_port,
            domain=domain,
            outcome=outcome,
            code=code,
            reply=reply,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            messages=messages,
            run=self._run,
            detail=detail,
        )

    def failed(self, domain: str | None, error: SessionError, *, detail: str | None = None) -> SignalRecord:
        """Return the record of a session that ended with ``error``."""
        return self.make(
            domain, error.outcome, code=error.code, reply=error.reply, detail=detail or error.detail
        )
