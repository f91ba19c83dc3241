"""Refusing TELNET option negotiation (RFC 854), for connect pokes to telnet daemons."""

from __future__ import annotations

import enum

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
SE = 240


class _State(enum.Enum):
    DATA = "data"
    COMMAND = "command"
    OPTION = "option"
    SUBNEGOTIATION = "subnegotiation"
    SUBNEGOTIATION_IAC = "subnegotiation_iac"


class TelnetRefuser:
    """Parses a server's byte stream and produces refusals to every option request.

    ``IAC DO x`` gets ``IAC WONT x`` and ``IAC WILL x`` gets ``IAC DONT x``.
    ``WONT`` and ``DONT`` are never answered, which rules out negotiation
    loops. ``IAC SB ... IAC SE`` blocks are skipped and ``IAC IAC`` is a data byte.
    """

    def __init__(self) -> None:
        self._state = _State.DATA
        self._verb = 0
        self.data_bytes = 0

    def feed(self, data: bytes) -> bytes:
        """Consume received bytes (in any chunking) and return the bytes to send back."""
        answer = bytearray()
        for byte in data:
            if self._state is _State.DATA:
                if byte == IAC:
                    self._state = _State.COMMAND
                else:
                    self.data_bytes += 1
            elif self._state is _State.COMMAND:
                self._command(byte)
            elif self._state is _State.OPTION:
                if self._verb == DO:
                    answer += bytes((IAC, WONT, byte))
                elif self._verb == WILL:
                    answer += bytes((IAC, DONT, byte))
                self._state = _State.DATA
            elif self._state is _State.SUBNEGOTIATION:
                if byte == IAC:
                    self._state = _State.SUBNEGOTIATION_IAC
            else:
                # IAC SE ends the block; IAC IAC inside it is an escaped data byte.
                self._state = _State.DATA if byte == SE else _State.SUBNEGOTIATION
        return bytes(answer)

    def _command(self, byte: int) -> None:
        if byte == IAC:
            self.data_bytes += 1
            self._state = _State.DATA
        elif byte in (DO, DONT, WILL, WONT):
            self._verb = byte
            self._state = _State.OPTION
        elif byte == SB:
            self._state = _State.SUBNEGOTIATION
        else:
            # Two-byte commands such as NOP, GA or a stray SE carry no option.
            self._state = _State.DATA
