"""Command line of the provider process: ``python -m mailreleased.testing.provider``.

The process binds, writes its port to ``--port-file`` and serves until
SIGTERM or SIGINT, then exits 0. It prints addresses and counts, never passwords.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

EX_USAGE = 64
EX_UNAVAILABLE = 69


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the provider process."""
    parser = argparse.ArgumentParser(
        prog="python -m mailreleased.testing.provider",
        description="Run the loopback ETRN and ODMR (ATRN) test provider until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "--listen", action="append", metavar="HOST:PORT",
        help="address to listen on (repeatable; port 0 picks a free port); default 127.0.0.1:0",
    )
    parser.add_argument("--domain", action="append", metavar="DOMAIN", help="domain whose mail is queued (repeatable)")
    parser.add_argument("--user", action="append", metavar="USER:PASSWORD", help="account allowed to AUTH (repeatable)")
    parser.add_argument("--queue-dir", type=Path, help="directory that keeps the queue across restarts")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="queue N generated messages per domain once")
    parser.add_argument("--size", type=int, default=4096, metavar="BYTES", help="approximate size of seeded messages")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain; enables STARTTLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key, if not inside --tls-cert")
    parser.add_argument("--port-file", type=Path, help="file that receives the first listener's port once bound")
    parser.add_argument("--hostname", default="provider.test", help="name in the greeting and in EHLO")
    parser.add_argument("--multiline-greeting", action="store_true", help="send a two-line 220 greeting")
    parser.add_argument("--require-tls-auth", action="store_true", help="reply 538 to AUTH PLAIN and LOGIN before STARTTLS")
    parser.add_argument("--max-messages-per-session", type=int, metavar="N", help="deliver at most N per ATRN")
    parser.add_argument(
        "--no-pipelining", action="store_true", help="send MAIL, RCPT and DATA one at a time even if offered PIPELINING"
    )
    parser.add_argument("--drop-after-messages", type=int, metavar="N", help="drop each session mid-DATA after N messages")
    parser.add_argument("--drop-after-bytes", type=int, metavar="BYTES", help="bytes of the cut message to send first")
    parser.add_argument("--reply-delay", type=float, default=0.0, metavar="SECONDS", help="delay before each reply")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS", help="command and reply timeout")
    parser.add_argument("--allow-non-loopback", action="store_true", help="permit --listen on non-loopback addresses")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every session to standard error")
    return parser


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[::1]:PORT``) into host and port."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not port_text.isdigit() or not host:
        raise ValueError(f"--listen {text!r} must be HOST:PORT, such as 127.0.0.1:0 or [::1]:0")
    return host.strip("[]"), int(port_text)


def parse_user(text: str) -> tuple[str, str]:
    """Split ``USER:PASSWORD`` at the first colon."""
    name, separator, password = text.partition(":")
    if not separator or not name:
        raise ValueError("--user must be USER:PASSWORD")
    return name, password


def provider_from_args(args: argparse.Namespace) -> Provider:
    """Build a Provider from parsed arguments; raise ValueError on invalid values."""
    listens = [parse_listen(item) for item in (args.listen or ["127.0.0.1:0"])]
    domains = args.domain or ["example.test"]
    users = dict(parse_user(item) for item in (args.user or []))
    queue = [
        message
        for number, domain in enumerate(domains)
        for message in make_messages(domain, args.seed, args.size, start=number * args.seed)
    ]
    faults = Faults(
        reply_delay=args.reply_delay,
        drop_after_messages=args.drop_after_messages,
        drop_after_bytes=args.drop_after_bytes,
    )
    (host, port), extra = listens[0], listens[1:]
    return Provider(
        domains=domains,
        users=users,
        queue=queue,
        queue_dir=args.queue_dir,
        host=host,
        port=port,
        extra_listeners=extra,
        allow_non_loopback=args.allow_non_loopback,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        hostname=args.hostname,
        multiline_greeting=args.multiline_greeting,
        require_tls_for_plaintext_auth=args.require_tls_auth,
        max_messages_per_session=args.max_messages_per_session,
        use_pipelining=not args.no_pipelining,
        command_timeout=args.timeout,
        reply_timeout=args.timeout,
        record_transcript=False,
        faults=faults,
    )


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically, so a reader never sees a partial number."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{port}\n", encoding="ascii")
    os.replace(temporary, path)


async def serve(provider: Provider, port_file: Path | None) -> None:
    """Run ``provider`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    async with provider:
        if port_file is not None:
            write_port_file(port_file, provider.port)
        addresses = ", ".join(f"{host}:{port}" for host, port in provider.addresses)
        print(f"provider listening on {addresses} with {len(provider.queue)} queued messages", file=sys.stderr)
        await stop.wait()
        print(
            f"provider stopping: {len(provider.delivered)} delivered, {len(provider.queue)} still queued",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the provider process; return its exit status."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        provider = provider_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_USAGE
    try:
        asyncio.run(serve(provider, args.port_file))
    except OSError as exc:
        print(f"error: the provider failed to start: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
