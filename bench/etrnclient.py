"""A minimal ETRN client: the reference for mailreleased's ETRN batches.

For each group of PER_CONNECTION domains it connects, reads the greeting,
sends EHLO, one ETRN per domain (each waiting for its reply), QUIT, and
closes, one connection after another, as mailreleased does. It checks only
reply codes and keeps no records. Run it as ``python -m bench.etrnclient``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.procs import LOOPBACK

PER_CONNECTION = 8


async def read_reply(reader: asyncio.StreamReader) -> int:
    """Read one possibly multi-line reply and return its code."""
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError(f"short reply line {line!r}")
        if line[3:4] != b"-":
            return int(line[:3])


async def release(port: int, domains: list[str]) -> dict[str, float | int]:
    """Send ETRN for every domain, PER_CONNECTION per connection; return time and reply counts."""
    accepted = 0
    started = time.perf_counter()
    for start in range(0, len(domains), PER_CONNECTION):
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        await read_reply(reader)
        writer.write(b"EHLO client.bench.test\r\n")
        await read_reply(reader)
        for domain in domains[start : start + PER_CONNECTION]:
            writer.write(f"ETRN {domain}\r\n".encode("ascii"))
            if 250 <= await read_reply(reader) <= 253:
                accepted += 1
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
        writer.close()
        await writer.wait_closed()
    return {"seconds": time.perf_counter() - started, "domains": len(domains), "accepted": accepted}


def main() -> None:
    """Run the client once and write its JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench.etrnclient", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port of the ETRN server")
    parser.add_argument("--domains", type=int, required=True, help="release d0.bench.test .. d<N-1>.bench.test")
    parser.add_argument("--result", type=Path, required=True, help="file that receives the JSON result")
    args = parser.parse_args()
    domains = [f"d{index}.bench.test" for index in range(args.domains)]
    args.result.write_text(json.dumps(asyncio.run(release(args.port, domains))))


if __name__ == "__main__":
    main()
