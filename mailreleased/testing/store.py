"""The provider's mail queue, in memory or as one file per message in a directory.

With a queue directory the queue survives provider restarts and another
process can inspect it: each message is ``<id>.msg``, a one-line JSON
envelope followed by the raw message bytes. Files are written under
``tmp/``, fsynced and renamed into place, and removed only after the customer
acknowledged the message with 250. So a crash loses no message and leaves no
half-written one in the queue, but a crash between the 250 and the removal
delivers that message twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from mailreleased.testing.messages import QueuedMessage

MESSAGE_SUFFIX = ".msg"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
# Written once the queue directory got its initial messages, so a restart does not seed again.
SEEDED_MARKER = ".seeded"


class MessageStore:
    """Queued messages in arrival order; optionally mirrored to a directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._messages: dict[str, QueuedMessage] = {}
        if directory is not None:
            (directory / "tmp").mkdir(parents=True, exist_ok=True)
            for message in load_directory(directory):
                self._messages[message.id] = message

    def __len__(self) -> int:
        return len(self._messages)

    def messages(self) -> list[QueuedMessage]:
        """Return the waiting messages, oldest first."""
        return list(self._messages.values())

    def add(self, messages: Iterable[QueuedMessage]) -> None:
        """Queue ``messages``; with a directory, write each one to disk before it counts as queued."""
        for message in messages:
            if not _SAFE_ID.match(message.id):
                raise ValueError(f"message id {message.id!r} may hold only letters, digits, '.', '_' and '-'")
            if message.id in self._messages:
                raise ValueError(f"message id {message.id!r} is already queued")
            if self.directory is not None:
                message = write_message(self.directory, message)
            self._messages[message.id] = message

    def remove(self, message_id: str) -> None:
        """Drop a message that the customer acknowledged with 250."""
        self._messages.pop(message_id, None)
        if self.directory is not None:
            try:
                (self.directory / f"{message_id}{MESSAGE_SUFFIX}").unlink()
            except FileNotFoundError:
                pass

    def for_domains(self, domains: Iterable[str]) -> list[QueuedMessage]:
        """Return waiting messages with at least one recipient in ``domains`` (case-insensitive).

        NOTE: a message is not split by domain. Its delivery sends every recipient,
        including those in domains the customer did not request.
        """
        wanted = {domain.lower() for domain in domains}
        return [message for message in self._messages.values() if message.domains & wanted]

    def is_seeded(self) -> bool:
        """Return whether the directory already got its initial messages (always False without one)."""
        return self.directory is not None and (self.directory / SEEDED_MARKER).exists()

    def mark_seeded(self) -> None:
        """Record that the directory got its initial messages."""
        if self.directory is not None:
            (self.directory / SEEDED_MARKER).touch()


def write_message(directory: Path, message: QueuedMessage) -> QueuedMessage:
    """Write ``message`` atomically to ``directory`` and return its file-backed form."""
    envelope = {"id": message.id, "sender": message.sender, "recipients": list(message.recipients)}
    header = json.dumps(envelope, separators=(",", ":")).encode("utf-8") + b"\n"
    temporary = directory / "tmp" / f"{message.id}{MESSAGE_SUFFIX}"
    final = directory / f"{message.id}{MESSAGE_SUFFIX}"
    with temporary.open("wb") as stream:
        stream.write(header)
        for chunk in message.chunks():
            stream.write(chunk)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, final)
    _fsync_directory(directory)
    return QueuedMessage(message.id, message.sender, message.recipients, source=final, source_offset=len(header))


def read_message(path: Path) -> QueuedMessage:
    """Read the envelope of a queue file; the message bytes stay in the file."""
    with path.open("rb") as stream:
        header = stream.readline()
    envelope = json.loads(header)
    return QueuedMessage(
        id=str(envelope["id"]),
        sender=str(envelope["sender"]),
        recipients=tuple(str(item) for item in envelope["recipients"]),
        source=path,
        source_offset=len(header),
    )


def load_directory(directory: Path) -> list[QueuedMessage]:
    """Return the messages queued in ``directory``, ordered by file name."""
    return [read_message(path) for path in sorted(directory.glob(f"*{MESSAGE_SUFFIX}"))]


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
