"""Deliver into a Maildir: write to tmp/, fdatasync, rename into new/, fsync new/.

The path may contain ``{recipient}``, ``{local}`` and ``{domain}``; then each
recipient gets its own copy with its own ``Delivered-To:``. With a fixed path
a message is written once, and ``Delivered-To:`` is added only when it has
a single recipient, because one header cannot name several and a list would
expose Bcc recipients to every reader of the mailbox.

Files keep LF line endings, as Maildir readers expect.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from mailreleased.config.model import MaildirDelivery
from mailreleased.odmr.sinks.base import ACCEPTED, RECIPIENT_OK, DeliveryResult, Envelope, Sink
from mailreleased.odmr.stream import BodyReader

log = structlog.get_logger("mailreleased.odmr.maildir")

# Maildir convention: a file left in tmp/ for 36 hours is abandoned.
STALE_TMP_AGE = 36 * 3600.0
# Body bytes gathered before one write in a worker thread: few thread
# hand-offs, memory far below the size of large messages, and a 1 MiB
# message is written in about four parts that overlap with reading the rest.
WRITE_BATCH = 256 * 1024
_PLACEHOLDERS = ("{recipient}", "{local}", "{domain}")
_TMP_NAME = re.compile(r"^\d+\.M\d+P(\d+)Q\d+\.(.+)$")
_counter = itertools.count(1)
_prepared: set[Path] = set()


@functools.cache
def _maildir_host() -> str:
    """Return the host name as Maildir file names carry it, with ``/`` and ``:`` escaped."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def unique_name() -> str:
    """Return a Maildir file name that no other delivery uses: ``time.MusecPpidQn.host``."""
    now = time.time()
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return f"{seconds}.M{micros}P{os.getpid()}Q{next(_counter)}.{_maildir_host()}"


def expand_path(template: str, recipient: str) -> Path:
    """Return ``template`` with the recipient placeholders filled in.

    Raises ValueError if a value would leave the intended directory: it
    contains ``/``, ``..`` or NUL, is empty, or is ``.``.
    """
    local, _, domain = recipient.rpartition("@")
    values = {"{recipient}": f"{local}@{domain.lower()}", "{local}": local, "{domain}": domain.lower()}
    path = template
    for placeholder, value in values.items():
        if placeholder not in path:
            continue
        if not value or value == "." or "/" in value or ".." in value or "\0" in value:
            raise ValueError(f"recipient {recipient!r} cannot be used in a Maildir path")
        path = path.replace(placeholder, value)
    return Path(path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(maildir: Path, *, now: float | None = None) -> int:
    """Remove files in ``tmp/`` that an interrupted delivery left behind; return how many.

    A file is stale if its name carries this host and the id of a process
    that no longer runs, or if it is older than 36 hours.
    """
    now = time.time() if now is None else now
    host = _maildir_host()
    removed = 0
    for entry in os.scandir(maildir / "tmp"):
        match = _TMP_NAME.match(entry.name)
        ours = match is not None and match.group(2) == host
        dead = ours and match is not None and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1)))
        try:
            if dead or now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_AGE:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def prepare_maildir(maildir: Path) -> None:
    """On first use in this process, create ``cur``, ``new`` and ``tmp`` if missing and clean ``tmp``."""
    if maildir in _prepared:
        return
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    removed = remove_stale_tmp(maildir)
    if removed:
        log.info("maildir_tmp_cleaned", maildir=str(maildir), removed=removed)
    _prepared.add(maildir)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _MaildirFile:
    """One copy being written: an open file in ``tmp/`` until :meth:`commit`."""

    def __init__(self, maildir: Path, headers: bytes) -> None:
        prepare_maildir(maildir)
        self.maildir = maildir
        self.name = unique_name()
        self.tmp_path = maildir / "tmp" / self.name
        self.size = 0
        try:
            self._fd: int | None = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            # The Maildir was removed since it was prepared: create it again.
            _prepared.discard(maildir)
            prepare_maildir(maildir)
            self._fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.write(headers)

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def sync_data(self) -> None:
        """Write the data so far to the disk with fdatasync, so the sync at commit has less left to do."""
        assert self._fd is not None
        os.fdatasync(self._fd)

    def commit(self, fsync: bool) -> None:
        """Close the file (after fdatasync) and rename it into ``new/`` (then fsync ``new/``)."""
        assert self._fd is not None
        if fsync:
            # fdatasync also writes the metadata needed to read the data back, such as the size.
            os.fdatasync(self._fd)
        os.close(self._fd)
        self._fd = None
        os.rename(self.tmp_path, self.maildir / "new" / f"{self.name},S={self.size}")
        if fsync:
            _fsync_directory(self.maildir / "new")

    def discard(self) -> None:
        """Close and remove the tmp file, ignoring errors."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass


class _CrlfToLf:
    """Convert CRLF to LF in a chunked stream, holding back a CR at a chunk's end."""

    def __init__(self) -> None:
        self._held_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._held_cr = True
        return data.replace(b"\r\n", b"\n")

    def end(self) -> bytes:
        return b"\r" if self._held_cr else b""


