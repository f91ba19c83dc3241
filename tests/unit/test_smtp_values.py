"""Pure helpers of the SMTP layer: replies, sanitizing, CRAM-MD5, mechanism choice."""

from __future__ import annotations

import pytest

from mailreleased.config.model import AuthConfig
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome
from mailreleased.smtp.auth import choose_mechanisms, cram_md5_response
from mailreleased.smtp.helo import address_literal
from mailreleased.smtp.reply import Reply, decode_server_text, sanitize
from mailreleased.smtp.wire import mask_auth_command


def test_cram_md5_rfc2195_vector() -> None:
    """The RFC 2195 example produces the RFC's answer."""
    challenge = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    assert cram_md5_response("tim", "tanstaaftanstaaf", challenge) == (
        "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
    )


def test_cram_md5_bad_challenge() -> None:
    """A challenge that is not base64 raises ValueError."""
    with pytest.raises(ValueError, match="base64"):
        cram_md5_response("tim", "x", "not base64!")


def test_reply_text_and_enhanced() -> None:
    """Reply joins its lines and finds the enhanced status code."""
    reply = Reply(250, ("2.0.0 Queuing for node example.org started", "more"))
    assert reply.text == "2.0.0 Queuing for node example.org started more"
    assert reply.enhanced == "2.0.0"
    assert Reply(250, ("OK",)).enhanced is None


def test_reply_wire_lines() -> None:
    """Multi-line replies log with dashes on all but the last line."""
    assert Reply(250, ("a", "b", "c")).wire_lines() == ["250-a", "250-b", "250 c"]
    assert Reply(250, ("",)).wire_lines() == ["250"]


def test_reply_short_is_sanitized_and_cut() -> None:
    """Record text has no control characters and a bounded length."""
    reply = Reply(550, ("bad\x1b[31m" + "x" * 500,))
    short = reply.short()
    assert "\x1b" not in short
    assert len(short) == 200


def test_sanitize_control_characters() -> None:
    """C0, DEL and C1 controls become question marks."""
    assert sanitize("a\rb\nc\x7fd\x85e") == "a?b?c?d?e"


def test_decode_server_text_replaces_bad_bytes() -> None:
    """Undecodable bytes become U+FFFD instead of surrogates."""
    assert decode_server_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\ufffd"


def test_mask_auth_command() -> None:
    """Anything after the mechanism of an AUTH command is masked."""
    assert mask_auth_command("AUTH PLAIN AGZvbwBiYXI=") == "AUTH PLAIN ***"
    assert mask_auth_command("AUTH LOGIN") == "AUTH LOGIN"
    assert mask_auth_command("ETRN example.org") == "ETRN example.org"


def test_address_literal() -> None:
    """IPv4 and IPv6 literals follow RFC 5321 section 4.1.3."""
    assert address_literal("127.0.0.1") == "[127.0.0.1]"
    assert address_literal("::1") == "[IPv6:::1]"


def auth(**kwargs: object) -> AuthConfig:
    return AuthConfig.model_validate({"username": "user", "password": "pw", **kwargs})


def test_choose_first_offered_mechanism_over_tls() -> None:
    """Configured order wins, limited to what the server offers."""
    chosen = choose_mechanisms(auth(), ["LOGIN", "PLAIN"], encrypted=True, after_tls_failure=False)
    assert chosen == ["PLAIN", "LOGIN"]


def test_choose_keeps_cram_md5_in_cleartext() -> None:
    """CRAM-MD5 may run without TLS, but PLAIN and LOGIN may not."""
    chosen = choose_mechanisms(auth(), ["PLAIN", "LOGIN", "CRAM-MD5"], encrypted=False, after_tls_failure=False)
    assert chosen == ["CRAM-MD5"]


def test_choose_refuses_plain_in_cleartext() -> None:
    """Only PLAIN offered over cleartext: auth_failed naming the settings to change."""
    with pytest.raises(SessionError) as caught:
        choose_mechanisms(auth(), ["PLAIN"], encrypted=False, after_tls_failure=False)
    assert caught.value.outcome is Outcome.AUTH_FAILED
    assert "tls: starttls" in str(caught.value)
    assert "allow_plaintext: true" in str(caught.value)


def test_choose_allow_plaintext() -> None:
    """allow_plaintext lets PLAIN run over cleartext."""
    chosen = choose_mechanisms(auth(allow_plaintext=True), ["PLAIN"], encrypted=False, after_tls_failure=False)
    assert chosen == ["PLAIN"]


def test_choose_no_plaintext_after_tls_failure() -> None:
    """The cleartext fallback after a failed STARTTLS never sends PLAIN, even when allowed."""
    with pytest.raises(SessionError) as caught:
        choose_mechanisms(auth(allow_plaintext=True), ["PLAIN"], encrypted=False, after_tls_failure=True)
    assert "STARTTLS failed" in str(caught.value)


def test_choose_none_offered() -> None:
    """No common mechanism: auth_failed listing both sides."""
    with pytest.raises(SessionError) as caught:
        choose_mechanisms(auth(), ["XOAUTH2"], encrypted=True, after_tls_failure=False)
    assert "XOAUTH2" in str(caught.value)
