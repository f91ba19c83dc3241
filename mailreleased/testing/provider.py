"""The loopback ETRN and ODMR provider: listeners, lifecycle and the public test API.

Example::

    async with Provider(domains=["example.test"], users={"user": "secret"},
                        queue=make_messages("example.test", 3)) as provider:
        ...  # connect to provider.host, provider.port
        assert not provider.queue

Run ``python -m mailreleased.testing.provider --help`` for the process form.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from mailreleased.testing.channel import Channel
from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import QueuedMessage, make_messages
from mailreleased.testing.session import ServerSession
from mailreleased.testing.state import ProviderSettings, ProviderState, Rejection, TranscriptEntry
from mailreleased.testing.store import MessageStore
from mailreleased.testing.wire import ConnectionLost

__all__ = [
    "Faults",
    "Provider",
    "QueuedMessage",
    "Rejection",
    "TranscriptEntry",
    "check_listen_host",
    "make_messages",
]

logger = logging.getLogger("mailreleased.testing.provider")

LOOPBACK = "127.0.0.1"
# Seconds that closing the provider waits for open sessions after cancelling them.
SHUTDOWN_TIMEOUT = 5.0


def check_listen_host(host: str, *, allow_non_loopback: bool = False) -> None:
    """Raise ValueError unless ``host`` is a loopback IP literal or ``allow_non_loopback`` is set."""
    if allow_non_loopback:
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"listen address {host!r} is not an IP address; use 127.0.0.1 or ::1 "
            "(names are not resolved, so that the provider never binds beyond loopback by accident)"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"listen address {host!r} is not a loopback address; use 127.0.0.1 or ::1, "
            "or pass allow_non_loopback=True to bind it on purpose"
        )


class Provider:
    """A mail host that holds a queue and releases it on ETRN (recorded) or ATRN (delivered)."""

    def __init__(
        self,
        *,
        domains: Iterable[str] = ("example.test",),
        users: Mapping[str, str] | None = None,
        user_domains: Mapping[str, Collection[str]] | None = None,
        queue: Iterable[QueuedMessage] = (),
        queue_dir: Path | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        extra_listeners: Sequence[tuple[str, int]] = (),
        allow_non_loopback: bool = False,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        tls_context: ssl.SSLContext | None = None,
        hostname: str = "provider.test",
        multiline_greeting: bool = False,
        require_tls_for_plaintext_auth: bool = False,
        max_messages_per_session: int | None = None,
        use_pipelining: bool = True,
        etrn_report_empty: bool = False,
        command_timeout: float = 300.0,
        reply_timeout: float = 300.0,
        record_transcript: bool = True,
        faults: Faults | None = None,
    ) -> None:
        self._addresses_requested = [(host, port), *extra_listeners]
        for listen_host, _ in self._addresses_requested:
            check_listen_host(listen_host, allow_non_loopback=allow_non_loopback)
        if tls_context is None and tls_cert is not None:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(tls_cert, tls_key)
        domain_set = frozenset(domain.lower() for domain in domains)
        settings = ProviderSettings(
            domains=domain_set,
            users=dict(users or {}),
            user_domains={
                name: frozenset(domain.lower() for domain in allowed)
                for name, allowed in (user_domains or {}).items()
            },
            hostname=hostname,
            multiline_greeting=multiline_greeting,
            tls_context=tls_context,
            require_tls_for_plaintext_auth=require_tls_for_plaintext_auth,
            max_messages_per_session=max_messages_per_session,
            use_pipelining=use_pipelining,
            etrn_report_empty=etrn_report_empty,
            command_timeout=command_timeout,
            reply_timeout=reply_timeout,
            record_transcript=record_transcript,
        )
        self._initial_queue = list(queue)
        self._queue_dir = queue_dir
        self._state: ProviderState | None = None
        self._settings = settings
        self._faults = faults if faults is not None else Faults()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.addresses: list[tuple[str, int]] = []

    async def start(self) -> None:
        """Open the queue and bind every listener; raise OSError if a bind fails."""
        store = MessageStore(self._queue_dir)
        state = ProviderState(settings=self._settings, store=store, faults=self._faults)
        # With a queue directory the initial messages are added once, so a restarted provider
        # continues with what is left instead of queueing everything again.
        if self._initial_queue and not store.is_seeded():
            store.add(self._initial_queue)
            store.mark_seeded()
        self._state = state
        try:
            for listen_host, listen_port in self._addresses_requested:
                server = await asyncio.start_server(self._accept, listen_host, listen_port)
                self._servers.append(server)
                bound = server.sockets[0].getsockname()
                self.addresses.append((str(bound[0]), int(bound[1])))
        except OSError:
            await self.close()
            raise
        logger.info("provider listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def close(self) -> None:
        """Stop listening, cancel open sessions and wait for them, at most SHUTDOWN_TIMEOUT seconds."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_TIMEOUT)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> Provider:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        state = self.state
        state.sessions += 1
        channel = Channel(reader, writer, state, state.sessions)
        try:
            await ServerSession(channel).run()
        except (ConnectionLost, ConnectionError, TimeoutError, ssl.SSLError) as exc:
            logger.info("session %d ended: %s", channel.session, exc or type(exc).__name__)
        except asyncio.CancelledError:
            # close() cancelled the session. Ending normally keeps Python 3.11's
            # start_server callback from logging the cancelled task as an error.
            logger.info("session %d cancelled because the provider is closing", channel.session)
        finally:
            self._tasks.discard(task)
            await channel.close()

    @property
    def state(self) -> ProviderState:
        """The shared state; only available between start() and the end of the provider."""
        if self._state is None:
            raise RuntimeError("the provider is not started; use 'async with Provider(...)' or await start()")
        return self._state

    @property
    def host(self) -> str:
        """Address of the first listener."""
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        """Port of the first listener."""
        return self.addresses[0][1]

    @property
    def faults(self) -> Faults:
        """Fault switches; change them at any time."""
        return self._faults

    @property
    def queue(self) -> list[QueuedMessage]:
        """Messages waiting for delivery, oldest first."""
        return self.state.store.messages()

    @property
    def delivered(self) -> list[QueuedMessage]:
        """Messages the customer acknowledged with 250, in delivery order.

        File-backed messages (with ``queue_dir``) lose their bytes when
        delivered, because the queue file is removed.
        """
        return self.state.delivered

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """Lines sent and received, with AUTH responses replaced by a placeholder.

        Each reply from the customer is one entry, multi-line replies joined by spaces.
        """
        return self.state.transcript

    @property
    def etrn_requests(self) -> list[str]:
        """ETRN arguments received, exactly as sent."""
        return self.state.etrn_requests

    @property
    def atrn_requests(self) -> list[tuple[str, tuple[str, ...]]]:
        """(user, requested domains) for every ATRN from an authenticated customer."""
        return self.state.atrn_requests

    @property
    def rejections(self) -> list[Rejection]:
        """5xx replies the customer gave to queued messages, which stay queued."""
        return self.state.rejections

    async def wait_idle(self, timeout: float) -> None:
        """Wait until every open session has ended; raise TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(list(self._tasks))

    def add(self, *messages: QueuedMessage) -> None:
        """Queue more messages while the provider runs."""
        self.state.store.add(messages)

    def received_lines(self, session: int | None = None) -> list[str]:
        """Return the lines the provider received, optionally from one session only."""
        return [
            entry.line
            for entry in self.transcript
            if entry.direction == "received" and (session is None or entry.session == session)
        ]


if __name__ == "__main__":
    from mailreleased.testing.cli import main

    raise SystemExit(main())
