"""Config loading: valid files, and located one-line errors for bad ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mailreleased.config.durations import format_duration, parse_duration, parse_size
from mailreleased.config.loader import config_warnings, load_config, parse_config
from mailreleased.config.model import Method, TlsMode
from mailreleased.errors import ConfigError

MINIMAL = """\
targets:
  - name: isp
    method: etrn
    host: mx.example.net
    domains: [example.org]
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source="test.yaml")
    return info.value


def test_minimal_config_defaults() -> None:
    """A minimal file gets the documented defaults."""
    config = parse_config(MINIMAL)
    target = config.targets[0]
    assert target.method is Method.ETRN
    assert target.effective_port == 25
    assert target.use_ehlo is True
    assert target.tls is TlsMode.OPPORTUNISTIC
    assert target.tls_verify is True
    assert target.every == 0
    assert config.schedule.interval == 300.0
    assert target.reply_timeout == 300.0


@pytest.mark.parametrize(
    ("method", "port", "ehlo"),
    [("etrn", 25, True), ("qsnd", 25, False), ("custom", 25, False), ("finger", 79, False)],
)
def test_method_default_port_and_ehlo(method: str, port: int, ehlo: bool) -> None:
    """Each method has its own default port and EHLO setting."""
    text = f"targets:\n  - {{name: t, method: {method}, host: h, domains: [d.example]}}\n"
    target = parse_config(text).targets[0]
    assert target.effective_port == port
    assert target.use_ehlo is ehlo


def test_atrn_defaults(tmp_path: Path) -> None:
    """ATRN defaults to port 366 and a 10 minute reply timeout."""
    text = f"""\
    targets:
      - name: odmr
        method: atrn
        host: h
        domains: [example.org]
        auth: {{username: u, password: secret1}}
        delivery: {{type: maildir, path: {tmp_path}/Maildir}}
    """
    target = parse_config(textwrap.dedent(text)).targets[0]
    assert target.effective_port == 366
    assert target.reply_timeout == 600.0


def test_bad_port_is_located() -> None:
    """A port out of range names the file, line, key path and value."""
    error = _error(
        """\
        targets:
          - name: isp
            method: etrn
            host: h
            port: 99999
            domains: [example.org]
        """
    )
    assert error.line == 5
    assert error.key_path == "targets[0].port"
    assert "99999" in str(error)
    assert str(error).startswith("test.yaml:5: targets[0].port:")


def test_unknown_key_suggests_the_right_one() -> None:
    """A misspelt key is rejected with a did-you-mean."""
    error = _error(
        """\
        targets:
          - name: isp
            method: etrn
            host: h
            domians: [example.org]
        """
    )
    assert error.line == 5
    assert "unknown key 'domians'" in str(error)
    assert "did you mean 'domains'" in str(error)


def test_missing_password_file(tmp_path: Path) -> None:
    """A password file that does not exist is a config error, not a crash later."""
    missing = tmp_path / "nope"
    error = _error(
        f"""\
        targets:
          - name: isp
            method: etrn
            host: h
            domains: [example.org]
            auth: {{username: u, password_file: {missing}}}
        """
    )
    assert error.key_path == "targets[0].auth"
    assert str(missing) in str(error)
    assert "not found" in str(error)


def test_malformed_yaml_names_the_line() -> None:
    """Broken indentation gives the line and a hint."""
    error = _error("targets:\n  - name: a\n   method: etrn\n")
    assert error.line == 3
    assert "malformed YAML" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domains", '["example.org\\r\\nDATA"]'),
        ("domains", '["example.org\\nRCPT"]'),
        ("command", '"ETRN x\\r\\nQUIT"'),
        ("helo_name", '"me\\x00"'),
        ("host", '"h\\tx"'),
    ],
    ids=["domain-crlf", "domain-lf", "command-crlf", "helo-nul", "host-tab"],
)
def test_control_characters_rejected(field: str, value: str) -> None:
    """CR, LF and other control bytes can't reach the wire."""
    base = {"domains": "[example.org]", "command": "null", "helo_name": "null", "host": "h"}
    base[field] = value
    text = "targets:\n  - name: t\n    method: etrn\n" + "".join(f"    {k}: {v}\n" for k, v in base.items())
    error = _error(text)
    assert "control character" in str(error)
    assert error.key_path is not None and error.key_path.startswith(f"targets[0].{field}")


def test_atrn_requires_auth() -> None:
    """ATRN without AUTH is invalid."""
    error = _error(
        """\
        targets:
          - name: odmr
            method: atrn
            host: h
            delivery: {type: maildir, path: /tmp/x}
        """
    )
    assert "requires 'auth'" in str(error)


def test_unknown_delivery_type() -> None:
    """An unknown sink type names the choices."""
    error = _error(
        """\
        targets:
          - name: odmr
            method: atrn
            host: h
            auth: {username: u, password: p1234}
            delivery: {type: mbox, path: /tmp/x}
        """
    )
    assert error.key_path == "targets[0].delivery"
    assert "maildir" in str(error)


