"""Deliver by running a program per message, with the message on standard input.

No shell is involved: ``argv`` is executed directly. ``{sender}`` is
replaced by the envelope sender (``<>`` for the null sender), and an argv
item that is exactly ``{recipients}`` becomes one item per recipient
(inside a longer item the recipients are joined with commas). Exit status
0 means delivered, 75 (EX_TEMPFAIL) a temporary failure, death by a signal
or a timeout too; any other status is a permanent failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator

import structlog

from mailreleased.config.model import CommandDelivery
from mailreleased.odmr.sinks.base import RECIPIENT_OK, SENDER_OK, DeliveryResult, Envelope, Sink

log = structlog.get_logger("mailreleased.odmr.command")

EX_TEMPFAIL = 75
_PLACEHOLDER = re.compile(r"\{(sender|recipients)\}")
_STDERR_KEEP = 1000
_KILL_WAIT = 10.0


class _CommandTimeout(Exception):
    """The program did not read its input or exit within the configured timeout."""


def expand_argv(argv: tuple[str, ...], envelope: Envelope) -> list[str]:
    """Return ``argv`` with ``{sender}`` and ``{recipients}`` filled in from ``envelope``."""
    values = {"sender": envelope.sender or "<>", "recipients": ",".join(envelope.recipients)}
    expanded: list[str] = []
    for item in argv:
        if item == "{recipients}":
            expanded.extend(envelope.recipients)
        else:
            expanded.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], item))
    return expanded


class CommandSink(Sink):
    """Run ``argv`` once per message and map its exit status to an SMTP reply."""

    def __init__(self, config: CommandDelivery) -> None:
        self._argv = config.argv
        self._timeout = config.timeout

    # An address that starts with "-" would reach the program as an option.
    async def check_sender(self, sender: str, *, smtputf8: bool = False) -> DeliveryResult:
        if sender.startswith("-"):
            return DeliveryResult(553, "5.1.7 Sender address must not start with '-'")
        return SENDER_OK

    async def check_recipient(self, recipient: str) -> DeliveryResult:
        if recipient.startswith("-"):
            return DeliveryResult(553, "5.1.3 Recipient address must not start with '-'")
        return RECIPIENT_OK

    async def deliver(self, envelope: Envelope, body: AsyncIterator[bytes]) -> DeliveryResult:
        if any(a.startswith("-") for a in (envelope.sender, *envelope.recipients)):
            return DeliveryResult(554, "5.1.3 Address must not start with '-'")
        argv = expand_argv(self._argv, envelope)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            log.error("command_start_failed", program=argv[0], error=str(exc))
            return DeliveryResult(451, "4.3.0 Delivery program could not be started")
        stderr_task = asyncio.create_task(_collect_stderr(process))
        try:
            await self._feed(process, body)
            async with asyncio.timeout(self._timeout):
                status = await process.wait()
        except (TimeoutError, _CommandTimeout):
            await _kill(process)
            log.error("command_timed_out", program=argv[0], timeout=self._timeout)
            return DeliveryResult(451, "4.3.0 Delivery program timed out")
        except BaseException:
            await asyncio.shield(_kill(process))
            raise
        finally:
            stderr = await _finish(stderr_task)
        return _status_result(status, argv[0], stderr, envelope.message_id)

    async def _feed(self, process: asyncio.subprocess.Process, body: AsyncIterator[bytes]) -> None:
        """Stream ``body`` to the program's standard input, then close it."""
        stdin = process.stdin
        assert stdin is not None
        try:
            async for chunk in body:
                stdin.write(chunk)
                try:
                    async with asyncio.timeout(self._timeout):
                        await stdin.drain()
                except TimeoutError:
                    raise _CommandTimeout from None
            stdin.close()
            await stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            # The program exited or closed its input early; its exit status decides.
            return


async def _collect_stderr(process: asyncio.subprocess.Process) -> bytes:
    """Read standard error to its end, keeping only the first bytes for the log."""
    assert process.stderr is not None
    kept = b""
    while chunk := await process.stderr.read(65536):
        if len(kept) < _STDERR_KEEP:
            kept += chunk[: _STDERR_KEEP - len(kept)]
    return kept


async def _finish(task: asyncio.Task[bytes]) -> bytes:
    try:
        async with asyncio.timeout(_KILL_WAIT):
            return await task
    except (TimeoutError, OSError):
        task.cancel()
        return b""


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_KILL_WAIT):
            await process.wait()


def _status_result(status: int, program: str, stderr: bytes, message_id: str) -> DeliveryResult:
    if status == 0:
        return DeliveryResult(250, "2.0.0 Delivered by command")
    text = stderr.decode("utf-8", "replace").strip()
    log.warning("command_failed", program=program, status=status, stderr=text, message_id=message_id)
    if status == EX_TEMPFAIL or status < 0:
        return DeliveryResult(451, f"4.3.0 Delivery program failed temporarily (status {status})")
    return DeliveryResult(554, f"5.3.0 Delivery program failed (status {status})")
