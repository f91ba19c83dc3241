"""Command-line interface: a thin layer over the library's run functions.

Exit codes follow sysexits.h; see :mod:`mailreleased.outcome`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailreleased import __version__
from mailreleased.errors import ConfigError, MailreleasedError, StateError
from mailreleased.outcome import EX_CONFIG, EX_SOFTWARE, exit_code_for_run

if TYPE_CHECKING:
    from mailreleased.config.model import Config
    from mailreleased.outcome import SignalRecord

EX_USAGE = 64
EX_CANTCREAT = 73


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
    return parser


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
    except ConfigError as exc:
        _error(str(exc))
        return EX_CONFIG
    except StateError as exc:
        _error(str(exc))
        return EX_CANTCREAT
    except MailreleasedError as exc:
        _error(str(exc))
        return EX_SOFTWARE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("MAILRELEASED_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (set MAILRELEASED_DEBUG=1 for a traceback)")
        return EX_SOFTWARE


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from mailreleased.demo import main_demo

        return main_demo(args.dir)
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

    return asyncio.run(serve(config, config_path))


def _load(option: Path | None) -> tuple[Path, Config]:
    from mailreleased.config.loader import default_config_path, load_config

    path = option or default_config_path()
    return path, load_config(path)


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
    from mailreleased.runner import run_once

    try:
        records = asyncio.run(run_once(config, targets=args.target, force=args.force))
    except KeyError as exc:
        names = ", ".join(t.name for t in config.targets)
        _error(f"unknown target {exc.args[0]!r}; configured targets: {names}")
        return EX_USAGE
    for record in records:
        if args.json:
            print(json.dumps(record.as_json()), flush=True)
        else:
            print(_record_line(record), flush=True)
    return exit_code_for_run([record.outcome for record in records])


def _record_line(record: SignalRecord) -> str:
    parts = [f"{record.target}", f"{record.method}", f"{record.host}:{record.port}"]
    if record.domain:
        parts.append(record.domain)
    parts.append(str(record.outcome))
    if record.code is not None:
        parts.append(str(record.code))
    if record.messages is not None:
        parts.append(f"messages={record.messages} bytes={record.bytes}")
    if record.reply:
        parts.append(repr(record.reply))
    return " ".join(parts)


def _error(message: str) -> None:
    print(f"mailreleased: error: {message}", file=sys.stderr)
