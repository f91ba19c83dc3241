"""The delivery interface: what a sink receives and what it must return.

A sink takes each message the provider sends after the ATRN reversal and
hands it on. It returns a :class:`DeliveryResult`; a 2xx result
promises that the message is stored durably, because the receiver sends
that 250 to the provider, which then deletes its copy.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator

from mailreleased.errors import MailreleasedError


class BodyAborted(MailreleasedError):
    """The message body stopped before its end; the sink must undo any partial copy."""


class MessageTooLarge(BodyAborted):
    """The message passed the receiver's size limit; ``limit`` is in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"message exceeds the size limit of {limit} bytes")


class BodyIncomplete(BodyAborted):
    """The link to the provider broke or timed out in the middle of DATA."""


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one message; ``sender`` is "" for the null sender ``<>``."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str = ""
    smtputf8: bool = False
    body_8bit: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryResult:
    """A sink's verdict as an SMTP reply: ``code`` and ``text`` (with enhanced status code)."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        """Whether the reply is a 2xx success."""
        return 200 <= self.code < 300

    @property
    def line(self) -> str:
        """The reply as one SMTP reply line without the line ending."""
        return f"{self.code} {self.text}"


ACCEPTED = DeliveryResult(250, "2.0.0 OK")
SENDER_OK = DeliveryResult(250, "2.1.0 Sender OK")
RECIPIENT_OK = DeliveryResult(250, "2.1.5 Recipient OK")


class Sink(abc.ABC):
    """A destination for received messages, used by one session at a time.

    The receiver calls :meth:`check_sender` at ``MAIL``, :meth:`check_recipient`
    at each ``RCPT`` (so a sink can pass on a verdict per recipient while the
    provider can still act on it), and :meth:`deliver` after ``DATA``.
    ``deliver`` alone is also a complete interface: a sink must work when
    the check methods were never called.
    """

    async def open(self) -> None:
        """Prepare the sink before the first session, such as removing stale files."""

    async def check_sender(self, sender: str, *, smtputf8: bool = False) -> DeliveryResult:
        """Return the reply for ``MAIL FROM:<sender>``; ``smtputf8`` is set if the provider asked for it."""
        return SENDER_OK

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        """Return the reply for ``RCPT TO:<recipient>``."""
        return RECIPIENT_OK

    @abc.abstractmethod
    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        """Hand the message on and return the reply for the end of DATA.

        Return 2xx only after the message is stored durably, 4xx (451 or
        452) for a temporary failure and 554 for a permanent one. If
        iterating ``body`` raises, remove any partial copy and let the
        exception propagate. The transaction ends either way.
        """

    async def reset(self) -> None:
        """Abandon the current transaction (``RSET``, or a session that broke)."""

    async def aclose(self) -> None:
        """Release connections and other resources."""
