"""ETRN against the scripted fake: greetings, fallbacks, retries and failures."""

from __future__ import annotations

import pytest

from mailreleased.outcome import Outcome
from mailreleased.signal import signal_target
from tests.fakes.smtp import Close, Drop, FakeSmtpServer, Hang, Script, Step
from tests.fakes.targets import closed_port, make_target

EHLO_OK = "250-fake.test\n250-ENHANCEDSTATUSCODES\n250 ETRN"


async def test_etrn_released_and_quit() -> None:
    """A plain session: EHLO, ETRN, QUIT, one released record."""
    script = Script(steps=(Step("EHLO", EHLO_OK), Step("ETRN", "250 Queuing started")))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port), run=3)
    assert [r.outcome for r in records] == [Outcome.RELEASED]
    assert records[0].code == 250
    assert records[0].reply == "Queuing started"
    assert records[0].run == 3
    assert server.connections[0].lines == ["EHLO client.test", "ETRN example.org", "QUIT"]
    assert server.mismatches == []


async def test_multiline_greeting_waits_for_last_line() -> None:
    """Nothing is sent before the final 220 of a slow multi-line greeting."""
    script = Script(
        greeting="220-fake.test first\n220-second\n220 fake.test ready",
        steps=(Step("EHLO", EHLO_OK), Step("ETRN", "250 OK")),
        pause=0.2,
    )
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].early_talker is False


async def test_multiline_reply_and_lf_only() -> None:
    """Multi-line replies with bare LF endings are read whole; we still send CRLF."""
    script = Script(
        greeting="220-fake\n220 fake ready",
        steps=(Step("EHLO", EHLO_OK), Step("ETRN", "250-first line\n250 2.0.0 Queuing started")),
        line_ending=b"\n",
    )
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.RELEASED
    assert records[0].reply == "first line 2.0.0 Queuing started"
    assert bytes(server.connections[0].raw).count(b"\r\n") == 3


async def test_domain_argument_sent_verbatim() -> None:
    """@ and # prefixes go out exactly as configured, in order."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN @example.org", "250 OK"), Step("ETRN #queue", "251 none"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, domains=["@example.org", "#queue"]))
    assert [r.outcome for r in records] == [Outcome.RELEASED, Outcome.NO_MAIL]
    assert [r.domain for r in records] == ["@example.org", "#queue"]
    assert server.connections[0].lines[1:3] == ["ETRN @example.org", "ETRN #queue"]


async def test_etrn_not_advertised_still_sent() -> None:
    """ETRN goes out even when EHLO does not list it."""
    steps = (Step("EHLO", "250-fake.test\n250 PIPELINING"), Step("ETRN", "458 Administrative prohibition"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.TEMPFAIL
    assert records[0].code == 458


async def test_pending_count_from_253() -> None:
    """A 253 reply is released and its message count lands in the record."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "253 OK, 4 pending messages for node example.org started"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.RELEASED
    assert records[0].messages == 4


async def test_helo_fallback_on_502() -> None:
    """A 502 to EHLO: HELO on the same connection."""
    steps = (Step("EHLO", "502 5.5.2 not implemented"), Step("HELO", "250 fake.test"), Step("ETRN", "250 OK"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.RELEASED
    assert len(server.connections) == 1
    assert server.connections[0].lines == ["EHLO client.test", "HELO client.test", "ETRN example.org", "QUIT"]


async def test_drop_on_ehlo_reconnects_with_helo() -> None:
    """A server hanging up on EHLO gets a second connection that uses HELO."""
    first = Script(steps=(Step("EHLO", Drop()),))
    second = Script(steps=(Step("HELO", "250 fake.test"), Step("ETRN", "250 OK")))
    async with FakeSmtpServer(first, second) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.RELEASED
    assert [c.lines for c in server.connections] == [
        ["EHLO client.test"],
        ["HELO client.test", "ETRN example.org", "QUIT"],
    ]


async def test_503_with_ehlo_off_retries_after_ehlo() -> None:
    """ehlo off and a 503: EHLO, then the same ETRN once more."""
    steps = (
        Step("ETRN", "503 5.5.1 Polite people say hello first"),
        Step("EHLO", EHLO_OK),
        Step("ETRN", "250 OK"),
    )
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, ehlo=False))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].lines == ["ETRN example.org", "EHLO client.test", "ETRN example.org", "QUIT"]


async def test_503_after_ehlo_is_refused() -> None:
    """A 503 although EHLO was sent is final."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "503 5.5.1 bad sequence"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.REFUSED
    assert server.connections[0].lines.count("ETRN example.org") == 1


async def test_530_without_credentials_is_auth_failed() -> None:
    """A 530 and no auth settings: auth_failed, no retry."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "530 5.7.0 Authentication required"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.AUTH_FAILED


async def test_greeting_554_sends_quit() -> None:
    """A 554 greeting is refused; QUIT is sent and its reply read."""
    async with FakeSmtpServer(Script(greeting="554 5.7.1 go away")) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.REFUSED
    assert records[0].code == 554
    assert server.connections[0].lines == ["QUIT"]


async def test_greeting_421_is_tempfail() -> None:
    """A 421 greeting is a temporary failure and nothing is sent."""
    async with FakeSmtpServer(Script(greeting="421 4.3.2 busy")) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.TEMPFAIL
    assert server.connections[0].lines == []


