"""TLS client contexts built from a target's settings."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from mailreleased.config.model import Target


def client_context(target: Target) -> ssl.SSLContext:
    """Return the client SSLContext for a target (shared between targets with equal settings)."""
    return _context(target.tls_verify, target.tls_ca_file)


@functools.lru_cache(maxsize=32)
def _context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ca_file is not None:
        # Added to the system trust store, not instead of it.
        context.load_verify_locations(cafile=str(ca_file))
    return context
