"""A raw SMTP sink that reads and discards: the upper limit of any receiver.

It replies 220 on connect, 250 to EHLO, HELO, MAIL, RCPT, RSET and NOOP, 354
to DATA, 250 once the end-of-data line arrives, and 221 to QUIT. Any other
command (ETRN among them) gets 250. It parses
nothing else, stores nothing and never fsyncs. Run it as
``python -m bench.discard --port-file FILE``; on SIGTERM it writes the number
of messages and bytes it took to ``--count-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from bench.procs import LOOPBACK, raise_open_file_limit, write_port_file

END_OF_DATA = b"\r\n.\r\n"
MAX_COMMAND_LINE = 65536
# Large enough for thousands of simultaneous connects (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096


class Totals:
    """Messages and DATA bytes taken since start."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class DiscardProtocol(asyncio.Protocol):
    """One SMTP connection, served with the fewest reply bytes that keep a client going."""

    def __init__(self, totals: Totals, greeting_delay: float) -> None:
        self.totals = totals
        self.greeting_delay = greeting_delay
        self.transport: asyncio.Transport | None = None
        self.in_data = False
        self.buffer = bytearray()
        # The last bytes of DATA seen so far, so a terminator split across reads is still found.
        self.data_tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.greeting_delay > 0:
            asyncio.get_running_loop().call_later(self.greeting_delay, self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(b"220 discard.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        if self.in_data:
            self._take_data(data)
        else:
            self.buffer += data
            self._take_commands()

    def _take_data(self, data: bytes) -> None:
        window = self.data_tail + data
        end = window.find(END_OF_DATA)
        if end < 0:
            self.totals.bytes += len(data)
            self.data_tail = window[-4:]
            return
        consumed = end + len(END_OF_DATA) - len(self.data_tail)
        self.totals.bytes += consumed
        self.totals.messages += 1
        self.in_data = False
        self.data_tail = b""
        assert self.transport is not None
        self.transport.write(b"250 ok\r\n")
        rest = data[consumed:]
        if rest:
            self.buffer += rest
            self._take_commands()

    def _take_commands(self) -> None:
        assert self.transport is not None
        while not self.in_data:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_COMMAND_LINE:
                    self.transport.abort()
                return
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            verb = line[:4].upper()
            if verb == b"DATA":
                self.transport.write(b"354 go ahead\r\n")
                self.in_data = True
                # The CRLF that ended the DATA command line lets an empty body end at once.
                self.data_tail = b"\r\n"
                rest = bytes(self.buffer)
                self.buffer.clear()
                if rest:
                    self._take_data(rest)
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            elif verb == b"EHLO":
                self.transport.write(b"250-discard.test\r\n250 PIPELINING\r\n")
            else:
                self.transport.write(b"250 ok\r\n")


async def serve(port_file: Path, count_file: Path | None, greeting_delay: float) -> None:
    """Listen on a free loopback port until SIGTERM, then write the totals."""
    totals = Totals()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(lambda: DiscardProtocol(totals, greeting_delay), LOOPBACK, 0, backlog=BACKLOG)
    write_port_file(port_file, server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()
    if count_file is not None:
        count_file.write_text(json.dumps({"messages": totals.messages, "bytes": totals.bytes}))


def main() -> None:
    """Run the sink process."""
    parser = argparse.ArgumentParser(prog="python -m bench.discard", description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True, help="file that receives the bound port")
    parser.add_argument("--count-file", type=Path, help="file that receives the totals as JSON on SIGTERM")
    parser.add_argument(
        "--greeting-delay", type=float, default=0.0, metavar="SECONDS",
        help="wait this long before the 220 greeting, as a distant or busy server does",
    )
    args = parser.parse_args()
    raise_open_file_limit()
    asyncio.run(serve(args.port_file, args.count_file, args.greeting_delay))


if __name__ == "__main__":
    main()
