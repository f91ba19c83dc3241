"""Command-line interface: a thin layer over the library's run functions.

Exit codes follow sysexits.h (see :mod:`mailreleased.outcome` for ``once``
and ``release``). ``run`` fails to start with 78 for an invalid config, 73
when the state directory or control socket cannot be created, 75 when another
daemon is listening on the control socket, and 71 when the metrics address
cannot be bound. ``status`` and ``release`` exit 69 when no daemon responds,
except ``status --check``, which exits 1 for every unhealthy state, as
Docker's HEALTHCHECK expects (it reserves 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailreleased import __version__
from mailreleased.errors import (
    ConfigError,
    ControlSocketInUse,
    ControlSocketUnavailable,
    MailreleasedError,
    MetricsUnavailable,
    StateError,
)
from mailreleased.outcome import EX_CONFIG, EX_SOFTWARE, exit_code_for_run

if TYPE_CHECKING:
    from mailreleased.config.model import Config
    from mailreleased.outcome import SignalRecord

EX_OK = 0
EX_USAGE = 64
EX_IOERR = 74
EX_UNAVAILABLE = 69
EX_OSERR = 71
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_UNHEALTHY = 1

# Environment variables that override config keys after loading, as (section, key).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MAILRELEASED_LOG_FORMAT": ("log", "format"),
    "MAILRELEASED_LOG_LEVEL": ("log", "level"),
    "MAILRELEASED_STATE_DIR": ("state_dir",),
    "MAILRELEASED_CONTROL_SOCKET": ("control", "socket"),
}
CONTROL_SOCKET_ENV = "MAILRELEASED_CONTROL_SOCKET"
STATUS_TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailreleased",
        description="Tell remote mail hosts to release the mail they hold for your domains.",
    )
    parser.add_argument("--version", action="version", version=f"mailreleased {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser("run", help="run the daemon in the foreground until SIGTERM or SIGINT")
    _add_config_option(run)

    once = commands.add_parser("once", help="do one processing run, print the outcomes, exit")
    _add_config_option(once)
    once.add_argument("--target", action="append", metavar="NAME", help="only this target (repeatable)")
    once.add_argument("--force", action="store_true", help="ignore the every-N rule; leave the counters alone")
    once.add_argument("--json", action="store_true", help="print one JSON object per outcome record")

    check = commands.add_parser("check-config", help="validate the config and print it with secrets masked")
    _add_config_option(check)

    demo = commands.add_parser("demo", help="release mail from a built-in loopback provider (ETRN and ATRN)")
    demo.add_argument("--dir", type=Path, metavar="DIR", help="where to write the demo config and Maildir")

    release = commands.add_parser("release", help="ask the running daemon for a processing run now")
    _add_control_options(release)
    release.add_argument("--target", action="append", metavar="NAME", help="only this target (repeatable)")
    release.add_argument("--force", action="store_true", help="ignore the every-N rule; leave the counters alone")
    release.add_argument("--json", action="store_true", help="print one JSON object per outcome record")

    status = commands.add_parser("status", help="show the running daemon's targets, outcomes and next runs")
    _add_control_options(status)
    status.add_argument("--json", action="store_true", help="print the status report as one JSON object")
    status.add_argument(
        "--check", action="store_true",
        help="exit 1 if the daemon is unreachable, missed runs, or a target exceeded alert_after",
    )
    return parser


def _add_control_options(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help=f"control socket (default: ${CONTROL_SOCKET_ENV}, else control.socket from the config file)",
    )


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $MAILRELEASED_CONFIG or /etc/mailreleased/mailreleased.yaml)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except MailreleasedError as exc:
        error(str(exc))
        return _exit_code_for_error(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (such as "| head -1"); that is not an error of ours.
        _silence_stdout()
        return EX_OK
    except OSError as exc:
        # A file or directory the user named is unusable, such as "demo --dir /etc/passwd".
        where = f" {exc.filename!r}" if exc.filename else ""
        error(f"{exc.strerror or exc}{':' if where else ''}{where}")
        return EX_IOERR
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("MAILRELEASED_DEBUG"):
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (set MAILRELEASED_DEBUG=1 for a traceback)")
        return EX_SOFTWARE


# Exit codes of start-up and command failures, most specific class first.
_ERROR_EXIT_CODES: tuple[tuple[type[MailreleasedError], int], ...] = (
    (ConfigError, EX_CONFIG),
    (StateError, EX_CANTCREAT),
    (ControlSocketInUse, EX_TEMPFAIL),
    (ControlSocketUnavailable, EX_CANTCREAT),
    (MetricsUnavailable, EX_OSERR),
)


def _exit_code_for_error(exc: MailreleasedError) -> int:
    for kind, code in _ERROR_EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EX_SOFTWARE


def _silence_stdout() -> None:
    # Python would report the broken pipe again when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from mailreleased.demo import main_demo

        return main_demo(args.dir)
    if args.command in ("release", "status"):
        from mailreleased.cli_control import release_command, status_command

        socket_path = _control_socket(args.socket, args.config)
        if args.command == "release":
            return release_command(socket_path, args)
        return status_command(socket_path, args)
    config_path, config = _load(args.config)
    from mailreleased.log import configure_logging

    configure_logging(config.log.format, config.log.level)
    _register_secrets(config)
    _warn(config)
    if args.command == "check-config":
        return _check_config(config_path, config)
    if args.command == "once":
        return _once(config, args)
    from mailreleased.daemon import serve

    return asyncio.run(serve(config, config_path, loader=lambda: _reload(config_path)))


def _load(option: Path | None) -> tuple[Path, Config]:
    from mailreleased.config.loader import default_config_path, load_config

    path = option or default_config_path()
    return path, apply_env_overrides(load_config(path))


def _reload(path: Path) -> Config:
    """Load the config again for SIGHUP, with the same overrides and secret masking."""
    _path, config = _load(path)
    _register_secrets(config)
    _warn(config)
    return config


def apply_env_overrides(config: Config, environ: Mapping[str, str] | None = None) -> Config:
    """Return ``config`` with the keys in :data:`ENV_OVERRIDES` replaced from the environment."""
    import pydantic

    from mailreleased.config.model import Config

    env = os.environ if environ is None else environ
    for variable, (section, *key) in ENV_OVERRIDES.items():
        value = env.get(variable)
        if not value:
            continue
        if section == "log":
            # Levels and formats are lower-case words; accept DEBUG as well as debug.
            value = value.lower()
        raw: Any = {**getattr(config, section).model_dump(), key[0]: value} if key else value
        annotation = Config.model_fields[section].annotation
        assert annotation is not None
        try:
            validated = pydantic.TypeAdapter(annotation).validate_python(raw)
        except pydantic.ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"]
            raise ConfigError(f"environment variable {variable}={value!r} is invalid: {reason}") from None
        config = config.model_copy(update={section: validated})
    return config


def _control_socket(option: Path | None, config_option: Path | None) -> Path:
    """Find the control socket without validating the whole config.

    ``status`` and ``release`` run outside the service, where password files
    under $CREDENTIALS_DIRECTORY are not readable, so they read only
    ``control.socket`` from the file.
    """
    import yaml

    from mailreleased.config.loader import default_config_path
    from mailreleased.config.model import ControlConfig

    if option is not None:
        return option
    if os.environ.get(CONTROL_SOCKET_ENV):
        return Path(os.environ[CONTROL_SOCKET_ENV])
    path = config_option or default_config_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if config_option is not None:
            raise ConfigError("config file not found; pass -c FILE or --socket PATH", source=str(path)) from None
        return ControlConfig().socket
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file cannot be read: {exc}", source=str(path)) from None
    control = data.get("control") if isinstance(data, dict) else None
    socket_path = control.get("socket") if isinstance(control, dict) else None
    if socket_path is None:
        return ControlConfig().socket
    if not isinstance(socket_path, str):
        raise ConfigError(f"invalid value {socket_path!r}: expected a path", source=str(path), key_path="control.socket")
    return Path(socket_path)


def _register_secrets(config: Config) -> None:
    from mailreleased.log import register_secret

    for target in config.targets:
        if target.auth is not None:
            register_secret(target.auth.secret.get_secret_value(), target.auth.username)


def _warn(config: Config) -> None:
    import structlog

    from mailreleased.config.loader import config_warnings

    log = structlog.get_logger("mailreleased.config")
    for warning in config_warnings(config):
        log.warning("config_warning", message=warning)


def _check_config(path: Path, config: Config) -> int:
    from mailreleased.config.show import render_effective_config

    print(f"# {path}: valid")
    print(render_effective_config(config), end="")
    return 0


def _once(config: Config, args: argparse.Namespace) -> int:
    from mailreleased.progress import TerminalCounter, install_hook
    from mailreleased.runner import run_once

    # A live counter of ATRN messages, only for a person watching a terminal.
    counter = TerminalCounter() if sys.stderr.isatty() else None
    install_hook(counter)
    try:
        records = asyncio.run(run_once(config, targets=args.target, force=args.force))
    except KeyError as exc:
        names = ", ".join(t.name for t in config.targets)
        error(f"unknown target {exc.args[0]!r}; configured targets: {names}")
        return EX_USAGE
    finally:
        if counter is not None:
            counter.finish()
    for record in records:
        if args.json:
            print(json.dumps(record.as_json()), flush=True)
        else:
            print(record_line(record), flush=True)
    return exit_code_for_run([record.outcome for record in records])


def record_line(record: SignalRecord) -> str:
    """Format one outcome record as the one-line text that ``once`` and ``release`` print."""
    parts = [f"{record.target}", f"{record.method}", f"{record.host}:{record.port}"]
    if record.domain:
        parts.append(record.domain)
    parts.append(str(record.outcome))
    if record.code is not None:
        parts.append(str(record.code))
    if record.messages is not None:
        parts.append(f"messages={record.messages} bytes={record.bytes}")
    if record.reply:
        from mailreleased.log import scrub

        parts.append(repr(scrub(record.reply)))
    return " ".join(parts)


def error(message: str) -> None:
    """Print ``message`` as a one-line error on standard error."""
    print(f"mailreleased: error: {message}", file=sys.stderr)
