"""The queue directory across provider restarts, and the provider as a separate process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider
from mailreleased.testing.store import load_directory

from .conftest import TIMEOUT, USERS
from .customer import Script, run_customer

DOMAIN = "example.test"
PASSWORD = "s3cret-word"


async def test_queue_dir_survives_restart(tmp_path: Path) -> None:
    """Delivered messages leave the directory; the rest is there for the next provider."""
    messages = make_messages(DOMAIN, 5, 1500)
    queue_dir = tmp_path / "queue"
    async with Provider(users=USERS, queue=messages, queue_dir=queue_dir, max_messages_per_session=2) as provider:
        await run_customer(provider.port)
    on_disk = [m.id for m in load_directory(queue_dir)]
    assert on_disk == ["msg-000002", "msg-000003", "msg-000004"]

    async with Provider(users=USERS, queue=messages, queue_dir=queue_dir) as restarted:
        assert [m.id for m in restarted.queue] == on_disk
        result = await run_customer(restarted.port)
    assert [m.data for m in result.messages] == [m.data for m in messages[2:]]
    assert load_directory(queue_dir) == []


async def test_queue_dir_keeps_rejected_message(tmp_path: Path) -> None:
    """A message rejected with 451 stays on disk with its bytes intact."""
    messages = make_messages(DOMAIN, 2, 800)
    queue_dir = tmp_path / "queue"
    script = Script(data_replies={0: "451 later"})
    async with Provider(users=USERS, queue=messages, queue_dir=queue_dir) as provider:
        await run_customer(provider.port, script=script)
    remaining = load_directory(queue_dir)
    assert [m.id for m in remaining] == ["msg-000000"]
    assert remaining[0].read_data() == messages[0].data
    assert list((queue_dir / "tmp").iterdir()) == []


async def _start_process(queue_dir: Path, port_file: Path) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailreleased.testing.provider",
        "--listen", "127.0.0.1:0", "--domain", DOMAIN, "--user", f"user:{PASSWORD}",
        "--queue-dir", str(queue_dir), "--seed", "5", "--size", "1000",
        "--max-messages-per-session", "3", "--port-file", str(port_file),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    # The process prints its listening line only after the port file is written.
    line = await asyncio.wait_for(process.stderr.readline(), TIMEOUT)
    assert b"listening on 127.0.0.1:" in line, line
    return process, int(port_file.read_text())


async def _stop_process(process: asyncio.subprocess.Process) -> tuple[int, bytes]:
    assert process.stderr is not None
    process.send_signal(signal.SIGTERM)
    output = await asyncio.wait_for(process.stderr.read(), TIMEOUT)
    return await asyncio.wait_for(process.wait(), TIMEOUT), output


async def test_process_restart_continues_queue(tmp_path: Path) -> None:
    """The provider process seeds once, survives a restart and exits 0 on SIGTERM."""
    queue_dir = tmp_path / "queue"
    port_file = tmp_path / "port"

    process, port = await _start_process(queue_dir, port_file)
    first = await asyncio.wait_for(run_customer(port, password=PASSWORD), TIMEOUT)
    status, output = await _stop_process(process)
    assert status == 0
    assert PASSWORD.encode() not in output
    assert first.message_count == 3
    assert len(load_directory(queue_dir)) == 2

    process, port = await _start_process(queue_dir, port_file)
    second = await asyncio.wait_for(run_customer(port, password=PASSWORD), TIMEOUT)
    status, _ = await _stop_process(process)
    assert status == 0
    assert second.message_count == 2
    assert load_directory(queue_dir) == []
