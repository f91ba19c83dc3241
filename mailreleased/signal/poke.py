"""The connect poke: open a TCP connection, optionally send a line, hold it open, close."""

from __future__ import annotations

import asyncio

from mailreleased.config.model import Target
from mailreleased.errors import SessionError
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.signal.records import RecordMaker
from mailreleased.signal.tcp import close_stream, open_stream
from mailreleased.signal.telnet import TelnetRefuser
from mailreleased.smtp.reply import decode_server_text
from mailreleased.smtp.wire import WireLog


async def connect_poke(target: Target, host: str, run: int | None) -> list[SignalRecord]:
    """Connect, send ``command`` if set, hold for ``hold`` seconds, close; return one record.

    While holding, TELNET option requests are refused so that a telnet daemon
    does not wait for replies. The hold ends early when the server closes.
    """
    maker = RecordMaker(target, host, run)
    wire = WireLog(target.name, host)
    try:
        reader, writer = await open_stream(host, target.effective_port, target.timeouts.connect)
    except SessionError as exc:
        return [maker.failed(None, exc)]
    try:
        if target.command:
            wire.client(target.command)
            writer.write(target.command.encode("utf-8") + b"\r\n")
            await writer.drain()
        if target.hold > 0:
            await _hold(reader, writer, target.hold, wire)
    except OSError as exc:
        return [maker.make(None, Outcome.PROTOCOL_ERROR, detail=f"connection failed after connect: {exc}")]
    finally:
        await close_stream(writer)
    return [maker.make(None, Outcome.RELEASED, detail=f"held the connection for up to {target.hold:g}s")]


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float, wire: WireLog) -> None:
    """Read and refuse TELNET negotiation for ``seconds``, or until the server closes."""
    refuser = TelnetRefuser()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                wire.server_raw(decode_server_text(chunk))
                answer = refuser.feed(chunk)
                if answer:
                    wire.client(answer.hex(" "))
                    writer.write(answer)
                    await writer.drain()
    except (TimeoutError, ConnectionResetError):
        pass
