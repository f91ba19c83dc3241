"""Tests for the Maildir sink: durable delivery, path templates, failures and stale files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailreleased.config.model import MaildirDelivery
from mailreleased.odmr.sinks import maildir as maildir_module
from mailreleased.odmr.sinks.base import BodyIncomplete, Envelope
from mailreleased.odmr.sinks.maildir import MaildirSink, expand_path, prepare_maildir, unique_name

from .helpers import body_of, broken_body

ENVELOPE = Envelope("alice@example.net", ("bob@example.org",), "ID1")


def sink_for(path: Path | str) -> MaildirSink:
    return MaildirSink(MaildirDelivery(type="maildir", path=str(path)))


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def test_delivers_into_new(tmp_path: Path) -> None:
    """A message lands in new/ with Return-Path and Delivered-To, LF line endings and S=size."""
    maildir = tmp_path / "Maildir"
    sink = sink_for(maildir)
    await sink.open()
    result = await sink.deliver(ENVELOPE, body_of(b"Subject: a\r", b"\n\r\nbody\r\n"))
    assert result.code == 250
    [delivered] = files_in(maildir / "new")
    content = delivered.read_bytes()
    assert content == b"Return-Path: <alice@example.net>\nDelivered-To: bob@example.org\nSubject: a\n\nbody\n"
    assert delivered.name.endswith(f",S={len(content)}")
    assert files_in(maildir / "tmp") == []
    assert (maildir / "cur").is_dir()


async def test_several_recipients_one_copy(tmp_path: Path) -> None:
    """With a fixed path, a message for several recipients is stored once without Delivered-To."""
    sink = sink_for(tmp_path)
    envelope = Envelope("", ("a@example.org", "b@example.org"))
    assert (await sink.deliver(envelope, body_of(b"x\r\n"))).code == 250
    [delivered] = files_in(tmp_path / "new")
    assert delivered.read_bytes() == b"Return-Path: <>\nx\n"


async def test_per_recipient_paths(tmp_path: Path) -> None:
    """A path with {domain} and {local} gives each recipient its own copy."""
    sink = sink_for(f"{tmp_path}/{{domain}}/{{local}}")
    envelope = Envelope("s@example.net", ("a@Example.ORG", "b@example.org"))
    assert (await sink.deliver(envelope, body_of(b"x\r\n"))).code == 250
    [first] = files_in(tmp_path / "example.org" / "a" / "new")
    [second] = files_in(tmp_path / "example.org" / "b" / "new")
    assert b"Delivered-To: a@Example.ORG\n" in first.read_bytes()
    assert b"Delivered-To: b@example.org\n" in second.read_bytes()


@pytest.mark.parametrize("recipient", ['"../x"@example.org', '"a/b"@example.org', "..@example.org", "x@.."])
async def test_path_traversal_rejected(tmp_path: Path, recipient: str) -> None:
    """Recipients that would leave the Maildir tree are rejected at RCPT."""
    sink = sink_for(f"{tmp_path}/{{domain}}/{{local}}")
    assert (await sink.check_recipient(recipient)).code == 550
    with pytest.raises(ValueError):
        expand_path(f"{tmp_path}/{{domain}}/{{local}}", recipient)


async def test_unwritable_maildir_gives_451(tmp_path: Path) -> None:
    """A Maildir that cannot be created gives 451 and leaves nothing behind."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = await sink_for(blocker / "Maildir").deliver(ENVELOPE, body_of(b"x\r\n"))
    assert result.code == 451


async def test_disk_full_gives_452_and_removes_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing gives 452 and the tmp file is removed."""
    sink = sink_for(tmp_path)
    await sink.open()
    real_write = os.write

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if b"FILL" in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    result = await sink.deliver(ENVELOPE, body_of(b"first\r\n", b"FILL\r\n"))
    assert result.code == 452
    assert files_in(tmp_path / "tmp") == []
    assert files_in(tmp_path / "new") == []


async def test_broken_body_leaves_no_file(tmp_path: Path) -> None:
    """A body cut short raises through the sink and leaves no file in tmp/ or new/."""
    sink = sink_for(tmp_path)
    with pytest.raises(BodyIncomplete):
        await sink.deliver(ENVELOPE, broken_body(b"half a message"))
    assert files_in(tmp_path / "tmp") == []
    assert files_in(tmp_path / "new") == []


def test_stale_tmp_files_removed(tmp_path: Path) -> None:
    """Start-up removes tmp files of dead processes on this host and files older than 36 hours."""
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(finished.stdout)
    ours = unique_name()
    dead = ours.replace(f"P{os.getpid()}Q", f"P{dead_pid}Q")
    alive = ours.replace(f"P{os.getpid()}Q", f"P{os.getppid()}Q")
    old = "1.M1P1Q1.otherhost"
    for name in (dead, alive, old, ours):
        (tmp_path / "tmp" / name).write_bytes(b"partial")
    stale = time.time() - 40 * 3600
    os.utime(tmp_path / "tmp" / old, (stale, stale))
    maildir_module._prepared.discard(tmp_path)
    prepare_maildir(tmp_path)
    assert sorted(p.name for p in files_in(tmp_path / "tmp")) == sorted([alive, ours])


async def test_removed_maildir_recreated(tmp_path: Path) -> None:
    """A Maildir removed after start-up is created again for the next message."""
    maildir = tmp_path / "Maildir"
    sink = sink_for(maildir)
    await sink.open()
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).rmdir()
    maildir.rmdir()
    assert (await sink.deliver(ENVELOPE, body_of(b"x\r\n"))).code == 250
    assert len(files_in(maildir / "new")) == 1