def test_duplicate_target_names() -> None:
    """Target names must be unique."""
    error = _error(MINIMAL + "  - {name: isp, method: finger, host: h}\n")
    assert "used twice" in str(error)


def test_interval_and_cron_are_exclusive() -> None:
    """Exactly one of interval and cron."""
    error = _error("schedule: {interval: 5m, cron: '*/5 * * * *'}\n" + MINIMAL)
    assert "exactly one" in str(error)
    assert error.line == 1


def test_bad_cron_expression() -> None:
    """A cron expression is checked at load time."""
    error = _error("schedule: {cron: '61 * * * *'}\n" + MINIMAL)
    assert "cron" in str(error)


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords come from a file (trailing newline stripped) or the environment."""
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-file\n")
    monkeypatch.setenv("MR_TEST_PW", "s3cret-env")
    text = f"""\
    targets:
      - {{name: a, method: etrn, host: h, domains: [x.example], auth: {{username: u, password_file: {secret_file}}}}}
      - {{name: b, method: etrn, host: h, domains: [x.example], auth: {{username: u, password_env: MR_TEST_PW}}}}
    """
    config = parse_config(textwrap.dedent(text))
    assert config.targets[0].auth is not None
    assert config.targets[0].auth.secret.get_secret_value() == "s3cret-file"
    assert config.targets[1].auth is not None
    assert config.targets[1].auth.secret.get_secret_value() == "s3cret-env"
    assert "s3cret" not in repr(config)


def test_credentials_directory_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${CREDENTIALS_DIRECTORY} in password_file follows systemd's LoadCredential."""
    (tmp_path / "isp").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    text = (
        "targets:\n  - {name: a, method: etrn, host: h, domains: [x.example],"
        " auth: {username: u, password_file: '${CREDENTIALS_DIRECTORY}/isp'}}\n"
    )
    auth = parse_config(text).targets[0].auth
    assert auth is not None
    assert auth.secret.get_secret_value() == "from-systemd"


def test_inline_password_warns() -> None:
    """An inline password is allowed but warned about."""
    text = "targets:\n  - {name: a, method: etrn, host: h, domains: [x.example], auth: {username: u, password: pw12}}\n"
    warnings = config_warnings(parse_config(text))
    assert any("inline" in warning for warning in warnings)


def test_load_config_missing_file(tmp_path: Path) -> None:
    """A missing config file gives an error with the fix."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "not found" in str(info.value)
    assert "-c FILE" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), (30, 30.0), ("1.5m", 90.0)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Durations accept numbers and unit suffixes."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "-1s", "", "m", True])
def test_parse_duration_rejects(text: object) -> None:
    """Bad durations raise ValueError naming the forms."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_size_and_format() -> None:
    """Sizes use binary units; durations format back compactly."""
    assert parse_size("25M") == 25 * 1024 * 1024
    assert parse_size(1000) == 1000
    assert format_duration(300) == "5m"
    assert format_duration(90) == "90s"


def test_unquoted_tls_off() -> None:
    """YAML reads 'tls: off' as false; it still means the mode 'off'."""
    config = parse_config(MINIMAL + "    tls: off\n")
    assert config.targets[0].tls is TlsMode.OFF


def test_tls_on_is_rejected() -> None:
    """'tls: on' (true in YAML) names the real choices."""
    error = _error(MINIMAL + "    tls: on\n")
    assert "starttls" in str(error)
    assert error.key_path == "targets[0].tls"


def test_duplicate_key_rejected() -> None:
    """A key written twice names both lines instead of keeping the last silently."""
    error = _error(MINIMAL + "    host: other.example.net\n")
    assert "appears twice" in str(error)
    assert error.line == 6
    assert error.key_path == "targets[0].host"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    port: true\n", "targets[0].port"),
        ("    every: true\n", "targets[0].every"),
        ("    timeouts: {reply: 0}\n", "targets[0].timeouts.reply"),
        ("    auth: {username: u, password: ''}\n", "targets[0].auth"),
    ],
    ids=["port-bool", "every-bool", "zero-timeout", "empty-password"],
)
def test_doubtful_values_rejected(line: str, expected: str) -> None:
    """Values that YAML or lax typing would quietly turn into nonsense are rejected."""
    error = _error(MINIMAL + line)
    assert error.key_path == expected


def test_overlong_domain_rejected() -> None:
    """A domain longer than a domain name can be is rejected."""
    text = "targets:\n  - {name: a, method: etrn, host: h, domains: [" + "a" * 300 + ".example]}\n"
    error = _error(text)
    assert "at most" in str(error)


def test_metrics_listen_checked() -> None:
    """A bad metrics.listen is a located config error, caught by check-config too."""
    error = _error("metrics: {listen: nonsense}\n" + MINIMAL)
    assert error.key_path == "metrics.listen"
    assert error.line == 1


def test_huge_config_file_rejected(tmp_path: Path) -> None:
    """A file far larger than any config is refused before parsing."""
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="more than"):
        load_config(big)
