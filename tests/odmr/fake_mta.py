"""A scripted local SMTP or LMTP server on loopback that records what it receives."""

from __future__ import annotations

import asyncio
import dataclasses
from types import TracebackType

from mailreleased.odmr.body import DotDecoder


@dataclasses.dataclass
class FakeMta:
    """Accepts mail on 127.0.0.1, port chosen by the system.

    ``rcpt_codes`` and ``data_codes`` map a recipient to the reply code it
    gets at RCPT and (LMTP only) after DATA; unlisted recipients get 250.
    """

    lmtp: bool = False
    rcpt_codes: dict[str, int] = dataclasses.field(default_factory=dict)
    data_codes: dict[str, int] = dataclasses.field(default_factory=dict)
    data_code: int = 250
    messages: list[tuple[str, list[str], bytes]] = dataclasses.field(default_factory=list)
    commands: list[str] = dataclasses.field(default_factory=list)
    port: int = 0
    unix_path: str | None = None
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeMta:
        if self.unix_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, self.unix_path)
            return self
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake.test ready\r\n")
        sender = ""
        recipients: list[str] = []
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "LHLO"):
                ok = (verb == "LHLO") == self.lmtp
                writer.write(b"250-fake.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n" if ok else b"500 no\r\n")
            elif verb == "MAIL":
                sender, recipients = line[11:].split(">", 1)[0], []
                writer.write(b"250 ok\r\n")
            elif verb == "RCPT":
                address = line[9:].split(">", 1)[0]
                code = self.rcpt_codes.get(address, 250)
                if code == 250:
                    recipients.append(address)
                writer.write(f"{code} rcpt verdict\r\n".encode())
            elif verb == "DATA":
                writer.write(b"354 go\r\n")
                data = await self._read_body(reader)
                self.messages.append((sender, recipients, data))
                for reply in self._data_replies(recipients):
                    writer.write(reply)
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    def _data_replies(self, recipients: list[str]) -> list[bytes]:
        if not self.lmtp:
            return [f"{self.data_code} data verdict\r\n".encode()]
        return [f"{self.data_codes.get(r, 250)} {r} verdict\r\n".encode() for r in recipients]

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader) -> bytes:
        decoder = DotDecoder()
        data = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed in DATA")
            decoded = decoder.feed(chunk)
            data += decoded.data
            if decoded.done:
                return data