async def test_421_mid_session_marks_rest() -> None:
    """A 421 to one ETRN ends the session; the following domains are recorded, not sent."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN a.example", "250 OK"), Step("ETRN b.example", Close("421 4.7.0 closing")))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, domains=["a.example", "b.example", "c.example"]))
    assert [r.outcome for r in records] == [Outcome.RELEASED, Outcome.TEMPFAIL, Outcome.TEMPFAIL]
    assert records[2].detail is not None and records[2].detail.startswith("not sent")
    assert "ETRN c.example" not in server.connections[0].lines


async def test_drop_mid_session_is_protocol_error() -> None:
    """A connection dropped before the reply: protocol_error for it and the rest."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", Drop()))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, domains=["a.example", "b.example"]))
    assert [r.outcome for r in records] == [Outcome.PROTOCOL_ERROR, Outcome.PROTOCOL_ERROR]


async def test_greeting_timeout() -> None:
    """No greeting within the greeting timeout: timeout."""
    async with FakeSmtpServer(Script(greeting=Hang())) as server:
        target = make_target(server.port, timeouts={"connect": 5, "greeting": 0.2, "reply": 5})
        records = await signal_target(target)
    assert records[0].outcome is Outcome.TIMEOUT


async def test_reply_timeout() -> None:
    """No reply to ETRN within the reply timeout: timeout."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", Hang()))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        target = make_target(server.port, timeouts={"connect": 5, "greeting": 5, "reply": 0.2})
        records = await signal_target(target)
    assert records[0].outcome is Outcome.TIMEOUT


async def test_garbage_reply_is_protocol_error() -> None:
    """A reply line without a code: protocol_error."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", b"hello there\r\n"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.PROTOCOL_ERROR


async def test_too_many_reply_lines_is_protocol_error() -> None:
    """More than 100 lines in one reply: protocol_error."""
    endless = "\n".join(["250-x"] * 150 + ["250 end"])
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", endless))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.PROTOCOL_ERROR


async def test_overlong_reply_line_is_protocol_error() -> None:
    """A reply line over 8 KiB: protocol_error."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "250 " + "x" * 9000))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port))
    assert records[0].outcome is Outcome.PROTOCOL_ERROR


async def test_more_than_eight_domains_split() -> None:
    """Ten domains go out as eight on one connection and two on the next."""
    domains = [f"d{i}.example" for i in range(10)]
    first = Script(steps=(Step("EHLO", EHLO_OK), *(Step(f"ETRN {d}", "250 OK") for d in domains[:8])))
    second = Script(steps=(Step("EHLO", EHLO_OK), *(Step(f"ETRN {d}", "250 OK") for d in domains[8:])))
    async with FakeSmtpServer(first, second) as server:
        records = await signal_target(make_target(server.port, domains=domains))
    assert [r.domain for r in records] == domains
    assert all(r.outcome is Outcome.RELEASED for r in records)
    assert len(server.connections) == 2
    assert server.connections[0].lines[-1] == "QUIT"
    assert server.connections[1].lines == ["EHLO client.test", "ETRN d8.example", "ETRN d9.example", "QUIT"]
    assert server.mismatches == []


async def test_unsupported_stops_further_etrns() -> None:
    """After a 502 to ETRN the remaining domains are recorded unsupported, not sent."""
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "502 5.7.0 Sorry, we do not allow this operation"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        records = await signal_target(make_target(server.port, domains=["a.example", "b.example"]))
    assert [r.outcome for r in records] == [Outcome.UNSUPPORTED, Outcome.UNSUPPORTED]
    assert server.connections[0].lines == ["EHLO client.test", "ETRN a.example", "QUIT"]


async def test_connect_failed_on_closed_port() -> None:
    """Nothing listening: connect_failed for every domain."""
    records = await signal_target(make_target(closed_port(), domains=["a.example", "b.example"]))
    assert [r.outcome for r in records] == [Outcome.CONNECT_FAILED, Outcome.CONNECT_FAILED]


async def test_failover_to_next_host() -> None:
    """connect_failed on the first host moves on to the next one.

    The fake listens on 127.0.0.1 only, so the same port on ::1 is closed.
    """
    steps = (Step("EHLO", EHLO_OK), Step("ETRN", "250 OK"))
    async with FakeSmtpServer(Script(steps=steps)) as server:
        target = make_target(server.port, host=None, hosts=["::1", "127.0.0.1"])
        records = await signal_target(target)
    assert [r.outcome for r in records] == [Outcome.RELEASED]
    assert records[0].host == "127.0.0.1"
    assert len(server.connections) == 1


@pytest.mark.parametrize(
    "reply",
    ["2500 what", "250ok", "250-first\n251 second", "abc OK", "250\tOK"],
    ids=["four-digits", "no-separator", "codes-differ", "not-digits", "tab-separator"],
)
async def test_malformed_reply_is_protocol_error(reply: str) -> None:
    """A reply line that is not code, then space, hyphen or line end, is never read as success."""
    script = Script(steps=(Step("EHLO", EHLO_OK), Step("ETRN", reply)))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port))
    assert [r.outcome for r in records] == [Outcome.PROTOCOL_ERROR]


@pytest.mark.parametrize("reply", ["250", "250 ", "250-a\n250"], ids=["bare-code", "code-space", "bare-last"])
async def test_bare_code_reply_accepted(reply: str) -> None:
    """A reply without text is still a complete reply."""
    script = Script(steps=(Step("EHLO", EHLO_OK), Step("ETRN", reply)))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port))
    assert [r.outcome for r in records] == [Outcome.RELEASED]
