"""Tests for the reversed-state SMTP server, fed scripted provider transcripts."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import pytest

from mailreleased.config.model import ReceiverLimits
from mailreleased.odmr.sinks.base import DeliveryResult, Envelope

from .helpers import MemorySink, body_without_trace, message, run_script

EHLO = b"EHLO provider.example.net\r\n"
QUIT = b"QUIT\r\n"


async def test_greeting_is_single_line_220() -> None:
    """The receiver speaks first with one 220 line, before the provider sends anything."""
    transcript = await run_script([QUIT])
    assert transcript.lines[0] == "220 customer.example.org ESMTP mailreleased ODMR ready"
    assert transcript.codes == [220, 221]
    assert transcript.result.clean


async def test_ehlo_advertises_extensions_without_starttls() -> None:
    """EHLO lists PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and SIZE, never STARTTLS."""
    limits = ReceiverLimits(max_message_size=12345)
    transcript = await run_script([EHLO, QUIT], limits=limits)
    ehlo = [line[4:] for line in transcript.lines if line.startswith("250")]
    assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 12345"} <= set(ehlo)
    assert not any("STARTTLS" in line for line in transcript.lines)


async def test_pipelined_transaction_in_one_write() -> None:
    """MAIL, RCPT, DATA and the body in one write get their replies in order."""
    sink = MemorySink()
    script = EHLO + message(b"Subject: hi\r\n\r\nbody\r\n.\r\n") + QUIT
    transcript = await run_script([script], sink)
    assert transcript.codes == [220, 250, 250, 250, 354, 250, 221]
    assert transcript.result.messages == 1
    assert body_without_trace(sink.messages[0].data) == b"Subject: hi\r\n\r\nbody\r\n"


async def test_dot_stuffing_and_bare_lf() -> None:
    """Leading dots are removed and bare LF line endings are kept as sent."""
    sink = MemorySink()
    await run_script([EHLO, message(b"..one\n.two\nthree\n.\n"), QUIT], sink)
    assert body_without_trace(sink.messages[0].data) == b".one\ntwo\nthree\n"


async def test_terminator_split_across_writes() -> None:
    """The end-of-data line split over several writes is found."""
    sink = MemorySink()
    chunks = [EHLO, message(b"abc\r"), b"\n", b".", b"\r", b"\nQUIT\r\n"]
    transcript = await run_script(chunks, sink)
    assert transcript.codes == [220, 250, 250, 250, 354, 250, 221]
    assert body_without_trace(sink.messages[0].data) == b"abc\r\n"


async def test_null_sender_accepted() -> None:
    """MAIL FROM:<> (a bounce) is accepted and kept as the empty sender."""
    sink = MemorySink()
    await run_script([EHLO, message(b"x\r\n.\r\n", sender=""), QUIT], sink)
    assert sink.messages[0].envelope.sender == ""


async def test_non_fqdn_helo_accepted() -> None:
    """indimail's ``HELO AutoTURN`` is accepted; without EHLO the trace header names SMTP."""
    sink = MemorySink()
    transcript = await run_script([b"HELO AutoTURN\r\n", message(b"x\r\n.\r\n"), QUIT], sink)
    assert transcript.codes == [220, 250, 250, 250, 354, 250, 221]
    assert sink.messages[0].data.startswith(b"Received: from AutoTURN (unknown)\r\n\tby customer.example.org with SMTP")


async def test_mail_parameters() -> None:
    """SIZE over the limit gives 552; BODY=8BITMIME and SMTPUTF8 are tolerated; unknown gives 555."""
    limits = ReceiverLimits(max_message_size=1000)
    script = [
        EHLO,
        b"MAIL FROM:<a@example.net> SIZE=1001\r\n",
        b"MAIL FROM:<a@example.net> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\nRSET\r\n",
        b"MAIL FROM:<a@example.net> FOO=BAR\r\n",
        QUIT,
    ]
    transcript = await run_script(script, limits=limits)
    assert transcript.codes == [220, 250, 552, 250, 250, 555, 221]


async def test_recipient_domains() -> None:
    """Recipients in the target's domains or their subdomains pass, in any case; others get 550 5.7.1."""
    script = [EHLO, b"MAIL FROM:<a@example.net>\r\n", b"RCPT TO:<x@EXAMPLE.org>\r\n",
              b"RCPT TO:<y@mail.example.org>\r\n", b"RCPT TO:<z@badexample.org>\r\n",
              b"RCPT TO:<w@example.com>\r\n", QUIT]
    transcript = await run_script(script)
    assert transcript.codes == [220, 250, 250, 250, 250, 550, 550, 221]
    assert "550 5.7.1" in transcript.lines[-2]


