"""STARTTLS on the provider and the faults that cut a delivery short."""

from __future__ import annotations

import asyncio
import base64

from mailreleased.testing.fixtures import LoopbackCertificate
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

from .conftest import TIMEOUT, USERS, connect
from .customer import Script, cram_md5_response, run_customer, send

DOMAIN = "example.test"


async def test_starttls_then_plain_auth(loopback_certificate: LoopbackCertificate) -> None:
    """After STARTTLS, EHLO drops STARTTLS and PLAIN is accepted despite the TLS switch."""
    async with Provider(
        users=USERS, tls_cert=loopback_certificate.cert_path, tls_key=loopback_certificate.key_path,
        require_tls_for_plaintext_auth=True,
    ) as provider:
        reader, writer = await connect(provider.port)
        before = await send(writer, reader, "EHLO customer.test")
        ready = await send(writer, reader, "STARTTLS")
        await writer.start_tls(loopback_certificate.client_context(), server_hostname="localhost")
        after = await send(writer, reader, "EHLO customer.test")
        auth = await send(writer, reader, "AUTH PLAIN " + base64.b64encode(b"\0user\0password").decode())
        writer.close()
    assert "STARTTLS" in before.lines
    assert ready.code == 220
    assert "STARTTLS" not in after.lines
    assert auth.code == 235


async def test_provider_drop_after_messages() -> None:
    """drop_after_messages cuts the next message's DATA; it and later ones stay queued."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 4)) as provider:
        provider.faults.drop_after_messages = 2
        provider.faults.drop_after_bytes = 100
        result = await asyncio.wait_for(run_customer(provider.port, script=Script()), TIMEOUT)
        await provider.wait_idle(TIMEOUT)
    assert result.message_count == 2
    assert [m.id for m in provider.delivered] == ["msg-000000", "msg-000001"]
    assert [m.id for m in provider.queue] == ["msg-000002", "msg-000003"]


async def test_drop_then_retry_delivers_rest() -> None:
    """After a dropped session a second ATRN delivers what is left."""
    messages = make_messages(DOMAIN, 3)
    async with Provider(users=USERS, queue=messages) as provider:
        provider.faults.drop_after_bytes = 10
        await asyncio.wait_for(run_customer(provider.port), TIMEOUT)
        await provider.wait_idle(TIMEOUT)
        provider.faults.drop_after_bytes = None
        second = await asyncio.wait_for(run_customer(provider.port), TIMEOUT)
    assert [m.data for m in second.messages] == [m.data for m in messages]
    assert provider.queue == []


async def test_customer_timeout_keeps_queue() -> None:
    """A customer that never greets after the 250 times out the provider; nothing is lost."""
    async with Provider(users=USERS, queue=make_messages(DOMAIN, 2), reply_timeout=0.2) as provider:
        reader, writer = await connect(provider.port)
        await send(writer, reader, "EHLO customer.test")
        challenge = await send(writer, reader, "AUTH CRAM-MD5")
        await send(writer, reader, cram_md5_response("user", "password", challenge.lines[0]))
        atrn = await send(writer, reader, f"ATRN {DOMAIN}")
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    assert atrn.code == 250
    assert rest == b""
    assert len(provider.queue) == 2
