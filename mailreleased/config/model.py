"""Typed, frozen configuration objects, validated once before any network I/O.

The key names are a user-facing contract: documentation, users' files and
outside test harnesses depend on them.
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from mailreleased.config.durations import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

# Control bytes in anything that goes on the wire would let a config value
# inject extra protocol commands (Exim's CVE-2025-26794 came through ETRN).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_DOMAIN_ARG = re.compile(r"^[^\s,]+$")
# RFC 1035 limits a domain name to 255 octets; one leading '#' or '@' option character may come on top.
MAX_DOMAIN_LENGTH = 256

DEFAULT_PORTS = {"etrn": 25, "qsnd": 25, "custom": 25, "atrn": 366, "finger": 79}
EHLO_DEFAULTS = {"etrn": True, "atrn": True, "qsnd": False, "custom": False}

# RFC 5321 section 4.5.3.2 minimum client timeouts; RFC 2645 requires at least 10 minutes for ATRN.
DEFAULT_GREETING_TIMEOUT = 300.0
DEFAULT_REPLY_TIMEOUT = 300.0
ATRN_REPLY_TIMEOUT = 600.0


def reject_control_chars(value: str, what: str) -> str:
    """Raise ValueError if ``value`` contains CR, LF or another control character."""
    if match := _CONTROL_CHARS.search(value):
        raise ValueError(
            f"{what} {value!r} contains the control character {match.group()!r}; "
            "remove CR, LF and other control characters"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class Method(enum.StrEnum):
    """The release signal a target receives."""

    ETRN = "etrn"
    ATRN = "atrn"
    QSND = "qsnd"
    FINGER = "finger"
    CONNECT = "connect"
    CUSTOM = "custom"


class TlsMode(enum.StrEnum):
    """Whether and how the SMTP session is encrypted."""

    OFF = "off"
    OPPORTUNISTIC = "opportunistic"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


class Schedule(_Model):
    """When processing runs happen: a fixed interval or a cron expression."""

    interval: Duration | None = Field(
        default=None,
        description=(
            "Time between processing runs, such as 5m. Set exactly one of interval or cron; at least 1s."
        ),
    )
    cron: str | None = Field(
        default=None,
        description=(
            "Five-field cron expression (minute hour day month day_of_week), evaluated in UTC. Set "
            "exactly one of interval or cron."
        ),
    )
    jitter: Duration = Field(
        default=0.0,
        description=(
            "Random delay of up to this long (whole seconds) added to each run, so that many clients do "
            "not connect at the same moment."
        ),
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("set exactly one of 'interval' (such as '5m') or 'cron' (such as '*/5 * * * *')")
        if self.interval is not None and self.interval < 1:
            raise ValueError(f"interval {self.interval}s is too short; use at least '1s'")
        if self.cron is not None:
            _check_cron(self.cron)
        return self


def _check_cron(expression: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    if len(expression.split()) != 5:
        raise ValueError(f"cron {expression!r} must have 5 fields: minute hour day month day_of_week")
    try:
        CronTrigger.from_crontab(expression)
    except ValueError as exc:
        raise ValueError(f"invalid cron {expression!r}: {exc}") from None


class LogConfig(_Model):
    """Log format and level."""

    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description=(
            "json writes one JSON object per line, console writes readable lines, auto picks console on a "
            "terminal and json otherwise. Logs go to standard error."
        ),
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description=(
            "Lowest level logged. debug adds the wire transcript of every "
            "SMTP session, with AUTH payloads masked."
        ),
    )


class Timeouts(_Model):
    """Per-target network timeouts, in seconds. ``reply`` defaults by method."""

    connect: Duration = Field(
        default=30.0,
        description="Maximum time to open the TCP connection, and to complete a TLS handshake.",
    )
    greeting: Duration = Field(
        default=DEFAULT_GREETING_TIMEOUT,
        description=(
            "Maximum wait for the complete server greeting (RFC 5321 section 4.5.3.2 suggests 5 minutes)."
        ),
    )
    reply: Duration | None = Field(
        default=None,
        description=(
            "Maximum wait for each reply to a command. Unset means 10m for atrn (RFC 2645 asks for at "
            "least 10 minutes) and 5m for the other methods."
        ),
    )

    @field_validator("connect", "greeting", "reply")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"invalid timeout {value}: it must be above zero, such as '30s'")
        return value


class RetryPolicy(_Model):
    """Retries of transient outcomes within one processing run."""

    attempts: int = Field(
        default=1, ge=1, le=20,
        description=(
            "Attempts per processing run, the first included, so 1 means no retry. Only "
            "transient outcomes are retried: tempfail, timeout, connect_failed, partial, "
            "and tls_failed when tls is opportunistic."
        ),
    )
    backoff: Duration = Field(
        default=30.0,
        description="Wait before the first retry; each later wait doubles.",
    )
    max_backoff: Duration = Field(default=600.0, description="Upper bound for the wait between two attempts.")
    jitter: bool = Field(
        default=True,
        description="Shorten each wait to a random value between half of it and all of it.",
    )


class AuthConfig(_Model):
    """ESMTP AUTH credentials. The password is read once, at load time."""

    username: str = Field(min_length=1, description="SASL user name.")
    password_file: Path | None = Field(
        default=None,
        description=(
            "File that contains the password (trailing line breaks are dropped), read once when the "
            "config is loaded. ${CREDENTIALS_DIRECTORY} and ~ are expanded. Set exactly one of "
            "password_file, password_env or password."
        ),
    )
    password_env: str | None = Field(
        default=None,
        description=(
            "Name of the environment variable that contains the password, "
            "read once when the config is loaded."
        ),
    )
    password: SecretStr | None = Field(
        default=None,
        description=(
            "The password itself. check-config masks it, but loading warns because it sits in the config "
            "file; prefer password_file."
        ),
    )
    mechanisms: tuple[Literal["CRAM-MD5", "PLAIN", "LOGIN"], ...] = Field(
        default=("CRAM-MD5", "PLAIN", "LOGIN"),
        description=(
            "SASL mechanisms to try, in this order, among those the server "
            "offers. A 504 reply moves on to the next one."
        ),
    )
    allow_plaintext: bool = Field(
        default=False,
        description=(
            "Allow PLAIN and LOGIN on an unencrypted connection. Even when true, they are never sent on "
            "the cleartext connection that replaces a failed STARTTLS."
        ),
    )

    _secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @field_validator("mechanisms", mode="before")
    @classmethod
    def _upper_mechanisms(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(item.upper() if isinstance(item, str) else item for item in value)
        return value

    @field_validator("username")
    @classmethod
    def _username_clean(cls, value: str) -> str:
        return reject_control_chars(value, "username")

    @model_validator(mode="after")
    def _load_secret(self) -> AuthConfig:
        sources = [s for s in (self.password_file, self.password_env, self.password) if s is not None]
        if len(sources) != 1:
            raise ValueError("set exactly one of 'password_file', 'password_env' or 'password'")
        if not self.mechanisms:
            raise ValueError("'mechanisms' is empty; list at least one of CRAM-MD5, PLAIN, LOGIN")
        self._secret = SecretStr(self._read_secret())
        return self

    def _read_secret(self) -> str:
        if self.password is not None:
            if not self.password.get_secret_value():
                raise ValueError("'password' is empty; set the password or use 'password_file'")
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(
                    f"environment variable {self.password_env!r} named by 'password_env' is not set; "
                    "export it or use 'password_file'"
                )
            return value
        assert self.password_file is not None
        path = _expand_credentials_dir(self.password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"password file {str(path)!r} not found; create it or fix 'password_file'") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ValueError(f"password file {str(path)!r} cannot be read ({reason})") from None
        secret = text.rstrip("\r\n")
        if not secret:
            raise ValueError(f"password file {str(path)!r} is empty")
        return secret

    @property
    def secret(self) -> SecretStr:
        """The password, resolved from whichever source was configured."""
        return self._secret


def _expand_credentials_dir(path: Path) -> Path:
    """Expand ``${CREDENTIALS_DIRECTORY}`` (systemd LoadCredential) and ``~`` in a path."""
    text = str(path)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials is None and "CREDENTIALS_DIRECTORY" in text:
        raise ValueError(
            f"password_file {text!r} uses $CREDENTIALS_DIRECTORY, which systemd sets only for a unit with "
            "LoadCredential=; outside systemd, export CREDENTIALS_DIRECTORY or give a plain path"
        )
    if credentials is not None:
        text = text.replace("${CREDENTIALS_DIRECTORY}", credentials).replace("$CREDENTIALS_DIRECTORY", credentials)
    return Path(text).expanduser()


class MaildirDelivery(_Model):
    """Write each message into a Maildir (tmp, fdatasync, rename into new, fsync the directory)."""

    type: Literal["maildir"] = Field(description="Selects the Maildir sink.")
    path: str = Field(
        min_length=1,
        description=(
            "The Maildir directory to deliver into. It may contain {recipient}, {local} and {domain}; "
            "then each recipient gets its own copy in its own Maildir."
        ),
    )
    fsync: bool = Field(
        default=True,
        description=(
            "Flush each message file (fdatasync) and the new directory (fsync) to disk before the message "
            "is acknowledged. false is faster, but a crash can lose acknowledged mail."
        ),
    )


class SmtpDelivery(_Model):
    """Relay each message to a local MTA over SMTP, keeping the envelope."""

    type: Literal["smtp"] = Field(description="Selects the SMTP relay sink.")
    host: str = Field(default="127.0.0.1", description="Host of the local MTA.")
    port: int = Field(default=25, strict=True, ge=1, le=65535, description="Port of the local MTA.")
    helo_name: str | None = Field(
        default=None,
        description="Name sent in EHLO to the local MTA. Unset means this machine's host name.",
    )
    timeout: Duration = Field(default=300.0, description="Maximum wait for each reply from the local MTA.")


class LmtpDelivery(_Model):
    """Hand each message to an LMTP server on a unix socket ``path`` or ``host``:``port``."""

    type: Literal["lmtp"] = Field(description="Selects the LMTP sink.")
    path: str | None = Field(
        default=None,
        description=(
            "Unix socket of the LMTP server, such as /run/dovecot/lmtp. "
            "Set either path, or host and port."
        ),
    )
    host: str | None = Field(default=None, description="Host of a TCP LMTP server; needs port.")
    port: int | None = Field(default=None, strict=True, ge=1, le=65535, description="Port of a TCP LMTP server.")
    timeout: Duration = Field(default=300.0, description="Maximum wait for each reply from the LMTP server.")

    @model_validator(mode="after")
    def _one_address(self) -> LmtpDelivery:
        if (self.path is None) == (self.host is None):
            raise ValueError("set either 'path' (a unix socket) or 'host' and 'port'")
        if self.host is not None and self.port is None:
            raise ValueError("'port' is required with 'host'")
        return self


class CommandDelivery(_Model):
    """Run a program (no shell) per message with the message on standard input."""

    type: Literal["command"] = Field(description="Selects the command sink.")
    argv: tuple[str, ...] = Field(
        min_length=1,
        description=(
            "Program and arguments, run directly without a shell, once per message with the message on "
            "standard input. {sender} is replaced by the envelope sender and an item {recipients} by one "
            "item per recipient. Exit status 0 means delivered, 75 a temporary failure, anything else a "
            "permanent one."
        ),
    )
    timeout: Duration = Field(default=300.0, description="Maximum run time of the program for one message.")

    @field_validator("argv")
    @classmethod
    def _argv_clean(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            reject_control_chars(item, "argv item")
        return value


Delivery = Annotated[
    MaildirDelivery | SmtpDelivery | LmtpDelivery | CommandDelivery,
    Field(discriminator="type"),
]


class ReceiverLimits(_Model):
    """Limits of the SMTP server that takes released mail after the ATRN reversal."""

    max_message_size: Size = Field(
        default=50 * 1024 * 1024,
        description="Largest message accepted, in bytes or with a binary unit such as 50M.",
    )
    max_recipients: int = Field(default=1000, ge=1, description="Most recipients accepted for one message.")
    command_timeout: Duration = Field(
        default=300.0,
        description="Maximum wait for the provider's next command, and for each piece of message data.",
    )
    session_timeout: Duration = Field(
        default=4 * 3600.0,
        description="Maximum length of one reversed session.",
    )
    max_line_length: int = Field(default=4096, ge=512, description="Maximum length of a command line, in bytes.")
    max_commands: int = Field(
        default=100_000, ge=10,
        description="Most commands accepted in one reversed session.",
    )
    max_errors: int = Field(
        default=20, ge=1,
        description="Error replies allowed in one reversed session before the receiver ends it.",
    )


class Target(_Model):
    """One remote host to signal, and how."""

    name: str = Field(
        description=(
            "Unique name used in logs, metrics, the state file and --target. "
            "Letters, digits, '.', '_' and '-' only."
        ),
    )
    method: Method = Field(description="The release signal sent to the host.")
    host: str | None = Field(
        default=None,
        description="Host name or IP address to connect to. Set exactly one of host or hosts.",
    )
    hosts: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "Hosts to try in this order, instead of host. The next host is tried only when connecting to "
            "the previous one failed."
        ),
    )
    port: int | None = Field(
        default=None, strict=True, ge=1, le=65535,
        description=(
            "TCP port. Unset means 25 for etrn, qsnd and custom, 366 for atrn and 79 for finger; connect "
            "has no default and needs a port."
        ),
    )
    domains: tuple[str, ...] = Field(
        default=(),
        description=(
            "Domains to release, each sent verbatim (so #queue and @domain forms pass through). For atrn "
            "they also limit the recipients the receiver accepts; an empty list accepts every recipient."
        ),
    )
    command: str | None = Field(
        default=None,
        description=(
            "Text sent instead of the built-in command. For etrn, qsnd and custom: the line sent once the "
            "session is ready, once per domain if it contains {domain}; an empty string sends nothing. "
            "For finger: the query. For connect: a line sent right after connecting."
        ),
    )
    every: int = Field(
        default=0, strict=True, ge=0,
        description=(
            "Signal only on every Nth processing run (runs 1, N+1, 2N+1 "
            "and so on); 0 and 1 mean every run."
        ),
    )
    ehlo: bool | None = Field(
        default=None,
        description=(
            "Send EHLO before the command. Unset means true for etrn and atrn and false for the others. "
            "tls: starttls and auth send EHLO regardless. Without EHLO, opportunistic STARTTLS cannot "
            "happen."
        ),
    )
    helo_name: str | None = Field(
        default=None,
        description=(
            "Name sent in EHLO or HELO. Unset means this machine's FQDN, or an address literal such as "
            "[192.0.2.1] when the name has no dot."
        ),
    )
    tls: TlsMode = Field(
        default=TlsMode.OPPORTUNISTIC,
        description=(
            "off never encrypts; opportunistic uses STARTTLS when offered and reconnects in cleartext if "
            "it fails; starttls requires STARTTLS; implicit starts TLS on connect. An unquoted off, which "
            "YAML reads as false, means off too."
        ),
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and its host name.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM file of CA certificates trusted in addition to the system store.",
    )
    auth: AuthConfig | None = Field(default=None, description="ESMTP AUTH credentials; required for atrn.")
    timeouts: Timeouts = Field(default=Timeouts(), description="Network timeouts of this target.")
    schedule: Schedule | None = Field(
        default=None,
        description="A schedule for this target alone, instead of the global schedule.",
    )
    hold: Duration = Field(
        default=0.0,
        description="For finger and connect: how long to keep the connection open before closing it.",
    )
    delivery: Delivery | None = Field(
        default=None,
        description=(
            "Where mail received after the ATRN reversal goes; required for "
            "atrn and not allowed for other methods."
        ),
    )
    receiver: ReceiverLimits = Field(
        default=ReceiverLimits(),
        description="Limits of the SMTP server that takes mail after the ATRN reversal.",
    )
    max_sessions: int = Field(
        default=50, ge=1,
        description=(
            "Most ATRN sessions in one processing run. After a session that delivered mail, mailreleased "
            "connects again and repeats ATRN, until the provider has no more mail or this limit is "
            "reached."
        ),
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="A retry policy for this target alone, instead of the global retry.",
    )
    alert_after: Duration | None = Field(
        default=None,
        description=(
            "How long this target may go without a successful signal before status --check reports it, "
            "counted from the daemon start if it never succeeded. Unset means never."
        ),
    )

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_off_from_yaml(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted "off" as false; the user meant the mode.
        if value is False:
            return TlsMode.OFF
        if value is True:
            raise ValueError("'tls: on' is ambiguous; use 'starttls', 'implicit' or 'opportunistic'")
        return value

    @field_validator("name")
    @classmethod
    def _name_pattern(cls, value: str) -> str:
        if not _TARGET_NAME.match(value):
            raise ValueError(f"target name {value!r} may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("domains", mode="before")
    @classmethod
    def _domains_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"'domains' must be a list, such as [{value}]")
        return value

    @field_validator("domains")
    @classmethod
    def _domains_clean(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            reject_control_chars(domain, "domain")
            if not _DOMAIN_ARG.match(domain):
                raise ValueError(f"domain {domain!r} must be one word with no spaces or commas")
            if len(domain) > MAX_DOMAIN_LENGTH:
                raise ValueError(
                    f"domain {domain[:40]!r}... is {len(domain)} characters long; "
                    f"a domain name has at most {MAX_DOMAIN_LENGTH} (RFC 1035)"
                )
        return value

    @field_validator("command", "helo_name", "host")
    @classmethod
    def _wire_text_clean(cls, value: str | None) -> str | None:
        if value is not None:
            reject_control_chars(value, "value")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts_clean(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("'hosts' is empty; list at least one host")
            for host in value:
                reject_control_chars(host, "host")
        return value

    @model_validator(mode="after")
    def _method_rules(self) -> Target:
        if (self.host is None) == (self.hosts is None):
            raise ValueError("set exactly one of 'host' or 'hosts' (an ordered failover list)")
        if self.method is Method.CONNECT and self.port is None:
            raise ValueError("method 'connect' has no default port; set 'port'")
        if self.method is Method.ATRN:
            if self.auth is None:
                raise ValueError("method 'atrn' requires 'auth' (RFC 2645 allows ATRN only after AUTH)")
            if self.delivery is None:
                raise ValueError(
                    "method 'atrn' requires 'delivery', such as {type: maildir, path: /var/mail/Maildir}"
                )
        elif self.delivery is not None:
            raise ValueError(f"'delivery' is used only by method 'atrn', not {str(self.method)!r}")
        if self.method in (Method.ETRN, Method.QSND) and not self.domains and self.command is None:
            raise ValueError(f"method {str(self.method)!r} needs 'domains' (or a 'command')")
        return self

    @property
    def effective_port(self) -> int:
        """The configured port, or the method's default."""
        if self.port is not None:
            return self.port
        return DEFAULT_PORTS[str(self.method)]

    @property
    def effective_hosts(self) -> tuple[str, ...]:
        """Hosts to try in order: ``hosts``, or the single ``host``."""
        if self.hosts is not None:
            return self.hosts
        assert self.host is not None
        return (self.host,)

    @property
    def use_ehlo(self) -> bool:
        """Whether to send EHLO before the release command."""
        if self.ehlo is not None:
            return self.ehlo
        return EHLO_DEFAULTS.get(str(self.method), False)

    @property
    def reply_timeout(self) -> float:
        """Seconds to wait for each reply; ATRN defaults to RFC 2645's 10 minutes."""
        if self.timeouts.reply is not None:
            return self.timeouts.reply
        return ATRN_REPLY_TIMEOUT if self.method is Method.ATRN else DEFAULT_REPLY_TIMEOUT


