"""The provider's SMTP client after the ATRN turnaround: deliver the queue to the customer.

A message leaves the queue only when the customer replies 250 to its data.
Every other ending (4xx, 5xx, timeout, dropped connection) keeps it queued
for the next ATRN, as a real provider's queue does. A 5xx reply is recorded
in ``ProviderState.rejections`` where a real MTA would bounce the message.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import ssl
from collections.abc import Sequence

from mailreleased.testing.channel import Channel
from mailreleased.testing.messages import QueuedMessage, dot_stuff_chunks
from mailreleased.testing.state import Rejection
from mailreleased.testing.wire import ConnectionLost, Reply

logger = logging.getLogger("mailreleased.testing.provider")


class Transfer(enum.Enum):
    """Ending of one message transaction."""

    ACCEPTED = "accepted"
    KEPT = "kept"
    CLOSING = "closing"


async def deliver_queue(channel: Channel, domains: Sequence[str]) -> None:
    """Act as SMTP client on the turned-around connection and deliver mail for ``domains``.

    Errors on the connection end the session; undelivered messages stay queued.
    """
    state = channel.state
    state.busy_domains.update(domains)
    try:
        await _deliver(channel, domains)
    except (ConnectionLost, ConnectionError, TimeoutError, ssl.SSLError) as exc:
        logger.info("session %d: delivery to the customer ended early: %s", channel.session, exc or type(exc).__name__)
        channel.abort()
    finally:
        state.busy_domains.difference_update(domains)


@dataclasses.dataclass(frozen=True)
class CustomerExtensions:
    """The EHLO keywords of the customer that change how messages are sent."""

    size: bool = False
    pipelining: bool = False

    @classmethod
    def from_reply(cls, reply: Reply) -> CustomerExtensions:
        """Read the keywords from an EHLO reply; a HELO reply has none."""
        keywords = {line.split(" ", 1)[0].upper() for line in reply.lines[1:] if line}
        return cls(size="SIZE" in keywords, pipelining="PIPELINING" in keywords)


async def _deliver(channel: Channel, domains: Sequence[str]) -> None:
    state = channel.state
    settings = state.settings
    greeting = await channel.read_reply()
    if greeting.code != 220:
        await _quit(channel)
        return
    hello = await channel.command(f"EHLO {settings.hostname}")
    extensions = CustomerExtensions.from_reply(hello)
    if 500 <= hello.code < 600:
        hello = await channel.command(f"HELO {settings.hostname}")
        extensions = CustomerExtensions()
    if hello.code != 250:
        await _quit(channel)
        return
    if not settings.use_pipelining:
        extensions = dataclasses.replace(extensions, pipelining=False)
    messages = state.store.for_domains(domains)
    if settings.max_messages_per_session is not None:
        messages = messages[: settings.max_messages_per_session]
    acknowledged = 0
    for message in messages:
        if state.faults.drops_message(acknowledged):
            await _send_and_drop(channel, message)
            return
        result = await _transfer(channel, message, extensions)
        if result is Transfer.CLOSING:
            return
        if result is Transfer.ACCEPTED:
            acknowledged += 1
    await _quit(channel)


async def _transfer(channel: Channel, message: QueuedMessage, extensions: CustomerExtensions) -> Transfer:
    size_parameter = f" SIZE={message.size}" if extensions.size else ""
    envelope = [f"MAIL FROM:<{message.sender}>{size_parameter}"]
    envelope += [f"RCPT TO:<{recipient}>" for recipient in message.recipients]
    if extensions.pipelining:
        replies = await channel.pipeline([*envelope, "DATA"])
        mail, recipient_replies, data = replies[0], replies[1:-1], replies[-1]
    else:
        mail = await channel.command(envelope[0])
        if mail.code != 250:
            return await _give_up(channel, message, "MAIL", mail)
        recipient_replies = [await channel.command(line) for line in envelope[1:]]
        data = None
    if any(reply.code == 421 for reply in (mail, *recipient_replies)):
        return Transfer.CLOSING
    for reply in recipient_replies:
        if reply.code >= 500:
            _reject(channel, message, "RCPT", reply)
    accepted = mail.code == 250 and any(reply.code in (250, 251) for reply in recipient_replies)
    if data is None and accepted:
        data = await channel.command("DATA")
    if not accepted or data is None or data.code != 354:
        return await _abandon(channel, message, mail, accepted, data)
    return await _send_data(channel, message)


async def _abandon(
    channel: Channel, message: QueuedMessage, mail: Reply, accepted: bool, data: Reply | None
) -> Transfer:
    """End a transaction that cannot reach the message bytes; the message stays queued."""
    if data is not None and data.code == 354:
        # RFC 2920: a pipelined DATA that got 354 without valid recipients is ended with a lone ".".
        await channel.send_raw(b".\r\n")
        await channel.read_reply()
    if mail.code != 250:
        return await _give_up(channel, message, "MAIL", mail)
    if not accepted:
        return await _give_up(channel, message, "RCPT", None)
    return await _give_up(channel, message, "DATA", data)


async def _send_data(channel: Channel, message: QueuedMessage) -> Transfer:
    """Send the dot-stuffed message after 354; keep it queued unless the reply is 250."""
    for chunk in dot_stuff_chunks(message.chunks()):
        await channel.write_data(chunk)
    await channel.writer.drain()
    state = channel.state
    state.record(channel.session, "sent", f"<{message.size} bytes of message {message.id}>")
    final = await channel.read_reply()
    if final.code == 250:
        # NOTE: recipients rejected at RCPT are only recorded in rejections. The
        # message leaves the queue, where a real MTA would keep it for them.
        state.store.remove(message.id)
        state.delivered.append(message)
        return Transfer.ACCEPTED
    if final.code == 421:
        return Transfer.CLOSING
    if final.code >= 500:
        _reject(channel, message, "end of data", final)
    return Transfer.KEPT


async def _give_up(channel: Channel, message: QueuedMessage, stage: str, reply: Reply | None) -> Transfer:
    """End a failed transaction with RSET and keep the message queued."""
    if reply is not None and reply.code == 421:
        return Transfer.CLOSING
    if reply is not None and reply.code >= 500:
        _reject(channel, message, stage, reply)
    reset = await channel.command("RSET")
    return Transfer.CLOSING if reset.code == 421 else Transfer.KEPT


def _reject(channel: Channel, message: QueuedMessage, stage: str, reply: Reply) -> None:
    channel.state.rejections.append(Rejection(message.id, stage, reply))


async def _send_and_drop(channel: Channel, message: QueuedMessage) -> None:
    """Start the message's DATA, send part of it and drop the connection (a fault on request)."""
    await channel.command(f"MAIL FROM:<{message.sender}>")
    for recipient in message.recipients:
        await channel.command(f"RCPT TO:<{recipient}>")
    data = await channel.command("DATA")
    if data.code == 354:
        remaining = channel.state.faults.drop_point(message.size)
        for chunk in dot_stuff_chunks(message.chunks()):
            piece = chunk[:remaining]
            await channel.write_data(piece)
            remaining -= len(piece)
            if remaining <= 0:
                break
        await channel.writer.drain()
    channel.state.record(channel.session, "sent", f"<connection dropped during message {message.id}>")
    channel.abort()


async def _quit(channel: Channel) -> None:
    """Send QUIT; any reply, or the connection closing, ends the session."""
    try:
        await channel.command("QUIT")
    except (ConnectionLost, ConnectionError, TimeoutError):
        pass
    await channel.close()
