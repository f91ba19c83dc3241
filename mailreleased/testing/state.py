"""Provider settings and the state its sessions share: queue, records and faults."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from typing import Literal

from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import QueuedMessage
from mailreleased.testing.store import MessageStore
from mailreleased.testing.wire import Reply


@dataclasses.dataclass(frozen=True)
class ProviderSettings:
    """Provider behaviour, fixed for its lifetime."""

    domains: frozenset[str]
    users: Mapping[str, str]
    # Domains each user may release with ATRN; a user missing here may release every domain.
    user_domains: Mapping[str, frozenset[str]]
    hostname: str = "provider.test"
    multiline_greeting: bool = False
    tls_context: ssl.SSLContext | None = None
    # Reply 538 to AUTH PLAIN and LOGIN until STARTTLS has run.
    require_tls_for_plaintext_auth: bool = False
    max_messages_per_session: int | None = None
    # Pipeline MAIL, RCPT and DATA after the turnaround when the customer offers PIPELINING.
    use_pipelining: bool = True
    # Reply 251 (an RFC 1985 code) to ETRN when nothing is queued for the node, instead of Postfix's 250.
    etrn_report_empty: bool = False
    command_timeout: float = 300.0
    reply_timeout: float = 300.0
    record_transcript: bool = True

    def allowed_domains(self, username: str) -> frozenset[str]:
        """Return the domains that ``username`` may release with ATRN."""
        return self.user_domains.get(username, self.domains)


@dataclasses.dataclass(frozen=True)
class TranscriptEntry:
    """One line that crossed the wire: ``received`` from or ``sent`` to the peer."""

    session: int
    direction: Literal["received", "sent"]
    line: str


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A message the customer rejected with 5xx. It stays queued, where a real MTA would bounce it."""

    message_id: str
    stage: str
    reply: Reply


@dataclasses.dataclass
class ProviderState:
    """Everything sessions read and change while the provider runs."""

    settings: ProviderSettings
    store: MessageStore
    faults: Faults
    delivered: list[QueuedMessage] = dataclasses.field(default_factory=list)
    etrn_requests: list[str] = dataclasses.field(default_factory=list)
    atrn_requests: list[tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=list)
    rejections: list[Rejection] = dataclasses.field(default_factory=list)
    transcript: list[TranscriptEntry] = dataclasses.field(default_factory=list)
    # Domains whose queue a reversed session is delivering right now.
    busy_domains: set[str] = dataclasses.field(default_factory=set)
    sessions: int = 0

    def record(self, session: int, direction: Literal["received", "sent"], line: str) -> None:
        """Append a line to the transcript unless recording is off."""
        if self.settings.record_transcript:
            self.transcript.append(TranscriptEntry(session, direction, line))
