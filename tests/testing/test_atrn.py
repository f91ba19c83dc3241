"""ATRN on the loopback provider: reply codes, turnaround delivery and re-queueing."""

from __future__ import annotations

import asyncio

from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider
from mailreleased.testing.pytest_plugin import PROVIDER_MESSAGES, PROVIDER_PASSWORD, PROVIDER_USER

from .customer import Script, run_customer, send
from .conftest import USERS, connect

DOMAIN = "example.test"
TEST_TIMEOUT = 30


async def test_atrn_before_auth_gets_530() -> None:
    """ATRN without AUTH is rejected with 530."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1)) as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        reply = await send(writer, reader, f"ATRN {DOMAIN}")
        writer.close()
    assert reply.code == 530
    assert len(provider.queue) == 1


async def test_atrn_foreign_domain_gets_450() -> None:
    """ATRN for a domain the user may not release is refused with 450."""
    async with Provider(
        domains=[DOMAIN, "other.test"],
        users=USERS,
        user_domains={"user": [DOMAIN]},
        queue=make_messages("other.test", 1),
    ) as provider:
        result = await run_customer(provider.port, atrn_argument=f"{DOMAIN},other.test")
    assert result.atrn_reply is not None
    assert result.atrn_reply.code == 450
    assert provider.atrn_requests == [("user", (DOMAIN, "other.test"))]


async def test_atrn_empty_queue_gets_453() -> None:
    """ATRN with nothing queued gets 453 You have no mail."""
    async with Provider(users=USERS) as provider:
        result = await run_customer(provider.port)
    assert result.atrn_reply is not None
    assert result.atrn_reply.code == 453
    assert result.atrn_reply.text == "You have no mail"


async def test_atrn_delivers_all_messages() -> None:
    """After 250 the provider delivers every queued message byte for byte."""
    messages = make_messages(DOMAIN, 5, 2000)
    async with Provider(users=USERS, queue=messages) as provider:
        result = await asyncio.wait_for(run_customer(provider.port), TEST_TIMEOUT)
    assert result.atrn_reply is not None
    assert result.atrn_reply.code == 250
    assert [m.data for m in result.messages] == [m.data for m in messages]
    assert [m.recipients for m in result.messages] == [list(m.recipients) for m in messages]
    assert provider.queue == []
    assert [m.id for m in provider.delivered] == [m.id for m in messages]
    assert result.commands[0].startswith("EHLO ")
    assert result.commands[-1] == "QUIT"


async def test_atrn_without_argument_releases_all_domains() -> None:
    """A bare ATRN releases every domain the user may use."""
    queue = make_messages(DOMAIN, 2) + make_messages("other.test", 2, start=10)
    async with Provider(domains=[DOMAIN, "other.test"], users=USERS, queue=queue) as provider:
        result = await run_customer(provider.port, atrn_argument="")
    assert result.message_count == 4
    assert provider.queue == []


async def test_atrn_releases_only_requested_domain() -> None:
    """Messages for other domains stay queued."""
    queue = make_messages(DOMAIN, 2) + make_messages("other.test", 2, start=10)
    async with Provider(domains=[DOMAIN, "other.test"], users=USERS, queue=queue) as provider:
        result = await run_customer(provider.port, atrn_argument=DOMAIN)
    assert result.message_count == 2
    assert {m.id for m in provider.queue} == {"msg-000010", "msg-000011"}


async def test_multiline_greeting_and_helo_fallback() -> None:
    """A multi-line customer greeting and a 5xx to EHLO still lead to delivery via HELO."""
    script = Script(greeting=b"220-customer.test\r\n220 ready\r\n", ehlo_code=502)
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2)) as provider:
        result = await run_customer(provider.port, script=script)
    assert result.commands[:2] == ["EHLO provider.test", "HELO provider.test"]
    assert result.message_count == 2
    assert provider.queue == []


async def test_451_keeps_message_queued() -> None:
    """A 451 after DATA keeps that message; the others are delivered."""
    messages = make_messages(DOMAIN, 3)
    script = Script(data_replies={1: "451 4.3.0 try later"})
    async with Provider(users=USERS, queue=messages) as provider:
        result = await run_customer(provider.port, script=script)
    assert result.message_count == 3
    assert [m.id for m in provider.queue] == ["msg-000001"]
    assert [m.id for m in provider.delivered] == ["msg-000000", "msg-000002"]
    assert provider.rejections == []


async def test_554_keeps_message_and_records_rejection() -> None:
    """A 5xx after DATA keeps the message queued and records the rejection."""
    script = Script(data_replies={0: "554 5.6.0 no thanks"})
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2)) as provider:
        await run_customer(provider.port, script=script)
    assert [m.id for m in provider.queue] == ["msg-000000"]
    assert [(r.message_id, r.stage, r.reply.code) for r in provider.rejections] == [
        ("msg-000000", "end of data", 554)
    ]


async def test_customer_drop_requeues_unacknowledged() -> None:
    """When the customer drops the line before its 250, that message and later ones stay queued."""
    script = Script(drop_after=2)
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 4), reply_timeout=TEST_TIMEOUT) as provider:
        await run_customer(provider.port, script=script)
        await provider.wait_idle(TEST_TIMEOUT)
    assert [m.id for m in provider.delivered] == ["msg-000000"]
    assert [m.id for m in provider.queue] == ["msg-000001", "msg-000002", "msg-000003"]


async def test_max_messages_per_session() -> None:
    """The per-session cap leaves the rest for the next ATRN."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 5), max_messages_per_session=2) as provider:
        first = await run_customer(provider.port)
        second = await run_customer(provider.port)
    assert first.message_count == 2
    assert second.message_count == 2
    assert len(provider.queue) == 1


