"""STARTTLS, implicit TLS and AUTH against the fake, with a trustme CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailreleased.outcome import Outcome
from mailreleased.signal import signal_target
from tests.fakes.smtp import Auth, Drop, FakeSmtpServer, Script, StartTls, Step, TlsFiles, make_tls
from tests.fakes.targets import make_target

EHLO_TLS = "250-fake.test\n250-STARTTLS\n250 ETRN"
EHLO_AUTH = "250-fake.test\n250-AUTH PLAIN LOGIN CRAM-MD5\n250 ETRN"
PASSWORD = "s3cret-Pa55"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


def starttls_script(*after: Step) -> Script:
    return Script(steps=(Step("EHLO", EHLO_TLS), Step("STARTTLS", StartTls()), *after))


async def test_starttls_required(tls: TlsFiles) -> None:
    """tls: starttls upgrades, sends EHLO again and runs ETRN inside TLS."""
    script = starttls_script(Step("EHLO", "250-fake.test\n250 ETRN"), Step("ETRN", "250 OK"))
    async with FakeSmtpServer(script, tls=tls) as server:
        records = await signal_target(make_target(server.port, tls="starttls", tls_ca_file=str(tls.ca_file)))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].tls is True
    assert server.connections[0].lines == [
        "EHLO client.test",
        "STARTTLS",
        "EHLO client.test",
        "ETRN example.org",
        "QUIT",
    ]


async def test_starttls_opportunistic(tls: TlsFiles) -> None:
    """tls: opportunistic upgrades when STARTTLS is offered."""
    script = starttls_script(Step("EHLO", "250 fake.test"), Step("ETRN", "250 OK"))
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(server.port, tls="opportunistic", tls_ca_file=str(tls.ca_file))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].tls is True


async def test_starttls_not_offered_required(tls: TlsFiles) -> None:
    """tls: starttls and no STARTTLS keyword: tls_failed without sending ETRN."""
    async with FakeSmtpServer(Script(steps=(Step("EHLO", "250 fake.test"),)), tls=tls) as server:
        records = await signal_target(make_target(server.port, tls="starttls", tls_ca_file=str(tls.ca_file)))
    assert records[0].outcome is Outcome.TLS_FAILED
    assert "ETRN example.org" not in server.connections[0].lines


async def test_wrong_certificate_name(tmp_path: Path) -> None:
    """A certificate for another name: tls_failed."""
    wrong = make_tls(tmp_path, name="other.example")
    async with FakeSmtpServer(starttls_script(), tls=wrong) as server:
        records = await signal_target(make_target(server.port, tls="starttls", tls_ca_file=str(wrong.ca_file)))
    assert records[0].outcome is Outcome.TLS_FAILED
    assert records[0].detail is not None and "TLS handshake failed" in records[0].detail


async def test_untrusted_ca_without_verify(tmp_path: Path) -> None:
    """tls_verify false accepts a certificate no CA vouches for."""
    tls = make_tls(tmp_path, name="other.example")
    script = starttls_script(Step("EHLO", "250 fake.test"), Step("ETRN", "250 OK"))
    async with FakeSmtpServer(script, tls=tls) as server:
        records = await signal_target(make_target(server.port, tls="starttls", tls_verify=False))
    assert records[0].outcome is Outcome.RELEASED


async def test_opportunistic_454_falls_back(tls: TlsFiles) -> None:
    """Opportunistic and a 454: a new cleartext connection without STARTTLS."""
    first = Script(steps=(Step("EHLO", EHLO_TLS), Step("STARTTLS", "454 4.7.0 TLS not available")))
    second = Script(steps=(Step("EHLO", EHLO_TLS), Step("ETRN", "250 OK")))
    async with FakeSmtpServer(first, second, tls=tls) as server:
        target = make_target(server.port, tls="opportunistic", tls_ca_file=str(tls.ca_file))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert len(server.connections) == 2
    assert "STARTTLS" not in server.connections[1].lines


async def test_opportunistic_bad_certificate_falls_back(tmp_path: Path) -> None:
    """Opportunistic and a failed handshake: start over in cleartext."""
    wrong = make_tls(tmp_path, name="other.example")
    second = Script(steps=(Step("EHLO", EHLO_TLS), Step("ETRN", "250 OK")))
    async with FakeSmtpServer(starttls_script(), second, tls=wrong) as server:
        target = make_target(server.port, tls="opportunistic", tls_ca_file=str(wrong.ca_file))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[1].lines == ["EHLO client.test", "ETRN example.org", "QUIT"]


async def test_starttls_454_required_is_tls_failed(tls: TlsFiles) -> None:
    """tls: starttls and a 454: tls_failed, no fallback."""
    script = Script(steps=(Step("EHLO", EHLO_TLS), Step("STARTTLS", "454 4.7.0 TLS not available")))
    async with FakeSmtpServer(script, tls=tls) as server:
        records = await signal_target(make_target(server.port, tls="starttls", tls_ca_file=str(tls.ca_file)))
    assert records[0].outcome is Outcome.TLS_FAILED
    assert records[0].code == 454
    assert len(server.connections) == 1


async def test_bytes_after_starttls_220_abort(tls: TlsFiles) -> None:
    """Data buffered after the 220 to STARTTLS: protocol_error and no handshake."""
    injected = StartTls(inject=b"250-fake.test\r\n250 AUTH PLAIN\r\n")
    script = Script(steps=(Step("EHLO", EHLO_TLS), Step("STARTTLS", injected)))
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(server.port, tls="opportunistic", tls_ca_file=str(tls.ca_file))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.PROTOCOL_ERROR
    assert len(server.connections) == 1
    assert server.connections[0].after_inject == b""


async def test_implicit_tls(tls: TlsFiles) -> None:
    """tls: implicit runs the handshake before the greeting."""
    script = Script(steps=(Step("EHLO", "250 fake.test"), Step("ETRN", "250 OK")))
    async with FakeSmtpServer(script, tls=tls, implicit_tls=True) as server:
        records = await signal_target(make_target(server.port, tls="implicit", tls_ca_file=str(tls.ca_file)))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].lines == ["EHLO client.test", "ETRN example.org", "QUIT"]


def auth_settings(*mechanisms: str, allow_plaintext: bool = False) -> dict[str, object]:
    return {
        "username": "user",
        "password": PASSWORD,
        "mechanisms": list(mechanisms),
        "allow_plaintext": allow_plaintext,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_over_starttls(tls: TlsFiles, mechanism: str) -> None:
    """Each mechanism authenticates inside TLS, with no EHLO after AUTH."""
    script = starttls_script(
        Step("EHLO", EHLO_AUTH),
        Step(f"AUTH {mechanism}", Auth(mechanism, "user", PASSWORD)),
        Step("ETRN", "250 OK"),
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(
            server.port, tls="starttls", tls_ca_file=str(tls.ca_file), auth=auth_settings(mechanism)
        )
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].auth_ok is True
    assert server.mismatches == []
    assert [line for line in server.connections[0].lines if line.startswith("EHLO")] == ["EHLO client.test"] * 2


async def test_cram_md5_in_cleartext() -> None:
    """CRAM-MD5 may run without TLS."""
    script = Script(
        steps=(
            Step("EHLO", EHLO_AUTH),
            Step("AUTH CRAM-MD5", Auth("CRAM-MD5", "user", PASSWORD)),
            Step("ETRN", "250 OK"),
        )
    )
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port, auth=auth_settings("CRAM-MD5", "PLAIN")))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].auth_ok is True


async def test_plain_refused_in_cleartext() -> None:
    """Only PLAIN possible without TLS: auth_failed naming the fix, and no AUTH sent."""
    script = Script(steps=(Step("EHLO", "250-fake.test\n250 AUTH PLAIN LOGIN"),))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port, auth=auth_settings("PLAIN", "LOGIN")))
    assert records[0].outcome is Outcome.AUTH_FAILED
    assert records[0].detail is not None
    assert "tls: starttls" in records[0].detail
    assert "allow_plaintext: true" in records[0].detail
    assert not any(line.startswith("AUTH") for line in server.connections[0].lines)


async def test_plain_allowed_in_cleartext() -> None:
    """allow_plaintext lets PLAIN run without TLS."""
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 AUTH=PLAIN"),
            Step("AUTH PLAIN", Auth("PLAIN", "user", PASSWORD)),
            Step("ETRN", "250 OK"),
        )
    )
    async with FakeSmtpServer(script) as server:
        target = make_target(server.port, auth=auth_settings("PLAIN", allow_plaintext=True))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].auth_ok is True


async def test_no_plain_after_tls_fallback(tls: TlsFiles) -> None:
    """The cleartext fallback after a 454 never sends PLAIN, even with allow_plaintext."""
    first = Script(steps=(Step("EHLO", EHLO_TLS), Step("STARTTLS", "454 4.7.0 TLS not available")))
    second = Script(steps=(Step("EHLO", "250-fake.test\n250-STARTTLS\n250 AUTH PLAIN"),))
    async with FakeSmtpServer(first, second, tls=tls) as server:
        target = make_target(
            server.port,
            tls="opportunistic",
            tls_ca_file=str(tls.ca_file),
            auth=auth_settings("PLAIN", allow_plaintext=True),
        )
        records = await signal_target(target)
    assert records[0].outcome is Outcome.AUTH_FAILED
    assert not any(line.startswith("AUTH") for line in server.connections[1].lines)


async def test_wrong_password_is_auth_failed() -> None:
    """A 535 to AUTH: auth_failed, ETRN not sent."""
    script = Script(steps=(Step("EHLO", EHLO_AUTH), Step("AUTH CRAM-MD5", Auth("CRAM-MD5", "user", "other"))))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port, auth=auth_settings("CRAM-MD5")))
    assert records[0].outcome is Outcome.AUTH_FAILED
    assert records[0].code == 535
    assert "ETRN example.org" not in server.connections[0].lines


async def test_auth_504_tries_next_mechanism(tls: TlsFiles) -> None:
    """A 504 to one mechanism moves on to the next offered one."""
    script = starttls_script(
        Step("EHLO", EHLO_AUTH),
        Step("AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type"),
        Step("AUTH LOGIN", Auth("LOGIN", "user", PASSWORD)),
        Step("ETRN", "250 OK"),
    )
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(
            server.port, tls="starttls", tls_ca_file=str(tls.ca_file), auth=auth_settings("CRAM-MD5", "LOGIN")
        )
        records = await signal_target(target)
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].auth_ok is True


async def test_auth_454_is_tempfail() -> None:
    """A 454 to AUTH is temporary."""
    script = Script(steps=(Step("EHLO", EHLO_AUTH), Step("AUTH CRAM-MD5", "454 4.7.0 Temporary authentication failure")))
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port, auth=auth_settings("CRAM-MD5")))
    assert records[0].outcome is Outcome.TEMPFAIL


async def test_530_with_credentials_authenticates_and_retries() -> None:
    """AUTH not listed and a 530 to ETRN: AUTH, then ETRN once more."""
    script = Script(
        steps=(
            Step("EHLO", "250-fake.test\n250 ETRN"),
            Step("ETRN", "530 5.7.0 Authentication required"),
            Step("AUTH CRAM-MD5", Auth("CRAM-MD5", "user", PASSWORD)),
            Step("ETRN", "250 OK"),
        )
    )
    async with FakeSmtpServer(script) as server:
        records = await signal_target(make_target(server.port, auth=auth_settings("CRAM-MD5")))
    assert records[0].outcome is Outcome.RELEASED
    assert server.connections[0].lines.count("ETRN example.org") == 2
    assert server.mismatches == []


async def test_drop_on_ehlo_after_starttls(tls: TlsFiles) -> None:
    """A server hanging up on the EHLO inside TLS is a protocol error, not a cleartext retry."""
    script = starttls_script(Step("EHLO", Drop()))
    async with FakeSmtpServer(script, tls=tls) as server:
        target = make_target(server.port, tls="opportunistic", tls_ca_file=str(tls.ca_file))
        records = await signal_target(target)
    assert records[0].outcome is Outcome.PROTOCOL_ERROR
    assert len(server.connections) == 1
