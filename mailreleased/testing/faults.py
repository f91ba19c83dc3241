"""Faults the provider injects on request; tests may change them while it runs."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Faults:
    """Misbehaviour switches, read by every session at the moment they matter.

    All fields default to a well-behaved provider.
    """

    # Greet with "421" and close, as an overloaded server does.
    greeting_421: bool = False
    # Seconds to wait before sending each reply and each command of the reversed session.
    reply_delay: float = 0.0
    # Send the EHLO reply with a bare code line and LF-only line ends.
    odd_replies: bool = False
    # Reply 535 to every AUTH, whatever the credentials.
    refuse_auth: bool = False
    # After this many acknowledged messages in one reversed session, start the
    # next message's DATA and drop the connection part-way.
    drop_after_messages: int | None = None
    # Bytes of the dropped message's data to send before dropping; None sends half of it.
    drop_after_bytes: int | None = None
    # Raw reply line per command verb (upper case), sent instead of the normal reply,
    # for example {"ETRN": "458 Unable to queue messages"}.
    replies: dict[str, str] = dataclasses.field(default_factory=dict)

    def drops_message(self, acknowledged: int) -> bool:
        """Return whether the message after ``acknowledged`` delivered ones is to be cut off."""
        if self.drop_after_messages is None and self.drop_after_bytes is None:
            return False
        threshold = self.drop_after_messages or 0
        return acknowledged >= threshold

    def drop_point(self, size: int) -> int:
        """Bytes of a message of ``size`` bytes to send before dropping the connection."""
        if self.drop_after_bytes is None:
            return size // 2
        return min(self.drop_after_bytes, size)
