"""The FINGER poke (RFC 1288): send one query line and read the response until the server closes."""

from __future__ import annotations

import asyncio

import structlog

from mailreleased.config.model import Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.signal.records import RecordMaker
from mailreleased.signal.tcp import close_stream, open_stream
from mailreleased.smtp.reply import RECORD_TEXT_CHARS, decode_server_text, sanitize
from mailreleased.smtp.wire import WireLog

# Maximum bytes of response read; the rest is not waited for.
MAX_FINGER_REPLY = 64 * 1024

_log = structlog.get_logger("mailreleased.signal")


async def finger_poke(target: Target, host: str, run: int | None) -> list[SignalRecord]:
    """Send ``command`` (an empty query by default) and return one record.

    Any finished exchange counts as released, including a refusal such as
    "online list denied" or a close without data.
    """
    maker = RecordMaker(target, host, run)
    wire = WireLog(target.name, host)
    try:
        reader, writer = await open_stream(host, target.effective_port, target.timeouts.connect)
    except SessionError as exc:
        return [maker.failed(None, exc)]
    query = target.command or ""
    try:
        wire.client(query)
        writer.write(query.encode("utf-8") + b"\r\n")
        await writer.drain()
        data, finished = await _read_answer(reader, target.reply_timeout)
    except OSError as exc:
        return [maker.make(None, Outcome.PROTOCOL_ERROR, detail=f"sending the query failed: {exc}")]
    finally:
        await close_stream(writer)
    text = _flatten(decode_server_text(data))
    wire.server_raw(text)
    _log.info("finger_reply", target=target.name, host=host, bytes=len(data), reply=text)
    if not data and not finished:
        return [maker.make(None, Outcome.TIMEOUT, detail=f"no answer within {target.reply_timeout:g}s")]
    detail = None if finished else "stopped reading before the server closed the connection"
    return [maker.make(None, Outcome.RELEASED, reply=_cut(text), detail=detail)]


async def _read_answer(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bool]:
    """Read until EOF, the size limit or the timeout; return the data and whether EOF came."""
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while len(data) < MAX_FINGER_REPLY:
                chunk = await reader.read(MAX_FINGER_REPLY - len(data))
                if not chunk:
                    return bytes(data), True
                data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


def _flatten(text: str) -> str:
    """Join the non-empty lines with `` | `` and strip control characters."""
    return " | ".join(sanitize(line.strip()) for line in text.splitlines() if line.strip())


def _cut(text: str) -> str:
    return text if len(text) <= RECORD_TEXT_CHARS else text[: RECORD_TEXT_CHARS - 3] + "..."
