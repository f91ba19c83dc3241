"""The provider's server dialogue before the turnaround: greeting, EHLO, STARTTLS, AUTH, ETRN, ATRN.

RFC 2645 lets an ODMR provider reply 502 to every command other than EHLO,
AUTH, ATRN and QUIT. This one also takes HELO, ETRN, STARTTLS, NOOP and RSET.
"""

from __future__ import annotations

import base64
import enum

from mailreleased.testing import sasl
from mailreleased.testing.channel import Channel
from mailreleased.testing.reversal import deliver_queue

# Failed commands after which the provider closes the session, as real servers do.
MAX_ERRORS = 20


class SessionState(enum.Enum):
    """Position of the customer in the dialogue."""

    GREETED = "greeted"
    HELLO = "hello"
    AUTHENTICATED = "authenticated"
    DONE = "done"


class ServerSession:
    """One customer connection, from greeting to QUIT or turnaround."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.shared = channel.state
        self.settings = channel.state.settings
        self.phase = SessionState.GREETED
        self.username: str | None = None
        self.errors = 0

    async def run(self) -> None:
        """Greet the customer and reply to commands until QUIT, turnaround, error or EOF."""
        if self.shared.faults.greeting_421:
            await self.channel.reply(421, f"{self.settings.hostname} Service not available, closing channel")
            return
        await self._greet()
        while self.phase is not SessionState.DONE and self.errors < MAX_ERRORS:
            line = await self.channel.read_command()
            verb, _, argument = line.partition(" ")
            await self._dispatch(verb.upper(), argument.strip())
            if self.channel.last_reply_code == 421:
                # A 421 (normally from a reply override) closes the session, as RFC 5321 servers do.
                return
        if self.errors >= MAX_ERRORS:
            await self.channel.reply(421, "Too many errors, closing channel")

    async def _greet(self) -> None:
        name = self.settings.hostname
        if self.settings.multiline_greeting:
            await self.channel.reply(220, f"{name} ESMTP mailreleased test provider", "ETRN and ODMR service ready")
        else:
            await self.channel.reply(220, f"{name} ESMTP mailreleased test provider ready")

    async def _dispatch(self, verb: str, argument: str) -> None:
        handlers = {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
            "ETRN": self._etrn,
            "ATRN": self._atrn,
        }
        if verb in handlers:
            await handlers[verb](argument)
        elif verb in ("NOOP", "RSET"):
            await self.channel.reply(250, "2.0.0 OK", verb=verb)
        elif verb == "QUIT":
            await self.channel.reply(221, "2.0.0 Bye", verb=verb)
            self.phase = SessionState.DONE
        elif verb in ("MAIL", "RCPT", "DATA", "VRFY", "EXPN", "TURN"):
            await self._error(502, "5.5.1 Command not implemented", verb)
        else:
            await self._error(500, "5.5.2 Command not recognized", verb)

    async def _error(self, code: int, text: str, verb: str) -> None:
        self.errors += 1
        await self.channel.reply(code, text, verb=verb)

    def _capabilities(self) -> list[str]:
        lines = [f"AUTH {' '.join(sasl.MECHANISMS)}", "ATRN", "ETRN"]
        if self.settings.tls_context is not None and not self.channel.tls_active:
            lines.append("STARTTLS")
        lines += ["8BITMIME", "SIZE 0", "ENHANCEDSTATUSCODES"]
        return lines

    async def _ehlo(self, argument: str) -> None:
        if not argument:
            await self._error(501, "5.5.4 Syntax: EHLO hostname", "EHLO")
            return
        self._reset_hello()
        lines = [f"{self.settings.hostname} greets {argument}", *self._capabilities()]
        if self.shared.faults.odd_replies and "EHLO" not in self.shared.faults.replies:
            # A bare first-line code and LF-only line ends, as some broken servers send.
            odd = "250-\n" + "".join(f"250-{line}\n" for line in lines[1:-1]) + f"250 {lines[-1]}\n"
            await self.channel.send_raw(odd.encode("ascii"))
            return
        await self.channel.reply(250, *lines, verb="EHLO")

    async def _helo(self, argument: str) -> None:
        if not argument:
            await self._error(501, "5.5.4 Syntax: HELO hostname", "HELO")
            return
        self._reset_hello()
        await self.channel.reply(250, self.settings.hostname, verb="HELO")

    def _reset_hello(self) -> None:
        # A repeated EHLO keeps an earlier AUTH, as Postfix and Exim do.
        if self.phase is SessionState.GREETED:
            self.phase = SessionState.HELLO

    async def _starttls(self, argument: str) -> None:
        context = self.settings.tls_context
        if context is None or self.channel.tls_active:
            await self._error(502, "5.5.1 STARTTLS not available", "STARTTLS")
            return
        if argument:
            await self._error(501, "5.5.4 Syntax error (no parameters allowed)", "STARTTLS")
            return
        await self.channel.reply(220, "2.0.0 Ready to start TLS", verb="STARTTLS")
        # NOTE: bytes the client pipelined after STARTTLS stay in the stream buffer and are
        # read as if they came through TLS; this test provider does not defend against that.
        await self.channel.start_tls(context)
        self.phase = SessionState.GREETED
        self.username = None

    async def _auth(self, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if self.username is not None:
            await self._error(503, "5.5.1 Already authenticated", "AUTH")
        elif mechanism not in sasl.MECHANISMS:
            await self._error(504, "5.5.4 Unrecognized authentication type", "AUTH")
        elif (
            mechanism in sasl.PLAINTEXT_MECHANISMS
            and self.settings.require_tls_for_plaintext_auth
            and not self.channel.tls_active
        ):
            await self._error(538, "5.7.11 Encryption required for requested authentication mechanism", "AUTH")
        else:
            await self._run_auth(mechanism, initial.strip())

    async def _run_auth(self, mechanism: str, initial: str) -> None:
        try:
            username = await self._exchange(mechanism, initial)
        except sasl.InvalidResponse as exc:
            await self._error(501, f"5.5.2 {exc}", "AUTH")
            return
        except _Cancelled:
            await self._error(501, "5.7.0 Authentication cancelled", "AUTH")
            return
        if username is None or self.shared.faults.refuse_auth:
            await self._error(535, "5.7.8 Authentication credentials invalid", "AUTH")
            return
        self.username = username
        self.phase = SessionState.AUTHENTICATED
        await self.channel.reply(235, "2.7.0 Authentication successful", verb="AUTH")

    async def _exchange(self, mechanism: str, initial: str) -> str | None:
        users = self.settings.users
        if mechanism == "PLAIN":
            response = initial if initial else await self._challenge(b"")
            return sasl.check_plain(users, sasl.decode_response(response))
        if mechanism == "LOGIN":
            if initial:
                name_response = initial
            else:
                name_response = await self._challenge(b"Username:")
            username = sasl.decode_response(name_response).decode("utf-8", errors="replace")
            password = sasl.decode_response(await self._challenge(b"Password:")).decode("utf-8", errors="replace")
            return username if sasl.password_matches(users, username, password) else None
        challenge = sasl.make_cram_challenge(self.settings.hostname)
        return sasl.check_cram_md5(users, challenge, sasl.decode_response(await self._challenge(challenge)))

    async def _challenge(self, challenge: bytes) -> str:
        await self.channel.reply(334, base64.b64encode(challenge).decode("ascii"))
        response = await self.channel.read_secret()
        if response.strip() == "*":
            raise _Cancelled
        return response.strip()

    async def _etrn(self, argument: str) -> None:
        if not argument:
            await self._error(500, "5.5.2 Syntax: ETRN domain", "ETRN")
            return
        self.shared.etrn_requests.append(argument)
        node = argument.lstrip("@#")
        if self.settings.etrn_report_empty and not self.shared.store.for_domains([node]):
            await self.channel.reply(251, f"OK, no messages waiting for node {node}", verb="ETRN")
            return
        await self.channel.reply(250, "Queuing started", verb="ETRN")

    async def _atrn(self, argument: str) -> None:
        if self.username is None:
            await self._error(530, "5.7.0 Authentication required", "ATRN")
            return
        allowed = self.settings.allowed_domains(self.username)
        requested = tuple(d.lower() for d in argument.split(",") if d) if argument else tuple(sorted(allowed))
        self.shared.atrn_requests.append((self.username, requested))
        if not set(requested) <= allowed:
            await self._error(450, "4.7.1 ATRN request refused", "ATRN")
            return
        if set(requested) & self.shared.busy_domains:
            await self._error(451, "4.3.0 Unable to process ATRN request now", "ATRN")
            return
        if not self.shared.store.for_domains(requested):
            await self.channel.reply(453, "You have no mail", verb="ATRN")
            return
        code = await self.channel.reply(250, "OK now reversing the connection", verb="ATRN")
        if code != 250:
            return
        self.phase = SessionState.DONE
        await deliver_queue(self.channel, requested)


class _Cancelled(Exception):
    """The client cancelled the exchange with "*"."""

