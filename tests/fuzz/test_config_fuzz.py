"""Fuzz the config loader: any document gives a Config or a located ConfigError, nothing else.

Documents are built around the real schema keys (taken from the model
classes, so a new key is fuzzed without editing this file) with values of
random type, then dumped as YAML, sometimes cut or sprinkled with random
characters. Plain random text is fuzzed too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import string
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from mailreleased.config.loader import parse_config
from mailreleased.config.model import (
    AuthConfig,
    CommandDelivery,
    Config,
    LmtpDelivery,
    MaildirDelivery,
    ReceiverLimits,
    RetryPolicy,
    Schedule,
    SmtpDelivery,
    Target,
    Timeouts,
)
from mailreleased.errors import ConfigError

from .profiles import fuzz_settings

FULL_EXAMPLES = 10_000

# Prepared password files; the fuzzer picks among them instead of random paths,
# because a random path could name a device such as /dev/zero.
_SECRETS_DIR = Path(tempfile.mkdtemp(prefix="mailreleased-fuzz-secrets-"))
atexit.register(shutil.rmtree, _SECRETS_DIR, ignore_errors=True)


def _prepare_secret_files() -> list[str]:
    files = {"good": b"s3cret\n", "empty": b"", "binary": b"\xff\xfe\x00", "crlf": b"pw\r\n"}
    for name, data in files.items():
        (_SECRETS_DIR / name).write_bytes(data)
    (_SECRETS_DIR / "directory").mkdir(exist_ok=True)
    return [str(_SECRETS_DIR / name) for name in [*files, "directory", "missing"]]


SECRET_PATHS = _prepare_secret_files()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["5m", "90s", "1h", "0", "-1s", "1e9", "25M", "*/5 * * * *", "example.org", "etrn", "atrn"]),
    st.text(alphabet="\r\n\t\x00\x1b\x7f :#@,-[]{}'\"", max_size=10),
)

values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)

# Values that pass or nearly pass validation for each well-known key, so the
# fuzzer reaches the deeper validators instead of failing on the first type check.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["isp", "odmr", "a.b_c-d", "bad name", "", "x" * 300]),
    "method": st.sampled_from(["etrn", "atrn", "qsnd", "finger", "connect", "custom", "ETRN", "smtp"]),
    "host": st.sampled_from(["127.0.0.1", "::1", "mx.example.net", "mx\r\nRCPT", "", "h.invalid"]),
    "hosts": st.lists(st.sampled_from(["127.0.0.1", "::1", "a\nb", ""]), max_size=3),
    "port": st.one_of(st.integers(-2, 70_000), st.sampled_from(["25", "smtp"])),
    "domains": st.one_of(
        st.lists(st.sampled_from(["example.org", "@example.org", "#queue", "a b", "x\r\nQUIT", "a,b", ""]), max_size=3),
        st.text(max_size=10),
    ),
    "command": st.sampled_from(["QSND example.org", "ETRN {domain}", "X\r\nY", "", "ok"]),
    "every": st.integers(-3, 10),
    "ehlo": st.sampled_from([True, False, None, "yes", 1]),
    "helo_name": st.sampled_from(["client.example", "[127.0.0.1]", "a\rb", "", "x" * 600]),
    "tls": st.sampled_from(["off", "opportunistic", "starttls", "implicit", "on", True]),
    "tls_verify": st.sampled_from([True, False, "no", 0]),
    "tls_ca_file": st.sampled_from(["/nonexistent/ca.pem", "", 3]),
    "interval": st.sampled_from(["5m", "0s", "0.5s", 1, -1, "1x", "1e3s"]),
    "cron": st.sampled_from(["*/5 * * * *", "* * * *", "61 * * * *", "a b c d e", "* * 31 2 *", "\x00 * * * *"]),
    "jitter": st.sampled_from(["0s", "10s", -1, "x"]),
    "username": st.sampled_from(["u", "", "a\nb", "user@example.org"]),
    "password": st.sampled_from(["secret", "", "p\r\nw", 12345]),
    "password_env": st.sampled_from(["MAILRELEASED_FUZZ_PW_SET", "MAILRELEASED_FUZZ_PW_UNSET", ""]),
    "password_file": st.sampled_from(SECRET_PATHS),
    "mechanisms": st.lists(st.sampled_from(["PLAIN", "login", "CRAM-MD5", "GSSAPI", 1]), max_size=4),
    "type": st.sampled_from(["maildir", "smtp", "lmtp", "command", "mbox"]),
    "path": st.sampled_from(["/var/mail/Maildir", "", "relative/dir", "/run/dovecot/lmtp"]),
    "argv": st.lists(st.sampled_from(["/usr/sbin/sendmail", "-i", "{sender}", "a\nb", ""]), max_size=4),
    "max_message_size": st.sampled_from(["50M", "1G", "0", "-5", "10 parsecs", 100]),
    "attempts": st.integers(-1, 30),
    "level": st.sampled_from(["debug", "info", "trace"]),
    "format": st.sampled_from(["auto", "json", "xml"]),
    "state_dir": st.sampled_from(["/var/lib/mailreleased", "", "relative"]),
    "socket": st.sampled_from(["/run/mailreleased/control.sock", ""]),
    "listen": st.sampled_from(["127.0.0.1:9466", "nope"]),
}

NESTED: dict[str, list[type]] = {
    "auth": [AuthConfig],
    "timeouts": [Timeouts],
    "schedule": [Schedule],
    "receiver": [ReceiverLimits],
    "retry": [RetryPolicy],
    "delivery": [MaildirDelivery, SmtpDelivery, LmtpDelivery, CommandDelivery],
    "log": [],
    "control": [],
    "metrics": [],
}


def value_for(key: str, depth: int) -> st.SearchStrategy[Any]:
    """Return a strategy for the value of ``key``: plausible, nested, or random."""
    options: list[st.SearchStrategy[Any]] = [values]
    if key in PLAUSIBLE:
        options.append(PLAUSIBLE[key])
    if key in NESTED and depth < 3:
        for model in NESTED[key] or [_model_for_top_level(key)]:
            options.append(mapping_for(model, depth + 1))
    return st.one_of(options)


def _model_for_top_level(key: str) -> type:
    annotation = Config.model_fields[key].annotation
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
            return candidate
    raise KeyError(key)


@st.composite
def mapping_for(draw: st.DrawFn, model: type, depth: int = 0) -> dict[str, Any]:
    """Draw a mapping whose keys are mostly real fields of ``model``, plus some strangers."""
    fields = list(model.model_fields)  # type: ignore[attr-defined]
    keys = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    result: dict[str, Any] = {key: draw(value_for(key, depth)) for key in keys}
    if model in (MaildirDelivery, SmtpDelivery, LmtpDelivery, CommandDelivery) and draw(st.booleans()):
        result["type"] = typing.get_args(model.model_fields["type"].annotation)[0]
    for stranger in draw(st.lists(st.text(min_size=1, max_size=12), max_size=2)):
        result.setdefault(stranger, draw(values))
    return result


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a top-level config mapping with a 'targets' list most of the time."""
    document = draw(mapping_for(Config))
    if draw(st.integers(0, 9)) > 0:
        document["targets"] = draw(st.lists(mapping_for(Target), max_size=3))
    return document


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """Draw YAML text: a dumped document, possibly mangled, or random text."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.text(max_size=300))
    text = yaml.safe_dump(draw(config_documents()), allow_unicode=True, sort_keys=False)
    if choice == 1 and text:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    elif choice == 2:
        for _ in range(draw(st.integers(1, 5))):
            position = draw(st.integers(0, len(text)))
            noise = draw(st.text(alphabet=string.printable + "\x00\x85\u2028", max_size=4))
            text = text[:position] + noise + text[position:]
    return text


def check_document(text: str) -> None:
    """Parse ``text``; fail on anything other than a Config or a located ConfigError."""
    try:
        config = parse_config(text, source="fuzz.yaml")
    except ConfigError as error:
        assert error.source == "fuzz.yaml"
        # Only a YAML syntax error may lack a location, when PyYAML reports none.
        located = error.line is not None or error.key_path is not None
        assert located or error.message.startswith("malformed YAML"), f"error without a location: {error}"
        assert "\n" not in str(error), f"error spans lines: {error!r}"
        assert str(error).startswith("fuzz.yaml"), str(error)
        return
    assert isinstance(config, Config)
    for target in config.targets:
        assert "\n" not in target.name
        assert all("\r" not in d and "\n" not in d for d in target.domains)


@pytest.fixture(autouse=True)
def password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Provide one set and one unset variable for 'password_env'."""
    monkeypatch.setenv("MAILRELEASED_FUZZ_PW_SET", "from-env")
    monkeypatch.delenv("MAILRELEASED_FUZZ_PW_UNSET", raising=False)


@fuzz_settings(FULL_EXAMPLES)
@given(config_texts())
@example("targets:\n  - {name: t, method: etrn, host: h, domains: [d], schedule: {cron: '* * 31 2 *'}}\n")
@example("schedule: {cron: 'a b c d e'}\ntargets: [{name: t, method: etrn, host: h, domains: [d]}]\n")
@example("targets:\n  - {name: t, method: etrn, host: h, domains: [d]}\n  - {name: t, method: etrn, host: h, domains: [d]}\n")
@example("targets: [{name: t, method: atrn, host: h, auth: {username: u, password: p}, delivery: {type: mbox}}]\n")
@example("- a\n- b\n")
@example("\x00")
@example('"\\U100010000\x1F": null\n')
@example('control:\n  "0\\U800010000": null\n')
@example("[" * 5000)
@example("targets: &a [*a]\n")
@example("a: &a [*a]\n")
@example("? \"\\n\"\n: 1\n")
def test_config_fuzz_only_config_error(text: str) -> None:
    """Every document yields a Config or a ConfigError naming file and line or key path."""
    check_document(text)
