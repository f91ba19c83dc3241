"""Relay each message to a local MTA over SMTP or LMTP, keeping the envelope.

Policy: ``MAIL`` and each ``RCPT`` are passed on as the provider sends them,
so the local server's verdict on each recipient reaches the provider at
``RCPT`` time and the provider bounces or retries exactly those recipients.
After DATA, SMTP gives one reply for all accepted recipients. LMTP gives one
per recipient: all 2xx gives 250 and all 5xx gives 554. A mix gives 451, so
the provider retries the whole message. That can deliver a duplicate to the
recipients that succeeded, but it never acknowledges an undelivered copy.
Any connection failure or timeout gives 451.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import structlog

from mailreleased.config.model import LmtpDelivery, SmtpDelivery
from mailreleased.odmr.sinks.base import ACCEPTED, DeliveryResult, Envelope, Sink
from mailreleased.odmr.sinks.client import RelayConnection, RelayError, RelayReply, clean_text

log = structlog.get_logger("mailreleased.odmr.relay")

UNAVAILABLE = DeliveryResult(451, "4.4.1 Local mail server unavailable; try again later")


def _mapped(reply: RelayReply, *, permanent: int, status: str) -> DeliveryResult:
    """Turn the local server's reply into ours: 2xx stays 250, 4xx becomes 451, 5xx ``permanent``."""
    text = clean_text(reply.text.split("\n", 1)[0])
    if 200 <= reply.code < 300:
        return DeliveryResult(250, f"2.{status} OK")
    if 400 <= reply.code < 500:
        return DeliveryResult(451, f"4.{status} Local mail server deferred: {reply.code} {text}")
    return DeliveryResult(permanent, f"5.{status} Local mail server rejected: {reply.code} {text}")


class RelaySink(Sink):
    """Pass each transaction on to a local SMTP or LMTP server over one reused connection."""

    def __init__(self, *, host: str | None, port: int | None, path: str | None, timeout: float,
                 hello: str, lmtp: bool) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._timeout = timeout
        self._hello = hello
        self._lmtp = lmtp
        self._connection: RelayConnection | None = None
        self._sender: str | None = None
        self._accepted: list[str] = []

    async def _connected(self) -> RelayConnection:
        if self._connection is None:
            self._connection = await RelayConnection.open(
                host=self._host, port=self._port, path=self._path,
                timeout=self._timeout, hello=self._hello, lmtp=self._lmtp,
            )
        return self._connection

    def _drop(self, exc: Exception) -> None:
        log.warning("relay_connection_failed", lmtp=self._lmtp, error=str(exc))
        if self._connection is not None:
            self._connection.abort()
        self._connection = None
        self._sender = None
        self._accepted = []

    async def check_sender(self, sender: str, *, smtputf8: bool = False) -> DeliveryResult:
        await self.reset()
        # A reused connection may have been closed by the server's idle
        # timeout, so one failure on it earns one retry on a new connection.
        attempts = 2 if self._connection is not None else 1
        for attempt in range(1, attempts + 1):
            try:
                reply = await self._mail(sender, smtputf8)
                break
            except RelayError as exc:
                self._drop(exc)
                if attempt == attempts:
                    return UNAVAILABLE
        if 200 <= reply.code < 300:
            self._sender = sender
        return _mapped(reply, permanent=550, status="1.0")

    async def _mail(self, sender: str, smtputf8: bool) -> RelayReply:
        connection = await self._connected()
        parameters = " SMTPUTF8" if smtputf8 and "SMTPUTF8" in connection.extensions else ""
        if "8BITMIME" in connection.extensions:
            parameters += " BODY=8BITMIME"
        return await connection.command(f"MAIL FROM:<{sender}>{parameters}")

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        if self._connection is None or self._sender is None:
            return UNAVAILABLE
        try:
            reply = await self._connection.command(f"RCPT TO:<{recipient}>")
        except RelayError as exc:
            self._drop(exc)
            return UNAVAILABLE
        if 200 <= reply.code < 300:
            self._accepted.append(recipient)
        return _mapped(reply, permanent=550, status="1.5")

    async def _begin(self, envelope: Envelope) -> DeliveryResult | None:
        """Open the transaction when ``deliver`` is used without the check methods."""
        result = await self.check_sender(envelope.sender, smtputf8=envelope.smtputf8)
        if not result.ok:
            return DeliveryResult(451 if result.code < 500 else 554, result.text)
        verdicts = [await self.check_recipient(r) for r in envelope.recipients]
        if all(v.ok for v in verdicts):
            return None
        await self.reset()
        if all(v.code >= 500 for v in verdicts):
            return DeliveryResult(554, verdicts[0].text)
        return DeliveryResult(451, "4.5.0 Some recipients were not accepted; try again later")

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        if self._sender != envelope.sender or set(self._accepted) != set(envelope.recipients):
            failure = await self._begin(envelope)
            if failure is not None:
                return failure
        assert self._connection is not None
        try:
            return await self._send_data(self._connection, body)
        except RelayError as exc:
            self._drop(exc)
            return UNAVAILABLE
        except BaseException:
            self._connection = None
            raise
        finally:
            self._sender = None
            self._accepted = []

    async def _send_data(self, connection: RelayConnection, body: AsyncIterator[bytes]) -> DeliveryResult:
        reply = await connection.command("DATA")
        if reply.code != 354:
            return _mapped(reply, permanent=554, status="3.0")
        await connection.send_body(body)
        if not self._lmtp:
            return _mapped(await connection.read_reply(), permanent=554, status="6.0")
        replies = [await connection.read_reply() for _ in self._accepted]
        if all(200 <= r.code < 300 for r in replies):
            return ACCEPTED
        if all(r.code >= 500 for r in replies):
            return _mapped(replies[0], permanent=554, status="6.0")
        log.warning("lmtp_mixed_replies", codes=[r.code for r in replies])
        return DeliveryResult(451, "4.6.0 Local delivery failed for some recipients; try again later")

    async def reset(self) -> None:
        if self._connection is None or self._sender is None:
            self._sender = None
            self._accepted = []
            return
        try:
            reply = await self._connection.command("RSET")
            if reply.code != 250:
                raise RelayError(f"RSET failed with reply {reply.code}")
        except RelayError as exc:
            self._drop(exc)
        self._sender = None
        self._accepted = []

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.quit()
            self._connection = None


def smtp_sink(config: SmtpDelivery) -> RelaySink:
    """Return a sink that relays over SMTP to ``config.host``:``config.port``."""
    hello = config.helo_name or socket.gethostname()
    return RelaySink(host=config.host, port=config.port, path=None, timeout=config.timeout, hello=hello, lmtp=False)


def lmtp_sink(config: LmtpDelivery, *, hello: str | None = None) -> RelaySink:
    """Return a sink that delivers over LMTP to a unix socket or ``host``:``port``."""
    return RelaySink(host=config.host, port=config.port, path=config.path, timeout=config.timeout,
                     hello=hello or socket.gethostname(), lmtp=True)