async def test_empty_domains_accept_any_recipient() -> None:
    """Without configured domains every recipient is accepted."""
    transcript = await run_script([EHLO, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@anything.test>\r\n", QUIT], domains=())
    assert transcript.codes[-2] == 250


async def test_too_many_recipients() -> None:
    """The recipient after max_recipients gets 452 and the message goes to the others."""
    sink = MemorySink()
    limits = ReceiverLimits(max_recipients=2)
    rcpts = ("a@example.org", "b@example.org", "c@example.org")
    transcript = await run_script([EHLO, message(b"x\r\n.\r\n", recipients=rcpts), QUIT], sink, limits=limits)
    assert transcript.codes == [220, 250, 250, 250, 250, 452, 354, 250, 221]
    assert sink.messages[0].envelope.recipients == rcpts[:2]


async def test_data_without_recipients() -> None:
    """DATA with no accepted recipient gets 554, and without MAIL 503; no body is expected."""
    script = [EHLO, b"DATA\r\n", b"MAIL FROM:<a@b.net>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n", b"NOOP\r\n", QUIT]
    transcript = await run_script(script)
    assert transcript.codes == [220, 250, 503, 250, 550, 554, 250, 221]


async def test_oversized_message_rejected_after_data() -> None:
    """A message over max_message_size is read to its end, discarded and rejected with 552."""
    sink = MemorySink()
    limits = ReceiverLimits(max_message_size=1024)
    big = b"y" * 5000 + b"\r\n.\r\n"
    transcript = await run_script([EHLO, message(big), message(b"small\r\n.\r\n"), QUIT], sink, limits=limits)
    assert transcript.codes == [220, 250, 250, 250, 354, 552, 250, 250, 354, 250, 221]
    assert len(sink.messages) == 1
    assert sink.aborted == 1


async def test_sink_failure_is_passed_on() -> None:
    """A sink's temporary failure becomes the reply after DATA and is not counted."""
    sink = MemorySink(DeliveryResult(451, "4.3.0 try later"))
    transcript = await run_script([EHLO, message(b"x\r\n.\r\n"), QUIT], sink)
    assert transcript.lines[-2] == "451 4.3.0 try later"
    assert transcript.result.messages == 0


async def test_misc_commands() -> None:
    """RSET, NOOP, VRFY, HELP, unknown verbs and sequence errors get their replies."""
    script = [EHLO, b"NOOP\r\nVRFY bob\r\nHELP\r\nXYZZY\r\nSTARTTLS\r\nRCPT TO:<a@example.org>\r\nRSET\r\n", QUIT]
    transcript = await run_script(script)
    assert transcript.codes == [220, 250, 250, 252, 502, 500, 502, 503, 250, 221]


async def test_mail_before_ehlo() -> None:
    """MAIL before EHLO or HELO gets 503."""
    transcript = await run_script([b"MAIL FROM:<a@b.net>\r\n", QUIT])
    assert transcript.codes == [220, 503, 221]


async def test_quit_before_greeting_is_read() -> None:
    """A raw QUIT sent at once, as Exim does when nothing is queued, ends cleanly."""
    transcript = await run_script([QUIT])
    assert transcript.result.clean
    assert transcript.result.messages == 0


async def test_provider_closes_without_quit() -> None:
    """EOF without QUIT is a broken session."""
    transcript = await run_script([EHLO])
    assert not transcript.result.clean
    assert "without QUIT" in (transcript.result.detail or "")


async def test_drop_mid_data_discards_message() -> None:
    """A link that breaks inside DATA loses only the partial message; earlier ones count."""
    sink = MemorySink()
    transcript = await run_script([EHLO, message(b"one\r\n.\r\n"), message(b"two, half of it")], sink)
    assert transcript.result.messages == 1
    assert not transcript.result.clean
    assert len(sink.messages) == 1
    assert sink.aborted == 1
    assert "partial message was discarded" in (transcript.result.detail or "")


async def test_line_too_long() -> None:
    """An over-long command line gets 500 5.5.6 and the session continues."""
    limits = ReceiverLimits(max_line_length=512)
    transcript = await run_script([EHLO, b"NOOP " + b"x" * 2000 + b"\r\n", b"NOOP\r\n", QUIT], limits=limits)
    assert transcript.codes == [220, 250, 500, 250, 221]
    assert [line for line in transcript.lines if line.startswith("500")] == ["500 5.5.6 Line too long"]


async def test_too_many_errors_closes() -> None:
    """At max_errors the receiver replies 421 4.7.0 and closes."""
    limits = ReceiverLimits(max_errors=3)
    transcript = await run_script([b"BAD\r\nBAD\r\nBAD\r\nBAD\r\n"], limits=limits, close=False)
    assert transcript.codes == [220, 500, 500, 421]
    assert transcript.lines[-1].startswith("421 4.7.0")
    assert not transcript.result.clean


async def test_too_many_commands_closes() -> None:
    """Past max_commands the receiver replies 421 and closes."""
    limits = ReceiverLimits(max_commands=10)
    transcript = await run_script([b"NOOP\r\n" * 20], limits=limits, close=False)
    assert transcript.codes == [220] + [250] * 10 + [421]


async def test_command_timeout_closes() -> None:
    """A provider that goes silent gets 421 after command_timeout."""
    limits = ReceiverLimits(command_timeout=0.05)
    transcript = await run_script([EHLO], limits=limits, close=False)
    assert transcript.codes == [220, 250, 421]
    assert "timed out" in (transcript.result.detail or "")


async def test_junk_lines_bounded() -> None:
    """1,000 junk lines cause no crash, valid replies only, and bounded memory."""
    junk = [bytes([(i * 37 + j) % 256 for j in range(i % 300)]).replace(b"\n", b"") + b"\r\n" for i in range(1000)]
    limits = ReceiverLimits(max_errors=5000, max_line_length=512)
    tracemalloc.start()
    try:
        transcript = await run_script([b"".join(junk), QUIT], limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert transcript.result.clean
    assert len(transcript.codes) == 1002
    assert all(200 <= code < 600 for code in transcript.codes)
    assert peak < 8 * 1024 * 1024


async def test_ehlo_with_bare_cr_rejected() -> None:
    """A bare CR inside EHLO makes the command invalid, so the name is never used."""
    transcript = await run_script([b"EHLO evil\rBcc: victim@example.org\r\n", QUIT])
    assert transcript.codes == [220, 500, 221]


async def test_received_header_injection_via_ehlo() -> None:
    """Tabs, comment characters and non-ASCII in the EHLO name are replaced in the trace header."""
    sink = MemorySink()
    script = [b"EHLO evil\tBcc:(x);\xc3\xa9\r\n", message(b"x\r\n.\r\n"), QUIT]
    await run_script(script, sink)
    data = sink.messages[0].data
    header = data[: data.index(b"x\r\n")]
    assert header.count(b"\r\n") == 3
    assert header.startswith(b"Received: from evil_Bcc:_x___ (unknown)\r\n\tby ")


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
async def test_hello_requires_name(verb: bytes) -> None:
    """EHLO or HELO without a name gets 501."""
    transcript = await run_script([verb + b"\r\n", QUIT])
    assert transcript.codes == [220, 501, 221]


async def test_session_timeout_closes() -> None:
    """The whole-session cap ends a session that is still open, with 421."""
    limits = ReceiverLimits(session_timeout=0.05)
    transcript = await run_script([], limits=limits, close=False)
    assert transcript.codes == [220, 421]
    assert not transcript.result.clean
    assert "session exceeded" in (transcript.result.detail or "")


class CrashingSink(MemorySink):
    """A sink with a bug: it raises an unexpected exception."""

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        raise RuntimeError("sink bug")


async def test_sink_exception_gives_451() -> None:
    """An unexpected error in a sink gives 451 and the session goes on."""
    transcript = await run_script([EHLO, message(b"x\r\n.\r\n"), b"NOOP\r\n", QUIT], CrashingSink())
    assert transcript.codes == [220, 250, 250, 250, 354, 451, 250, 221]
    assert transcript.result.messages == 0


async def test_trace_header_for_clause() -> None:
    """The trace header names a single recipient but never lists several (Bcc stays private)."""
    sink = MemorySink()
    rcpts = ("a@example.org", "b@example.org")
    await run_script([EHLO, message(b"x\r\n.\r\n"), message(b"y\r\n.\r\n", recipients=rcpts), QUIT], sink)
    single = sink.messages[0].data
    several = sink.messages[1].data
    assert b"\tfor <bob@example.org>; " in single
    assert b"for <" not in several
    assert b"a@example.org" not in several


async def test_shutdown_rejects_next_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once shutdown is requested, the next MAIL gets 421 and the session stops."""
    monkeypatch.setattr("mailreleased.odmr.receiver.shutdown_requested", lambda: True)
    sink = MemorySink()
    transcript = await run_script([EHLO, message(b"x\r\n.\r\n")], sink, close=False)
    assert transcript.codes == [220, 250, 421]
    assert transcript.lines[-1].startswith("421 4.3.2")
    assert transcript.result.stopped
    assert sink.messages == []


class CrashingCheckSink(MemorySink):
    """A sink whose RCPT check has a bug."""

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        raise TimeoutError("sink bug")


async def test_sink_check_exception_gives_451() -> None:
    """An unexpected error in a sink's RCPT check gives 451 and the session goes on."""
    transcript = await run_script([EHLO, b"MAIL FROM:<a@b.net>\r\nRCPT TO:<x@example.org>\r\n", QUIT], CrashingCheckSink())
    assert transcript.codes == [220, 250, 250, 451, 221]
    assert transcript.result.clean


async def test_rejections_are_counted_and_logged() -> None:
    """Mail we refuse for good (foreign domain, over the size limit) is counted and logged as a warning."""
    from structlog.testing import capture_logs

    limits = ReceiverLimits(max_message_size=1000)
    script = [
        b"EHLO provider.test\r\n",
        b"MAIL FROM:<a@example.net> SIZE=5000\r\n",
        b"MAIL FROM:<a@example.net>\r\nRCPT TO:<eve@elsewhere.test>\r\nRSET\r\n",
        b"QUIT\r\n",
    ]
    with capture_logs() as events:
        transcript = await run_script(script, MemorySink(), limits=limits)
    assert transcript.result.rejected == 2
    rejected = [event for event in events if event["event"] == "atrn_rejected"]
    assert [event["reason"] for event in rejected] == ["message_too_large", "recipient_domain_not_served"]
    assert {event["log_level"] for event in rejected} == {"warning"}
