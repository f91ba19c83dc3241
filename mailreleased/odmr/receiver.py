"""The SMTP server that takes the provider's mail after the ATRN reversal.

Once the provider has replied 250 to ATRN, it becomes the SMTP client on
the same connection (and TLS session) and this module speaks the server
side: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY and QUIT.
Command parsing lives in :mod:`~mailreleased.odmr.dialogue`, byte handling
in :mod:`~mailreleased.odmr.stream`, and delivery in the sinks. Every wait
has a timeout and every count a limit, so a hostile provider can neither
crash nor hang the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Awaitable, Callable

import structlog

from mailreleased.config.model import ReceiverLimits
from mailreleased.odmr import dialogue
from mailreleased.odmr.dialogue import CommandSyntaxError, State
from mailreleased.odmr.sinks.base import BodyIncomplete, DeliveryResult, Envelope, MessageTooLarge, Sink
from mailreleased.odmr.stream import BodyReader, BufferedInput, ConnectionClosed, LineTooLong, ReadTimeout
from mailreleased.odmr.trace import new_message_id, received_header, sanitize
from mailreleased.shutdown import shutdown_requested

log = structlog.get_logger("mailreleased.odmr.receiver")

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CLOSE_TIMEOUT = 5.0
# Replies to pipelined commands queued before they are sent in one write.
_PIPELINE_BUFFER = 64 * 1024

MessageCallback = Callable[[int], None]


@dataclasses.dataclass(slots=True)
class SessionResult:
    """Counts and end state of one reversed session.

    ``clean`` is true when the provider sent QUIT. ``stopped`` is true when
    the receiver closed the session at a MAIL command because the daemon is
    stopping. Otherwise the session broke and ``detail`` gives the reason.
    ``bytes`` counts message content without the added trace header.
    ``deferred`` counts the sink's 4xx verdicts (at MAIL, RCPT or the end of
    DATA), so a run can tell that the provider still has mail the sink did
    not take. ``rejected`` counts 5xx replies, from the sink or from the
    receiver's own domain and size checks.
    """

    messages: int = 0
    bytes: int = 0
    deferred: int = 0
    rejected: int = 0
    clean: bool = False
    stopped: bool = False
    detail: str | None = None
    client_name: str | None = None


@dataclasses.dataclass(slots=True)
class _Transaction:
    sender: str
    smtputf8: bool = False
    body_8bit: bool = False
    recipients: list[str] = dataclasses.field(default_factory=list)


class _SessionClosing(Exception):
    """The session must end now; ``reason`` goes to the result."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def serve_reversed(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    sink: Sink,
    server_name: str,
    domains: tuple[str, ...],
    limits: ReceiverLimits,
    on_message: MessageCallback | None = None,
) -> SessionResult:
    """Act as the SMTP server on a reversed connection until QUIT, EOF or a limit.

    The caller owns ``writer`` and closes it afterwards.
    """
    session = ReversedSession(reader, writer, sink=sink, server_name=server_name, domains=domains, limits=limits)
    session.on_message = on_message
    return await session.run()


