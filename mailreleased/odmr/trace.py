"""Build the ``Received:`` trace header that the receiver prepends to each message.

Every value that came from the provider passes through :func:`sanitize`, so
no byte the provider chose can end the header line and start a new header.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time

_UNSAFE = re.compile(r"[^\x21-\x7e]")
# Characters with a meaning inside a Received header comment or clause.
_STRUCTURAL = re.compile(r"[()\\;<>]")
MAX_NAME_LENGTH = 255


def sanitize(value: str, *, limit: int = MAX_NAME_LENGTH) -> str:
    """Return ``value`` with control, space, non-ASCII and comment characters replaced by ``_``.

    The result is cut to ``limit`` characters and is never empty.
    """
    cleaned = _STRUCTURAL.sub("_", _UNSAFE.sub("_", value))[:limit]
    return cleaned or "unknown"


def new_message_id() -> str:
    """Return a short unique id for the ``id`` clause and the logs."""
    return f"{int(time.time()):X}{secrets.token_hex(5).upper()}"


def received_header(
    *,
    client_name: str,
    client_address: str,
    server_name: str,
    protocol: str,
    message_id: str,
    recipients: tuple[str, ...],
    now: float | None = None,
) -> bytes:
    """Return a folded RFC 5321 section 4.4 ``Received:`` header, CRLF-terminated.

    ``for`` appears only with a single recipient, so a Bcc list never leaks
    into the header.
    """
    date = email.utils.formatdate(now, localtime=True)
    lines = [
        f"Received: from {sanitize(client_name)} ({sanitize(client_address)})",
        f"\tby {sanitize(server_name)} with {protocol} id {sanitize(message_id)}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{sanitize(recipients[0], limit=512)}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