class MaildirSink(Sink):
    """Write each message into a Maildir, once per recipient if the path names the recipient."""

    def __init__(self, config: MaildirDelivery) -> None:
        self._template = config.path
        self._fsync = config.fsync
        self._per_recipient = any(p in config.path for p in _PLACEHOLDERS)

    async def open(self) -> None:
        if not self._per_recipient:
            await asyncio.to_thread(prepare_maildir, Path(self._template))

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        if self._per_recipient:
            try:
                expand_path(self._template, recipient)
            except ValueError:
                return DeliveryResult(550, "5.1.3 Recipient address cannot be used as a mailbox name")
        return RECIPIENT_OK

    def _copies(self, envelope: Envelope) -> list[tuple[Path, str | None]]:
        if self._per_recipient:
            return [(expand_path(self._template, r), r) for r in envelope.recipients]
        single = envelope.recipients[0] if len(envelope.recipients) == 1 else None
        return [(Path(self._template), single)]

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        try:
            copies = self._copies(envelope)
        except ValueError as exc:
            return DeliveryResult(554, f"5.1.3 {exc}")
        files: list[_MaildirFile] = []
        try:
            await self._store(copies, envelope.sender, body, files)
        except OSError as exc:
            await asyncio.to_thread(_discard_all, files)
            return _os_error_result(exc, copies[0][0])
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard_all, files))
            raise
        return ACCEPTED

    async def _store(self, copies: list[tuple[Path, str | None]], sender: str, body: AsyncIterator[bytes],
                     files: list[_MaildirFile]) -> None:
        """Write and commit every copy, appending each opened file to ``files``.

        File work runs in a worker thread once per batch, so a message that
        fits in one batch costs a single hand-off for open, write and commit.
        A batch before the last is written while the next one is read, with
        at most one write in flight. The last batch waits for it, then
        writes and commits.
        """
        in_flight: asyncio.Future[None] | None = None
        try:
            async for data, last in _batches(body):
                if in_flight is not None:
                    await asyncio.shield(in_flight)
                    in_flight = None
                commit_fsync = self._fsync if last else None
                if files:
                    work = functools.partial(_write_all, files, data, commit_fsync, early_sync=self._fsync)
                else:
                    work = functools.partial(_open_and_write_all, copies, sender, files, data, commit_fsync,
                                             early_sync=self._fsync)
                if last:
                    await asyncio.to_thread(work)
                else:
                    in_flight = asyncio.ensure_future(asyncio.to_thread(work))
        finally:
            if in_flight is not None:
                # A worker thread cannot be stopped, so let the write finish before
                # the caller discards the files. Its own error is dropped here
                # because the exception already raised explains the failure.
                await asyncio.wait([in_flight])
                if not in_flight.cancelled():
                    in_flight.exception()


async def _batches(body: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bool]]:
    """Yield the body with LF line endings in batches of about WRITE_BATCH bytes; the last is flagged.

    A :class:`BodyReader` converts the line endings itself while it decodes.
    Any other iterator goes through :class:`_CrlfToLf`.
    """
    converter = None if isinstance(body, BodyReader) and body.convert_line_endings() else _CrlfToLf()
    batch: list[bytes] = []
    batched = 0
    async for chunk in body:
        batch.append(chunk if converter is None else converter.feed(chunk))
        batched += len(batch[-1])
        if batched >= WRITE_BATCH:
            yield b"".join(batch), False
            batch, batched = [], 0
    if converter is not None:
        batch.append(converter.end())
    yield b"".join(batch), True


def _trace_headers(sender: str, delivered_to: str | None) -> bytes:
    text = f"Return-Path: <{sender}>\n"
    if delivered_to is not None:
        text += f"Delivered-To: {delivered_to}\n"
    return text.encode("utf-8")


def _open_and_write_all(copies: list[tuple[Path, str | None]], sender: str, files: list[_MaildirFile],
                        data: bytes, commit_fsync: bool | None, *, early_sync: bool) -> None:
    """Open a tmp file for every copy, appending each to ``files``, then run :func:`_write_all`."""
    for maildir, delivered_to in copies:
        files.append(_MaildirFile(maildir, _trace_headers(sender, delivered_to)))
    _write_all(files, data, commit_fsync, early_sync=early_sync)


def _write_all(files: list[_MaildirFile], data: bytes, commit_fsync: bool | None, *, early_sync: bool) -> None:
    """Append ``data`` to every file, then commit them all unless ``commit_fsync`` is None.

    Every copy is written before the first is committed, so running out of
    space while writing leaves no copy in ``new/`` for a message that gets 452.
    With ``early_sync`` a batch that is not the last is also synced, while
    the event loop reads the next one, so the sync before the 250 has only
    the last batch left to write.
    """
    if data:
        for file in files:
            file.write(data)
    if commit_fsync is not None:
        for file in files:
            file.commit(commit_fsync)
    elif early_sync:
        for file in files:
            file.sync_data()


def _discard_all(files: list[_MaildirFile]) -> None:
    for file in files:
        try:
            file.discard()
        except OSError as exc:
            log.error("maildir_tmp_remove_failed", path=str(file.tmp_path), error=str(exc))


def _os_error_result(exc: OSError, maildir: Path) -> DeliveryResult:
    log.error("maildir_delivery_failed", maildir=str(maildir), error=str(exc), errno=exc.errno)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DeliveryResult(452, "4.3.1 Insufficient storage for the Maildir")
    return DeliveryResult(451, "4.3.0 Maildir delivery failed; try again later")
