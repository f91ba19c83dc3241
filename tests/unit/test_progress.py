"""The live ATRN counter on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from mailreleased.config.model import Target
from mailreleased.odmr import run_atrn
from mailreleased.progress import TerminalCounter, install_hook
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider


def test_counter_rewrites_one_line() -> None:
    """Each update rewrites the same line; finish ends it."""
    stream = io.StringIO()
    counter = TerminalCounter(stream)
    counter("odmr", 1, 2048)
    counter("odmr", 2, 3 * 1024 * 1024)
    counter.finish()
    output = stream.getvalue()
    assert output.count("\r") == 2
    assert output.endswith("odmr: 2 messages, 3.0 MiB\n")


async def test_run_atrn_reports_to_installed_hook(tmp_path: Path) -> None:
    """run_atrn reports each accepted message to the installed hook, with the target name."""
    seen: list[tuple[str, int, int]] = []
    token = install_hook(lambda name, messages, size: seen.append((name, messages, size)))
    try:
        async with Provider(users={"u": "secret-pw"}, queue=make_messages("example.test", 3, 1000)) as provider:
            target = Target.model_validate(
                {
                    "name": "odmr",
                    "method": "atrn",
                    "host": "127.0.0.1",
                    "port": provider.port,
                    "domains": ["example.test"],
                    "tls": "off",
                    "helo_name": "customer.test",
                    "auth": {"username": "u", "password": "secret-pw", "mechanisms": ["CRAM-MD5"]},
                    "delivery": {"type": "maildir", "path": str(tmp_path / "Maildir")},
                }
            )
            [record] = await run_atrn(target)
    finally:
        install_hook(None)
        del token
    assert record.messages == 3
    assert [messages for _, messages, _ in seen] == [1, 2, 3]
    assert {name for name, _, _ in seen} == {"odmr"}
    assert seen[-1][2] == record.bytes