class ReversedSession:
    """One reversed ATRN session: the command loop and its handlers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sink: Sink,
                 server_name: str, domains: tuple[str, ...], limits: ReceiverLimits) -> None:
        self._input = BufferedInput(reader)
        self._writer = writer
        self._sink = sink
        self._server_name = sanitize(server_name)
        self._domains = domains
        self._limits = limits
        self._state = State.GREETED
        self._esmtp = False
        self._transaction: _Transaction | None = None
        self._commands = 0
        self._errors = 0
        self._write_failed = False
        self._output: list[bytes] = []
        self._output_size = 0
        self.on_message: MessageCallback | None = None
        self.result = SessionResult()
        peer = writer.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self._tls = writer.get_extra_info("ssl_object") is not None
        self._handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "EHLO": self._ehlo, "HELO": self._helo, "MAIL": self._mail, "RCPT": self._rcpt,
            "DATA": self._data, "RSET": self._rset, "NOOP": self._noop, "VRFY": self._vrfy,
            "QUIT": self._quit,
        }

    async def run(self) -> SessionResult:
        """Send the greeting, then serve commands until the session ends."""
        try:
            async with asyncio.timeout(self._limits.session_timeout):
                await self._reply(f"220 {self._server_name} ESMTP mailreleased ODMR ready")
                await self._serve()
        except TimeoutError:
            self.result.detail = f"session exceeded {self._limits.session_timeout:g} s"
            await self._final_reply("421 4.4.2 Session time limit reached, closing connection")
        except _SessionClosing as exc:
            self.result.detail = exc.reason
        finally:
            if self._transaction is not None:
                await self._reset_sink()
        return self.result

    async def _serve(self) -> None:
        while self._state is not State.CLOSED:
            try:
                raw = await self._input.read_line(self._limits.max_line_length, self._limits.command_timeout)
            except LineTooLong:
                await self._error("500 5.5.6 Line too long")
                continue
            except ReadTimeout:
                await self._final_reply("421 4.4.2 Timeout waiting for a command, closing connection")
                raise _SessionClosing("timed out waiting for a command") from None
            except ConnectionClosed as exc:
                raise _SessionClosing(f"connection closed without QUIT: {exc}") from None
            await self._dispatch(raw)

    async def _dispatch(self, raw: bytes) -> None:
        self._commands += 1
        if self._commands > self._limits.max_commands:
            await self._final_reply("421 4.7.0 Too many commands, closing connection")
            raise _SessionClosing(f"more than {self._limits.max_commands} commands")
        try:
            line = raw.rstrip(b"\r\n").decode("utf-8")
        except UnicodeDecodeError:
            await self._error("500 5.5.2 Command is not valid UTF-8")
            return
        if _CONTROL.search(line):
            await self._error("500 5.5.2 Command contains control characters")
            return
        command = dialogue.parse_command(line)
        handler = self._handlers.get(command.verb)
        if handler is not None:
            try:
                await handler(command.argument)
            except CommandSyntaxError as exc:
                await self._error(exc.reply)
        elif command.verb in dialogue.UNIMPLEMENTED_VERBS:
            await self._error("502 5.5.1 Command not implemented")
        else:
            await self._error("500 5.5.2 Command unrecognized")

    # Replies

    async def _reply(self, text: str) -> None:
        """Queue a reply; send the queue unless more pipelined commands are already buffered.

        RFC 2920 lets a server send the replies to a pipelined group in one
        write. The queue is also sent once it reaches 64 KiB.
        """
        self._output.append(text.encode("ascii") + b"\r\n")
        self._output_size += len(self._output[-1])
        if self._input.has_line() and self._output_size < _PIPELINE_BUFFER:
            return
        await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._output)
        self._output.clear()
        self._output_size = 0
        if self._write_failed or not data:
            return
        self._writer.write(data)
        try:
            async with asyncio.timeout(self._limits.command_timeout):
                await self._writer.drain()
        except TimeoutError:
            raise _SessionClosing("timed out sending a reply") from None
        except OSError:
            # Keep reading: a provider may close its side after sending QUIT.
            self._write_failed = True

    async def _final_reply(self, text: str) -> None:
        """Send the queued replies and a last one before closing, waiting only briefly."""
        self._state = State.CLOSED
        self._output.append(text.encode("ascii") + b"\r\n")
        data = b"".join(self._output)
        self._output.clear()
        if self._write_failed:
            return
        with contextlib.suppress(OSError, TimeoutError):
            self._writer.write(data)
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._writer.drain()

    async def _error(self, text: str) -> None:
        """Send an error reply; past the error limit, send 421 and close instead."""
        self._errors += 1
        if self._errors >= self._limits.max_errors:
            await self._final_reply("421 4.7.0 Too many errors, closing connection")
            raise _SessionClosing(f"{self._errors} command errors")
        await self._reply(text)

    # Handlers

    async def _ehlo(self, argument: str) -> None:
        await self._greet(argument, esmtp=True)

    async def _helo(self, argument: str) -> None:
        await self._greet(argument, esmtp=False)

    async def _greet(self, argument: str, *, esmtp: bool) -> None:
        name = argument.split(" ", 1)[0]
        if not name:
            raise CommandSyntaxError(f"501 5.5.4 Syntax: {'EHLO' if esmtp else 'HELO'} hostname")
        await self._abandon_transaction()
        # Any name is accepted, including non-FQDN ones such as indimail's "AutoTURN".
        self.result.client_name = sanitize(name)
        self._esmtp = esmtp
        self._state = State.READY
        if not esmtp:
            await self._reply(f"250 {self._server_name}")
            return
        lines = [self._server_name, "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                 f"SIZE {self._limits.max_message_size}"]
        await self._reply("\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}")

    async def _mail(self, argument: str) -> None:
        if self._state is State.GREETED:
            raise CommandSyntaxError("503 5.5.1 Send EHLO or HELO first")
        if self._state is not State.READY:
            raise CommandSyntaxError("503 5.5.1 Nested MAIL command")
        if shutdown_requested():
            # Take no new message: the provider keeps it queued for the next run.
            self.result.stopped = True
            await self._final_reply("421 4.3.2 Shutting down, closing connection")
            raise _SessionClosing("stopped for shutdown")
        path = dialogue.parse_mail_from(argument)
        options = dialogue.mail_options(path.parameters)
        if options.size is not None and options.size > self._limits.max_message_size:
            self._reject("message_too_large", sender=path.address, size=options.size)
            await self._reply("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        transaction = _Transaction(path.address, options.smtputf8, options.body_8bit)
        verdict = await self._ask_sink(self._sink.check_sender(path.address, smtputf8=transaction.smtputf8))
        self._note_verdict(verdict)
        if verdict.ok:
            self._transaction = transaction
            self._state = State.MAIL
        await self._reply(verdict.line)

    async def _rcpt(self, argument: str) -> None:
        if self._transaction is None:
            raise CommandSyntaxError("503 5.5.1 Send MAIL first")
        path = dialogue.parse_rcpt_to(argument)
        if path.parameters:
            raise CommandSyntaxError("555 5.5.4 Unsupported RCPT parameter")
        if len(self._transaction.recipients) >= self._limits.max_recipients:
            await self._reply("452 4.5.3 Too many recipients")
            return
        if not dialogue.recipient_allowed(path.address, self._domains):
            self._reject("recipient_domain_not_served", recipient=path.address)
            await self._reply("550 5.7.1 Recipient domain is not served by this customer")
            return
        verdict = await self._ask_sink(self._sink.check_recipient(path.address))
        self._note_verdict(verdict)
        if verdict.ok:
            self._transaction.recipients.append(path.address)
            self._state = State.RCPT
        await self._reply(verdict.line)

    async def _data(self, argument: str) -> None:
        if argument:
            raise CommandSyntaxError("501 5.5.4 DATA takes no argument")
        if self._transaction is None:
            raise CommandSyntaxError("503 5.5.1 Send MAIL first")
        if not self._transaction.recipients:
            await self._reply("554 5.5.1 No valid recipients")
            return
        transaction = self._transaction
        await self._reply("354 End data with <CR><LF>.<CR><LF>")
        await self._flush()  # a provider may wait for 354 before it sends the message
        result, size = await self._receive(transaction)
        self._transaction = None
        self._state = State.READY
        await self._reply(result.line)
        self._note_verdict(result)
        if result.ok:
            self._count_message(transaction, size)

    async def _rset(self, argument: str) -> None:
        await self._abandon_transaction()
        if self._state is not State.GREETED:
            self._state = State.READY
        await self._reply("250 2.0.0 OK")

    async def _noop(self, argument: str) -> None:
        await self._reply("250 2.0.0 OK")

    async def _vrfy(self, argument: str) -> None:
        await self._reply("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery")

    async def _quit(self, argument: str) -> None:
        self.result.clean = True
        await self._final_reply(f"221 2.0.0 {self._server_name} closing connection")

    # Transactions

    async def _receive(self, transaction: _Transaction) -> tuple[DeliveryResult, int]:
        """Stream the message to the sink and return the reply for the end of DATA."""
        envelope = Envelope(transaction.sender, tuple(transaction.recipients), new_message_id(),
                            transaction.smtputf8, transaction.body_8bit)
        prefix = received_header(
            client_name=self.result.client_name or "unknown", client_address=self._peer,
            server_name=self._server_name, protocol=self._protocol_name(),
            message_id=envelope.message_id, recipients=envelope.recipients,
        )
        body = BodyReader(self._input, max_size=self._limits.max_message_size,
                          timeout=self._limits.command_timeout, prefix=prefix)
        try:
            result = await self._sink.deliver(envelope, body)
            await body.drain()
        except MessageTooLarge:
            result = DeliveryResult(552, "5.3.4 Message size exceeds fixed maximum message size")
        except BodyIncomplete as exc:
            # RFC 5321 section 4.1.1.4: a message cut short is discarded, never delivered.
            raise _SessionClosing(f"{exc}; the partial message was discarded") from None
        except Exception:
            log.exception("delivery_failed", message_id=envelope.message_id)
            await self._reset_sink()
            result = DeliveryResult(451, "4.3.0 Local delivery failed; try again later")
        if body.too_large or not result.ok:
            await self._drain_body(body)
        if body.too_large:
            self._reject("message_too_large", sender=envelope.sender, size=body.size)
            result = DeliveryResult(552, "5.3.4 Message size exceeds fixed maximum message size")
        log.debug("atrn_message", message_id=envelope.message_id, sender=envelope.sender,
                  recipients=len(envelope.recipients), size=body.size, result=result.code)
        return result, body.size

    async def _ask_sink(self, check: Awaitable[DeliveryResult]) -> DeliveryResult:
        """Await a sink's MAIL or RCPT verdict; a sink that fails unexpectedly gives 451."""
        try:
            return await check
        except Exception:
            log.exception("sink_check_failed")
            return DeliveryResult(451, "4.3.0 Local delivery is unavailable; try again later")

    async def _drain_body(self, body: BodyReader) -> None:
        try:
            await body.drain()
        except BodyIncomplete as exc:
            raise _SessionClosing(str(exc)) from None

    def _reject(self, reason: str, **fields: object) -> None:
        # The provider bounces what we reject for good, so the admin must hear of it above debug level.
        self.result.rejected += 1
        log.warning("atrn_rejected", reason=reason, **fields)

    def _note_verdict(self, verdict: DeliveryResult) -> None:
        if 400 <= verdict.code < 500:
            self.result.deferred += 1
        elif verdict.code >= 500:
            self.result.rejected += 1

    def _count_message(self, transaction: _Transaction, size: int) -> None:
        self.result.messages += 1
        self.result.bytes += size
        if self.on_message is not None:
            self.on_message(size)

    def _protocol_name(self) -> str:
        if not self._esmtp:
            return "SMTP"
        return "ESMTPS" if self._tls else "ESMTP"

    async def _abandon_transaction(self) -> None:
        if self._transaction is not None:
            self._transaction = None
            await self._reset_sink()

    async def _reset_sink(self) -> None:
        self._transaction = None
        try:
            await self._sink.reset()
        except Exception:
            log.exception("sink_reset_failed")
