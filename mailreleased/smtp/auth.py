"""ESMTP AUTH (RFC 4954) with PLAIN, LOGIN and CRAM-MD5, run over a client session.

Secrets never go through a code path that logs or waits on the network:
payload lines are built inside a callback and written at once, so no frame
that might end in a timeout contains the password or its base64 form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import SecretStr

from mailreleased.config.model import AuthConfig
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome
from mailreleased.smtp.classify import Action, Failure, Stage, classify
from mailreleased.smtp.reply import Reply
from mailreleased.smtp.wire import MASK

# Mechanisms that send the password itself, merely base64-encoded.
CLEARTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


class AuthChannel(Protocol):
    """The two round trips an AUTH exchange needs from a session."""

    async def exchange(self, line: str) -> Reply | Failure: ...

    async def exchange_secret(self, build: Callable[[], bytes], log_as: str = ...) -> Reply | Failure: ...


def cram_md5_response(username: str, password: str, challenge_b64: str) -> str:
    """Return the base64 CRAM-MD5 response (RFC 2195) to a base64 server challenge.

    Raises ValueError if the challenge is not valid base64.
    """
    try:
        challenge = base64.b64decode(challenge_b64.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("CRAM-MD5 challenge is not valid base64") from exc
    digest = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
    return base64.b64encode(f"{username} {digest}".encode()).decode("ascii")


def plain_initial_response(username: str, secret: SecretStr) -> bytes:
    """Return the ``AUTH PLAIN`` command with its RFC 4616 initial response (empty authzid)."""
    blob = b"\0" + username.encode("utf-8") + b"\0" + secret.get_secret_value().encode("utf-8")
    return b"AUTH PLAIN " + base64.b64encode(blob)


def choose_mechanisms(
    auth: AuthConfig, offered: Sequence[str], *, encrypted: bool, after_tls_failure: bool
) -> list[str]:
    """Return the configured mechanisms to try, in configured order.

    ``offered`` empty means the server listed nothing (HELO only, or no AUTH
    keyword); then every configured mechanism may be tried. PLAIN and LOGIN
    are dropped on an unencrypted link unless ``allow_plaintext`` is set, and
    always on a connection that replaced a failed STARTTLS.
    Raises SessionError(auth_failed) with the fix when nothing is left.
    """
    offered_set = {name.upper() for name in offered}
    wanted = [name for name in auth.mechanisms if not offered_set or name in offered_set]
    cleartext_ok = encrypted or (auth.allow_plaintext and not after_tls_failure)
    usable: list[str] = [name for name in wanted if cleartext_ok or name not in CLEARTEXT_MECHANISMS]
    if usable:
        return usable
    if wanted and after_tls_failure:
        detail = (
            "STARTTLS failed, so PLAIN and LOGIN are not sent over the unencrypted fallback "
            "connection; fix TLS on the server or use CRAM-MD5"
        )
    elif wanted:
        detail = (
            f"refusing to send {'/'.join(wanted)} over an unencrypted connection; "
            "set 'tls: starttls' (or 'implicit') or 'allow_plaintext: true'"
        )
    else:
        detail = (
            f"server offers AUTH {' '.join(sorted(offered_set))}, none of the configured "
            f"mechanisms {', '.join(auth.mechanisms)}"
        )
    raise SessionError(Outcome.AUTH_FAILED, detail=detail)


async def authenticate(channel: AuthChannel, auth: AuthConfig, mechanisms: Sequence[str]) -> None:
    """Run AUTH with each mechanism in turn until one succeeds.

    A 504 (mechanism unknown) moves on to the next mechanism. Raises
    SessionError for every other failure, with the outcome from :func:`classify`.
    """
    last: Reply | None = None
    for mechanism in mechanisms:
        result = await _run_mechanism(channel, auth, mechanism)
        decision = classify(Stage.AUTH, result)
        if decision is Action.PROCEED:
            return
        if decision is Action.NEXT_MECHANISM:
            assert isinstance(result, Reply)
            last = result
            continue
        raise _auth_error(decision, result, mechanism)
    raise SessionError(
        Outcome.AUTH_FAILED,
        last.code if last else None,
        last.short() if last else None,
        detail=f"server does not support any of {', '.join(mechanisms)}",
    )


async def _run_mechanism(channel: AuthChannel, auth: AuthConfig, mechanism: str) -> Reply | Failure:
    username = auth.username
    secret = auth.secret
    if mechanism == "PLAIN":
        result = await channel.exchange_secret(
            lambda: plain_initial_response(username, secret), log_as=f"AUTH PLAIN {MASK}"
        )
    elif mechanism == "LOGIN":
        result = await channel.exchange("AUTH LOGIN")
        if _is_challenge(result):
            result = await channel.exchange_secret(lambda: _b64(username))
        if _is_challenge(result):
            result = await channel.exchange_secret(lambda: _b64(secret.get_secret_value()))
    else:
        result = await channel.exchange("AUTH CRAM-MD5")
        if isinstance(result, Reply) and result.code == 334:
            challenge = result.lines[0] if result.lines else ""
            if not _is_base64(challenge):
                return Failure.GARBAGE
            result = await channel.exchange_secret(
                lambda: cram_md5_response(username, secret.get_secret_value(), challenge).encode("ascii")
            )
    if _is_challenge(result):
        # The server wants more than this mechanism sends: cancel with "*" (RFC 4954).
        result = await channel.exchange("*")
    return result


def _is_challenge(result: Reply | Failure) -> bool:
    return isinstance(result, Reply) and result.code == 334


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        return False
    return True


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


def _auth_error(decision: Outcome | Action, result: Reply | Failure, mechanism: str) -> SessionError:
    outcome = decision if isinstance(decision, Outcome) else Outcome.PROTOCOL_ERROR
    if isinstance(result, Reply):
        return SessionError(outcome, result.code, result.short(), detail=f"AUTH {mechanism} failed")
    return SessionError(outcome, detail=f"AUTH {mechanism} failed: {result.value}")
