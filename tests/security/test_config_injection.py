"""Config values that reach the wire or the log: control bytes rejected, secrets never shown."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mailreleased.config.loader import parse_config
from mailreleased.config.show import render_effective_config
from mailreleased.errors import ConfigError

SECRET = "Tr0ub4dor&3-secret"
CONTROL_BYTES = ["\r", "\n", "\r\n", "\x00", "\x1b", "\x7f", "\t"]


def _etrn_target(**overrides: object) -> dict[str, object]:
    target: dict[str, object] = {"name": "isp", "method": "etrn", "host": "127.0.0.1", "domains": ["example.org"]}
    target.update(overrides)
    return target


def _dump(target: dict[str, object]) -> str:
    import yaml

    return yaml.safe_dump({"targets": [target]})


# Each case puts the control byte into one value that is later sent on the wire.
INJECTION_CASES: dict[str, Callable[[str], dict[str, object]]] = {
    "domain": lambda bad: _etrn_target(domains=[f"example.org{bad}QUIT"]),
    "second domain": lambda bad: _etrn_target(domains=["example.org", f"evil{bad}RCPT TO:<x@y>"]),
    "command": lambda bad: _etrn_target(method="custom", domains=[], command=f"QSND x{bad}DATA"),
    "helo_name": lambda bad: _etrn_target(helo_name=f"client{bad}MAIL FROM:<>"),
    "host": lambda bad: _etrn_target(host=f"127.0.0.1{bad}x"),
    "hosts": lambda bad: {**_etrn_target(host=None), "hosts": ["127.0.0.1", f"::1{bad}"]},
    "username": lambda bad: _etrn_target(auth={"username": f"u{bad}AUTH", "password": SECRET}),
    "argv": lambda bad: {
        "name": "odmr",
        "method": "atrn",
        "host": "127.0.0.1",
        "auth": {"username": "u", "password": SECRET},
        "delivery": {"type": "command", "argv": ["/usr/bin/true", f"x{bad}y"]},
    },
}


@pytest.mark.parametrize("bad", CONTROL_BYTES, ids=[repr(b) for b in CONTROL_BYTES])
@pytest.mark.parametrize("field", list(INJECTION_CASES))
def test_control_byte_rejected_at_load(field: str, bad: str) -> None:
    """A control byte in any wire value is a ConfigError at load time."""
    target = INJECTION_CASES[field](bad)
    if target.get("host") is None:
        target.pop("host", None)
    with pytest.raises(ConfigError) as info:
        parse_config(_dump(target), source="inject.yaml")
    error = info.value
    assert error.key_path is not None
    assert error.key_path.startswith("targets[0]")
    assert "\n" not in str(error)
    assert "\r" not in str(error)


@pytest.mark.parametrize("value", ["12345678", f"[{SECRET}]", f"{{a: {SECRET}}}"])
def test_mistyped_password_not_in_error(value: str) -> None:
    """A password of the wrong YAML type is reported without its value."""
    text = f"targets: [{{name: t, method: etrn, host: h, domains: [d], auth: {{username: u, password: {value}}}}}]"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert "12345678" not in message
    assert SECRET not in message
    assert info.value.key_path == "targets[0].auth.password"


def test_other_error_hides_password() -> None:
    """An error elsewhere in an auth block does not echo the password."""
    text = f"targets: [{{name: t, method: etrn, host: h, domains: [d], auth: {{username: u, password: {SECRET}, mechanisms: [X]}}}}]"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


@pytest.fixture(params=["password", "password_env", "password_file"])
def auth_config_text(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A valid config whose password comes from each of the three sources."""
    source = request.param
    if source == "password":
        auth = f"password: {SECRET}"
    elif source == "password_env":
        monkeypatch.setenv("MAILRELEASED_TEST_SECRET", SECRET)
        auth = "password_env: MAILRELEASED_TEST_SECRET"
    else:
        secret_file = tmp_path / "secret"
        secret_file.write_text(SECRET + "\n")
        auth = f"password_file: {secret_file}"
    return textwrap.dedent(
        f"""\
        targets:
          - name: odmr
            method: atrn
            host: 127.0.0.1
            domains: [example.org]
            auth: {{username: customer, {auth}}}
            delivery: {{type: maildir, path: {tmp_path}/Maildir}}
        """
    )


def test_config_repr_hides_secret(auth_config_text: str) -> None:
    """repr, str, JSON dumps and check-config output never contain the password."""
    config = parse_config(auth_config_text)
    auth = config.targets[0].auth
    assert auth is not None
    assert auth.secret.get_secret_value() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in repr(auth)
    assert SECRET not in config.model_dump_json()
    assert SECRET not in repr(config.model_dump())
    assert SECRET not in render_effective_config(config)


def test_tls_verify_on_by_default() -> None:
    """tls_verify defaults to true and plaintext AUTH to not allowed."""
    config = parse_config(_dump(_etrn_target(auth={"username": "u", "password": SECRET})))
    target = config.targets[0]
    assert target.tls_verify is True
    assert target.auth is not None
    assert target.auth.allow_plaintext is False