class ControlConfig(_Model):
    """The local control socket of a running daemon."""

    socket: Path = Field(
        default=Path("/run/mailreleased/control.sock"),
        description="Unix socket on which a running daemon accepts control requests.",
    )


class MetricsConfig(_Model):
    """The optional Prometheus endpoint."""

    listen: str = Field(default="127.0.0.1:9466", description="HOST:PORT of the Prometheus endpoint.")

    @field_validator("listen")
    @classmethod
    def _listen_form(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"invalid value {value!r}: use host:port, such as '127.0.0.1:9466' or '[::1]:9466'")
        return value


class Config(_Model):
    """A whole mailreleased configuration file."""

    schedule: Schedule = Field(
        default=Schedule(interval=300.0),
        description="When processing runs happen, for targets without their own schedule.",
    )
    state_dir: Path = Field(
        default=Path("/var/lib/mailreleased"),
        description=(
            "Directory of state.json, which keeps run counters and last outcomes. It must be writable."
        ),
    )
    log: LogConfig = Field(default=LogConfig(), description="Log format and level.")
    targets: tuple[Target, ...] = Field(min_length=1, description="The remote hosts to signal; at least one.")
    control: ControlConfig = Field(default=ControlConfig(), description="The control socket of the daemon.")
    metrics: MetricsConfig | None = Field(
        default=None,
        description=(
            "The Prometheus endpoint; absent means no endpoint. Needs the metrics extra (pip install "
            "'mailreleased[metrics]')."
        ),
    )
    retry: RetryPolicy = Field(
        default=RetryPolicy(),
        description="Retry policy for targets without their own retry.",
    )
    shutdown_grace: Duration = Field(
        default=30.0,
        description="On SIGTERM or SIGINT, how long runs in progress may go on before they are cancelled.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice; names must be unique")
            seen.add(target.name)
        return self

    def target(self, name: str) -> Target:
        """Return the target called ``name``; raise KeyError if there is none."""
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def retry_for(self, target: Target) -> RetryPolicy:
        """Return the target's own retry policy, or the global one."""
        return target.retry if target.retry is not None else self.retry
