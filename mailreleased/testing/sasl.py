"""Server-side SASL checks for AUTH PLAIN, LOGIN and CRAM-MD5.

The dialogue (334 challenges, reading responses) lives in the session. These
functions only decode client responses and check credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
# Mechanisms that send the password itself; RFC 4954 lets a server demand TLS for them (538).
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

LOGIN_USERNAME_PROMPT = base64.b64encode(b"Username:").decode("ascii")
LOGIN_PASSWORD_PROMPT = base64.b64encode(b"Password:").decode("ascii")


class InvalidResponse(ValueError):
    """A client response is not valid base64 or has the wrong shape (reply 501)."""


def decode_response(line: str) -> bytes:
    """Decode one base64 client response; ``=`` is an empty response."""
    if line == "=":
        return b""
    try:
        return base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidResponse("response is not valid base64") from exc


def password_matches(users: Mapping[str, str], username: str, password: str) -> bool:
    """Compare a username and password against ``users`` in constant time per password."""
    expected = users.get(username)
    if expected is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))


def check_plain(users: Mapping[str, str], response: bytes) -> str | None:
    """Check a PLAIN response (``authzid NUL authcid NUL password``); return the user or None."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise InvalidResponse("PLAIN response must have three NUL-separated parts")
    authzid, username, password = (part.decode("utf-8", errors="replace") for part in parts)
    if authzid and authzid != username:
        return None
    return username if password_matches(users, username, password) else None


def make_cram_challenge(hostname: str) -> bytes:
    """Return a fresh CRAM-MD5 challenge shaped like a msg-id, as RFC 2195 describes."""
    return f"<{secrets.randbelow(10**10)}.{int(time.time())}@{hostname}>".encode("ascii")


def check_cram_md5(users: Mapping[str, str], challenge: bytes, response: bytes) -> str | None:
    """Check a CRAM-MD5 response ``username SP hex-digest``; return the user or None."""
    username_bytes, _, digest = response.rpartition(b" ")
    if not username_bytes or not digest:
        raise InvalidResponse("CRAM-MD5 response must be 'username digest'")
    username = username_bytes.decode("utf-8", errors="replace")
    password = users.get(username)
    if password is None:
        return None
    expected = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest().encode("ascii")
    return username if hmac.compare_digest(expected, digest.lower()) else None
