"""Outcome vocabulary, outcome records and their mapping to exit codes and log levels."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Outcome(enum.StrEnum):
    """The fixed vocabulary of what one release signal achieved."""

    RELEASED = "released"
    NO_MAIL = "no_mail"
    RECEIVED = "received"
    SKIPPED = "skipped"
    REFUSED = "refused"
    TEMPFAIL = "tempfail"
    AUTH_FAILED = "auth_failed"
    UNSUPPORTED = "unsupported"
    CONNECT_FAILED = "connect_failed"
    TLS_FAILED = "tls_failed"
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol_error"
    PARTIAL = "partial"


SUCCESS_OUTCOMES = frozenset({Outcome.RELEASED, Outcome.NO_MAIL, Outcome.RECEIVED, Outcome.SKIPPED})

# Outcomes worth retrying soon: the peer or the link may recover by itself.
TRANSIENT_OUTCOMES = frozenset(
    {Outcome.TEMPFAIL, Outcome.TIMEOUT, Outcome.CONNECT_FAILED, Outcome.TLS_FAILED, Outcome.PARTIAL}
)

# sysexits.h values
EX_OK = 0
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78

_EXIT_CODES: dict[Outcome, int] = {
    Outcome.AUTH_FAILED: EX_NOPERM,
    Outcome.REFUSED: EX_UNAVAILABLE,
    Outcome.UNSUPPORTED: EX_UNAVAILABLE,
    Outcome.PROTOCOL_ERROR: EX_PROTOCOL,
    Outcome.TEMPFAIL: EX_TEMPFAIL,
    Outcome.TIMEOUT: EX_TEMPFAIL,
    Outcome.CONNECT_FAILED: EX_TEMPFAIL,
    Outcome.TLS_FAILED: EX_TEMPFAIL,
    Outcome.PARTIAL: EX_TEMPFAIL,
}

# Most severe first: the exit code of a run is that of its most severe record.
_SEVERITY = (EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, EX_PROTOCOL, EX_TEMPFAIL)


def exit_code_for(outcome: Outcome) -> int:
    """Return the sysexits code that one outcome stands for."""
    return _EXIT_CODES.get(outcome, EX_OK)


def exit_code_for_run(outcomes: list[Outcome]) -> int:
    """Return the exit code of a run: 0 if all succeeded, else the most severe code."""
    codes = {exit_code_for(outcome) for outcome in outcomes}
    for code in _SEVERITY:
        if code in codes:
            return code
    return EX_OK


def log_level_for(outcome: Outcome) -> str:
    """Return the log level for an outcome: info, warning or error."""
    if outcome in SUCCESS_OUTCOMES:
        return "info"
    if outcome in TRANSIENT_OUTCOMES:
        return "warning"
    return "error"


@dataclasses.dataclass(frozen=True, slots=True)
class SignalRecord:
    """One outcome record: what one signal to one (target, domain) achieved."""

    target: str
    method: str
    host: str
    port: int | None
    domain: str | None
    outcome: Outcome
    code: int | None = None
    reply: str | None = None
    duration_ms: int | None = None
    messages: int | None = None
    bytes: int | None = None
    run: int | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the record as the ``once --json`` object (fixed keys, null where unused).

        The reply text is scrubbed of registered secrets: a hostile or broken
        server may echo an AUTH payload back in its reply.
        """
        from mailreleased.log import scrub

        return {
            "target": self.target,
            "method": self.method,
            "host": self.host,
            "port": self.port,
            "domain": self.domain,
            "outcome": str(self.outcome),
            "code": self.code,
            "reply": scrub(self.reply) if self.reply is not None else None,
            "duration_ms": self.duration_ms,
            "messages": self.messages,
            "bytes": self.bytes,
        }
