"""The provider's delivery client aimed at any SMTP listener: the reference sender.

After ATRN the built-in provider delivers its queue with
``mailreleased.testing.reversal.deliver_queue`` over the turned-around
connection. This adapter runs that same function over a fresh connection to
a listener of our choice (Postfix's smtpd, the discard sink), so every
receiver in a drain measure gets the same byte stream from the same client
code. Run it as ``python -m bench.feeder``; it writes a JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from mailreleased.testing.channel import Channel
from mailreleased.testing.faults import Faults
from mailreleased.testing.messages import make_messages
from mailreleased.testing.reversal import deliver_queue
from mailreleased.testing.state import ProviderSettings, ProviderState
from mailreleased.testing.store import MessageStore

from bench.procs import LOOPBACK


def build_state(domain: str, count: int, size: int) -> ProviderState:
    """Return provider state holding the queue ``python -m mailreleased.testing.provider --seed`` would hold."""
    settings = ProviderSettings(
        domains=frozenset({domain}), users={}, user_domains={}, record_transcript=False
    )
    store = MessageStore(None)
    store.add(make_messages(domain, count, size))
    return ProviderState(settings=settings, store=store, faults=Faults())


async def feed(port: int, state: ProviderState, domain: str) -> dict[str, float | int]:
    """Deliver the queue in ``state`` to ``LOOPBACK:port`` and time it from connect to the QUIT reply."""
    queued_bytes = sum(message.size for message in state.store.messages())
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    channel = Channel(reader, writer, state, 1)
    await deliver_queue(channel, [domain])
    elapsed = time.perf_counter() - started
    delivered = len(state.delivered)
    return {
        "seconds": elapsed,
        "messages": delivered,
        "bytes": sum(message.size for message in state.delivered),
        "queued_bytes": queued_bytes,
        "rejections": len(state.rejections),
        "left": len(state.store),
    }


def main() -> None:
    """Run one feed and write its result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.feeder", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port of the SMTP listener")
    parser.add_argument("--domain", default="bench.test", help="recipient domain of the generated messages")
    parser.add_argument("--count", type=int, required=True, help="number of messages")
    parser.add_argument("--size", type=int, required=True, help="approximate message size in bytes")
    parser.add_argument("--result", type=Path, required=True, help="file that receives the JSON result")
    args = parser.parse_args()
    state = build_state(args.domain, args.count, args.size)
    result = asyncio.run(feed(args.port, state, args.domain))
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
