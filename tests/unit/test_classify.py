"""The reply classification table, row by row."""

from __future__ import annotations

import pytest

from mailreleased.outcome import Outcome
from mailreleased.smtp.classify import Action, Failure, Stage, classify, classify_atrn, etrn_pending_count
from mailreleased.smtp.reply import Reply


def reply(code: int, text: str = "text") -> Reply:
    return Reply(code, (text,))


RELEASE_ROWS = [
    pytest.param("etrn", 250, {}, Outcome.RELEASED, id="etrn-250-released"),
    pytest.param("etrn", 252, {}, Outcome.RELEASED, id="etrn-252-released"),
    pytest.param("etrn", 253, {}, Outcome.RELEASED, id="etrn-253-released"),
    pytest.param("etrn", 251, {}, Outcome.NO_MAIL, id="etrn-251-no-mail"),
    pytest.param("qsnd", 250, {}, Outcome.RELEASED, id="qsnd-250-released"),
    pytest.param("qsnd", 251, {}, Outcome.RELEASED, id="qsnd-251-released"),
    pytest.param("custom", 220, {}, Outcome.RELEASED, id="custom-2xx-released"),
    pytest.param("etrn", 458, {}, Outcome.TEMPFAIL, id="458-tempfail"),
    pytest.param("etrn", 421, {}, Outcome.TEMPFAIL, id="421-tempfail"),
    pytest.param("etrn", 451, {}, Outcome.TEMPFAIL, id="other-4xx-tempfail"),
    pytest.param("etrn", 500, {}, Outcome.UNSUPPORTED, id="500-unsupported"),
    pytest.param("etrn", 502, {}, Outcome.UNSUPPORTED, id="502-unsupported"),
    pytest.param("qsnd", 504, {}, Outcome.UNSUPPORTED, id="504-unsupported"),
    pytest.param("etrn", 503, {"ehlo_sent": False}, Action.EHLO_AND_RETRY, id="503-ehlo-off-retry"),
    pytest.param("etrn", 503, {"ehlo_sent": False, "retried": True}, Outcome.REFUSED, id="503-after-retry-refused"),
    pytest.param("etrn", 503, {"ehlo_sent": True}, Outcome.REFUSED, id="503-after-ehlo-refused"),
    pytest.param("etrn", 530, {"has_credentials": True}, Action.AUTH_AND_RETRY, id="530-credentials-retry"),
    pytest.param(
        "etrn", 530, {"has_credentials": True, "retried": True}, Outcome.AUTH_FAILED, id="530-after-retry-auth-failed"
    ),
    pytest.param("etrn", 530, {}, Outcome.AUTH_FAILED, id="530-no-credentials-auth-failed"),
    pytest.param("etrn", 459, {}, Outcome.REFUSED, id="459-refused"),
    pytest.param("etrn", 501, {}, Outcome.REFUSED, id="501-refused"),
    pytest.param("etrn", 553, {}, Outcome.REFUSED, id="553-refused"),
    pytest.param("etrn", 554, {}, Outcome.REFUSED, id="554-refused"),
    pytest.param("etrn", 550, {}, Outcome.REFUSED, id="other-5xx-refused"),
    pytest.param("etrn", 354, {}, Outcome.PROTOCOL_ERROR, id="3xx-protocol-error"),
]


@pytest.mark.parametrize(("method", "code", "flags", "expected"), RELEASE_ROWS)
def test_release_reply(method: str, code: int, flags: dict[str, bool], expected: Outcome | Action) -> None:
    """Each release-command reply maps to its row of the table."""
    assert classify(Stage.RELEASE, reply(code), method=method, **flags) is expected