async def test_large_message_is_byte_identical() -> None:
    """A 1 MB message with dot lines survives stuffing and unstuffing."""
    messages = make_messages(DOMAIN, 2, 1_000_000)
    async with Provider(users=USERS, queue=messages) as provider:
        result = await asyncio.wait_for(run_customer(provider.port), TEST_TIMEOUT)
    assert [m.data for m in result.messages] == [m.data for m in messages]


async def test_pipelined_delivery() -> None:
    """With PIPELINING offered, MAIL, RCPT and DATA go out in one write and all messages arrive."""
    messages = make_messages(DOMAIN, 4, 1500)
    async with Provider(users=USERS, queue=messages) as provider:
        result = await run_customer(provider.port, script=Script(pipelining=True))
    assert [m.data for m in result.messages] == [m.data for m in messages]
    assert provider.queue == []
    sent = [entry.line for entry in provider.transcript if entry.direction == "sent"]
    mail_index = next(i for i, line in enumerate(sent) if line.startswith("MAIL FROM:"))
    assert sent[mail_index + 1].startswith("RCPT TO:")
    assert sent[mail_index + 2] == "DATA"


async def test_pipelined_rejected_recipient() -> None:
    """A pipelined DATA that got 354 after a rejected RCPT is ended with a lone dot; mail stays queued."""
    script = Script(pipelining=True, rcpt_reply="550 5.1.1 no such user")
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2)) as provider:
        result = await run_customer(provider.port, script=script)
    assert result.message_count == 0
    assert len(provider.queue) == 2
    assert [(r.stage, r.reply.code) for r in provider.rejections] == [("RCPT", 550), ("RCPT", 550)]
    assert result.commands[-1] == "QUIT"


async def test_unpipelined_rejected_recipient_skips_data() -> None:
    """Without PIPELINING a rejected RCPT leads to RSET, never DATA."""
    script = Script(rcpt_reply="550 5.1.1 no such user")
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 1)) as provider:
        result = await run_customer(provider.port, script=script)
    assert "DATA" not in result.commands
    assert "RSET" in result.commands
    assert len(provider.queue) == 1


async def test_fixture_provider_delivers(loopback_provider: Provider) -> None:
    """The shared loopback_provider fixture serves its queue to a customer."""
    result = await run_customer(loopback_provider.port, user=PROVIDER_USER, password=PROVIDER_PASSWORD)
    assert result.message_count == PROVIDER_MESSAGES
    assert loopback_provider.queue == []
