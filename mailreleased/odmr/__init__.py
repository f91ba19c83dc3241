"""ODMR (RFC 2645): ATRN, the role reversal, and delivery of the released mail."""

from mailreleased.odmr.atrn import ProgressCallback, atrn_command, run_atrn
from mailreleased.odmr.receiver import SessionResult, serve_reversed
from mailreleased.odmr.sinks import DeliveryResult, Envelope, Sink, make_sink

__all__ = [
    "DeliveryResult",
    "Envelope",
    "ProgressCallback",
    "SessionResult",
    "Sink",
    "atrn_command",
    "make_sink",
    "run_atrn",
    "serve_reversed",
]