@pytest.mark.parametrize(
    ("stage", "code", "expected"),
    [
        pytest.param(Stage.GREETING, 220, Action.PROCEED, id="greeting-220-proceed"),
        pytest.param(Stage.GREETING, 554, Outcome.REFUSED, id="greeting-554-refused"),
        pytest.param(Stage.GREETING, 421, Outcome.TEMPFAIL, id="greeting-421-tempfail"),
        pytest.param(Stage.EHLO, 250, Action.PROCEED, id="ehlo-250-proceed"),
        pytest.param(Stage.EHLO, 500, Action.HELO_FALLBACK, id="ehlo-500-helo"),
        pytest.param(Stage.EHLO, 502, Action.HELO_FALLBACK, id="ehlo-502-helo"),
        pytest.param(Stage.EHLO, 501, Outcome.REFUSED, id="ehlo-501-refused"),
        pytest.param(Stage.HELO, 250, Action.PROCEED, id="helo-250-proceed"),
        pytest.param(Stage.STARTTLS, 220, Action.PROCEED, id="starttls-220-proceed"),
        pytest.param(Stage.STARTTLS, 454, Outcome.TLS_FAILED, id="starttls-454-tls-failed"),
        pytest.param(Stage.STARTTLS, 421, Outcome.TEMPFAIL, id="starttls-421-tempfail"),
        pytest.param(Stage.AUTH, 235, Action.PROCEED, id="auth-235-proceed"),
        pytest.param(Stage.AUTH, 534, Outcome.AUTH_FAILED, id="auth-534-auth-failed"),
        pytest.param(Stage.AUTH, 535, Outcome.AUTH_FAILED, id="auth-535-auth-failed"),
        pytest.param(Stage.AUTH, 538, Outcome.AUTH_FAILED, id="auth-538-auth-failed"),
        pytest.param(Stage.AUTH, 454, Outcome.TEMPFAIL, id="auth-454-tempfail"),
        pytest.param(Stage.AUTH, 504, Action.NEXT_MECHANISM, id="auth-504-next-mechanism"),
    ],
)
def test_session_reply(stage: Stage, code: int, expected: Outcome | Action) -> None:
    """Replies during session setup map to their row of the table."""
    assert classify(stage, reply(code)) is expected


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        pytest.param(Failure.EOF, Outcome.PROTOCOL_ERROR, id="eof-protocol-error"),
        pytest.param(Failure.GARBAGE, Outcome.PROTOCOL_ERROR, id="garbage-protocol-error"),
        pytest.param(Failure.TIMEOUT, Outcome.TIMEOUT, id="timeout"),
        pytest.param(Failure.CONNECT, Outcome.CONNECT_FAILED, id="connect-failed"),
        pytest.param(Failure.TLS, Outcome.TLS_FAILED, id="tls-failed"),
    ],
)
def test_failure(failure: Failure, expected: Outcome) -> None:
    """Failures without a complete reply map to the same outcome at greeting and release."""
    assert classify(Stage.RELEASE, failure) is expected
    assert classify(Stage.GREETING, failure) is expected


def test_eof_on_ehlo_reconnects() -> None:
    """A server hanging up on EHLO earns a new connection with HELO."""
    assert classify(Stage.EHLO, Failure.EOF) is Action.RECONNECT_WITH_HELO


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(250, Action.REVERSE, id="250-reverse"),
        pytest.param(453, Outcome.NO_MAIL, id="453-no-mail"),
        pytest.param(450, Outcome.TEMPFAIL, id="450-tempfail"),
        pytest.param(451, Outcome.TEMPFAIL, id="451-tempfail"),
        pytest.param(421, Outcome.TEMPFAIL, id="other-4xx-tempfail"),
        pytest.param(500, Outcome.UNSUPPORTED, id="500-unsupported"),
        pytest.param(502, Outcome.UNSUPPORTED, id="502-unsupported"),
        pytest.param(530, Outcome.AUTH_FAILED, id="530-auth-failed"),
        pytest.param(553, Outcome.REFUSED, id="other-5xx-refused"),
    ],
)
def test_atrn_reply(code: int, expected: Outcome | Action) -> None:
    """ATRN replies map as RFC 2645 section 5.2.1 describes."""
    assert classify_atrn(reply(code)) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("OK, 7 pending messages for node example.org started", 7, id="rfc1985-text"),
        pytest.param("2.0.0 OK, 12 pending messages started", 12, id="enhanced-code"),
        pytest.param("OK, pending messages started", None, id="no-number"),
    ],
)
def test_etrn_pending_count(text: str, expected: int | None) -> None:
    """The message count comes from the first number after any enhanced code."""
    assert etrn_pending_count(Reply(253, (text,))) == expected


def test_pending_count_only_for_253() -> None:
    """Other codes carry no count."""
    assert etrn_pending_count(Reply(250, ("OK, 7 started",))) is None
