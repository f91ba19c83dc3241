"""Sinks: where messages received after the ATRN reversal are handed on."""

from __future__ import annotations

from mailreleased.config.model import CommandDelivery, LmtpDelivery, MaildirDelivery, SmtpDelivery
from mailreleased.odmr.sinks.base import (
    BodyAborted,
    BodyIncomplete,
    DeliveryResult,
    Envelope,
    MessageTooLarge,
    Sink,
)
from mailreleased.odmr.sinks.command import CommandSink
from mailreleased.odmr.sinks.maildir import MaildirSink
from mailreleased.odmr.sinks.relay import RelaySink, lmtp_sink, smtp_sink

__all__ = [
    "BodyAborted",
    "BodyIncomplete",
    "CommandSink",
    "DeliveryResult",
    "Envelope",
    "MaildirSink",
    "MessageTooLarge",
    "RelaySink",
    "Sink",
    "make_sink",
]


def make_sink(delivery: MaildirDelivery | SmtpDelivery | LmtpDelivery | CommandDelivery) -> Sink:
    """Return the sink that a target's ``delivery`` setting describes."""
    if isinstance(delivery, MaildirDelivery):
        return MaildirSink(delivery)
    if isinstance(delivery, SmtpDelivery):
        return smtp_sink(delivery)
    if isinstance(delivery, LmtpDelivery):
        return lmtp_sink(delivery)
    return CommandSink(delivery)
