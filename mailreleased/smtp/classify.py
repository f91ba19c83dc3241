"""The one place where SMTP replies and network failures become outcomes.

Every stage of a session (greeting, EHLO, STARTTLS, AUTH, the release
command, ATRN) passes either a complete :class:`Reply` or a
:class:`Failure` through :func:`classify`. The result is a final
:class:`Outcome`, or an :class:`Action` that the session must take next.
Decisions look at the three-digit code only; reply text is for logs.
"""

from __future__ import annotations

import enum
import re

from mailreleased.outcome import Outcome
from mailreleased.smtp.reply import Reply


class Stage(enum.Enum):
    """The session step at which a reply or failure happened."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    HELO = "helo"
    STARTTLS = "starttls"
    AUTH = "auth"
    RELEASE = "release"
    ATRN = "atrn"


class Failure(enum.Enum):
    """A way a session can end without a complete reply."""

    EOF = "eof"
    GARBAGE = "garbage"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"


class Action(enum.Enum):
    """A step the session takes instead of recording an outcome."""

    PROCEED = "proceed"
    HELO_FALLBACK = "helo_fallback"
    RECONNECT_WITH_HELO = "reconnect_with_helo"
    EHLO_AND_RETRY = "ehlo_and_retry"
    AUTH_AND_RETRY = "auth_and_retry"
    NEXT_MECHANISM = "next_mechanism"
    REVERSE = "reverse"


_FAILURE_OUTCOMES = {
    Failure.EOF: Outcome.PROTOCOL_ERROR,
    Failure.GARBAGE: Outcome.PROTOCOL_ERROR,
    Failure.TIMEOUT: Outcome.TIMEOUT,
    Failure.CONNECT: Outcome.CONNECT_FAILED,
    Failure.TLS: Outcome.TLS_FAILED,
}

_ETRN_COUNT = re.compile(r"\b(\d+)\b")


def classify(
    stage: Stage,
    result: Reply | Failure,
    *,
    method: str = "etrn",
    ehlo_sent: bool = True,
    has_credentials: bool = False,
    retried: bool = False,
) -> Outcome | Action:
    """Turn a reply (or a failure) at ``stage`` into an outcome or the next action.

    ``ehlo_sent`` and ``has_credentials`` decide whether a 503 or 530 to the
    release command earns one retry; ``retried`` is true once that retry was used.
    """
    if isinstance(result, Failure):
        if stage is Stage.EHLO and result is Failure.EOF:
            # RFC 1869 notes servers that hang up on EHLO: try again with HELO.
            return Action.RECONNECT_WITH_HELO
        return _FAILURE_OUTCOMES[result]
    code = result.code
    if stage is Stage.RELEASE:
        return _classify_release(code, method, ehlo_sent, has_credentials, retried)
    if stage is Stage.ATRN:
        return _classify_atrn(code)
    if stage is Stage.AUTH:
        return _classify_auth(code)
    if stage is Stage.STARTTLS:
        if code == 220:
            return Action.PROCEED
        return Outcome.TEMPFAIL if code == 421 else Outcome.TLS_FAILED
    return _classify_opening(stage, code)


def _classify_opening(stage: Stage, code: int) -> Outcome | Action:
    """Classify greeting, EHLO and HELO replies."""
    expected = 220 if stage is Stage.GREETING else 250
    if code == expected:
        return Action.PROCEED
    if stage is Stage.EHLO and code in (500, 502):
        return Action.HELO_FALLBACK
    return _by_class(code)


def _classify_release(
    code: int, method: str, ehlo_sent: bool, has_credentials: bool, retried: bool
) -> Outcome | Action:
    """Classify replies to ETRN, QSND or a custom command."""
    if 200 <= code < 300:
        if method == "etrn" and code == 251:
            return Outcome.NO_MAIL
        return Outcome.RELEASED
    if code in (500, 502, 504):
        return Outcome.UNSUPPORTED
    if code == 503:
        return Action.EHLO_AND_RETRY if not ehlo_sent and not retried else Outcome.REFUSED
    if code == 530:
        return Action.AUTH_AND_RETRY if has_credentials and not retried else Outcome.AUTH_FAILED
    if code == 459:
        # RFC 1985 "node not allowed" is a standing refusal despite its 4xx code.
        return Outcome.REFUSED
    return _by_class(code)


def _classify_auth(code: int) -> Outcome | Action:
    """Classify the final reply of an AUTH exchange."""
    if code == 235:
        return Action.PROCEED
    if code == 504:
        return Action.NEXT_MECHANISM
    if 500 <= code < 600:
        return Outcome.AUTH_FAILED
    return _by_class(code)


def _classify_atrn(code: int) -> Outcome | Action:
    """Classify replies to ATRN (RFC 2645): 250 reverses the connection, 453 means no mail."""
    if code == 250:
        return Action.REVERSE
    if code == 453:
        return Outcome.NO_MAIL
    if code in (500, 502):
        return Outcome.UNSUPPORTED
    if code == 530:
        return Outcome.AUTH_FAILED
    return _by_class(code)


def _by_class(code: int) -> Outcome:
    """Classify by the first digit: 4xx is temporary, 5xx a refusal, anything else malformed."""
    if 400 <= code < 500:
        return Outcome.TEMPFAIL
    if 500 <= code < 600:
        return Outcome.REFUSED
    return Outcome.PROTOCOL_ERROR


def classify_atrn(reply: Reply | Failure) -> Outcome | Action:
    """Classify the reply to ATRN; :data:`Action.REVERSE` means turn the connection around."""
    return classify(Stage.ATRN, reply)


def etrn_pending_count(reply: Reply) -> int | None:
    """Return the message count of an RFC 1985 ``253 OK, <n> pending messages`` reply, if present."""
    if reply.code != 253:
        return None
    text = reply.text
    if reply.enhanced is not None:
        text = text[len(reply.enhanced) :]
    match = _ETRN_COUNT.search(text)
    return int(match.group(1)) if match else None
