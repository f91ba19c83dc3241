"""Soak: many daemon processing runs in one process, watching RSS and open file descriptors.

Each run goes through ``Daemon.tick`` like a scheduled run: it signals an
ETRN target and a connect-poke target on loopback fakes served by the same
event loop, logs its outcome lines (JSON, to /dev/null) and saves the state
file. Every ``--sample`` runs the harness records RSS and the number of
open descriptors. RSS drift is measured from the end of a warm-up (the
first tenth of the runs), because caches and allocator pools fill first.

Full form::

    python -m tests.reliability.soak --runs 100000

It prints the samples' summary and exits 0 if RSS grew less than 5 MiB after
warm-up and the descriptor count came back to its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import structlog

from mailreleased.config.loader import parse_config
from mailreleased.daemon import Daemon
from mailreleased.log import configure_logging

MAX_RSS_DRIFT = 5 * 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass
class SoakReport:
    """Samples and totals of one soak."""

    runs: int
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    samples: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # (run, rss bytes, fds)
    baseline_rss: int = 0
    baseline_fds: int = 0
    final_rss: int = 0
    max_rss: int = 0
    final_fds: int = 0
    max_fds: int = 0
    seconds: float = 0.0

    @property
    def rss_drift(self) -> int:
        """Growth of RSS from the end of warm-up to the highest later sample, in bytes."""
        return self.max_rss - self.baseline_rss

    @property
    def ok(self) -> bool:
        """Whether RSS stayed within MAX_RSS_DRIFT and no descriptor leaked."""
        failures = sum(count for outcome, count in self.outcomes.items() if outcome not in ("released",))
        return self.rss_drift < MAX_RSS_DRIFT and self.final_fds <= self.baseline_fds and failures == 0

    def render(self) -> str:
        """Format the report as plain text lines."""
        mib = 1024 * 1024
        return "\n".join([
            f"processing runs:    {self.runs} ({self.runs * 2} signals)",
            f"outcomes:           {dict(self.outcomes)}",
            f"RSS after warm-up:  {self.baseline_rss / mib:.2f} MiB",
            f"RSS max after that: {self.max_rss / mib:.2f} MiB (drift {self.rss_drift / mib:+.2f} MiB)",
            f"RSS at the end:     {self.final_rss / mib:.2f} MiB",
            f"open fds:           baseline {self.baseline_fds}, max {self.max_fds}, end {self.final_fds}",
            f"wall time:          {self.seconds:.1f} s ({self.runs / max(self.seconds, 1e-9):.0f} runs/s)",
            "result: " + ("PASS" if self.ok else "FAIL"),
        ])


def rss_bytes() -> int:
    """Return this process's resident set size in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def open_fds() -> int:
    """Return the number of open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


async def _fake_etrn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal ETRN server: greet, answer EHLO, ETRN and QUIT, then close."""
    try:
        writer.write(b"220 fake.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-fake.test\r\n250 ETRN\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 Queuing started\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _fake_poke(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept a connect poke and close once the client does."""
    try:
        await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def soak(runs: int, work: Path, sample_every: int) -> SoakReport:
    """Run ``runs`` processing runs against loopback fakes and return the report."""
    etrn_server = await asyncio.start_server(_fake_etrn, "127.0.0.1", 0)
    poke_server = await asyncio.start_server(_fake_poke, "127.0.0.1", 0)
    etrn_port = etrn_server.sockets[0].getsockname()[1]
    poke_port = poke_server.sockets[0].getsockname()[1]
    config = parse_config(
        f"""
        state_dir: {work / "state"}
        log: {{format: json, level: info}}
        control: {{socket: {work / "control.sock"}}}
        targets:
          - {{name: etrn, method: etrn, host: 127.0.0.1, port: {etrn_port}, domains: [example.test], tls: "off",
              timeouts: {{connect: 5s, greeting: 5s, reply: 5s}}}}
          - {{name: poke, method: connect, host: 127.0.0.1, port: {poke_port}, timeouts: {{connect: 5s}}}}
        """
    )
    daemon = Daemon(config)
    daemon.store.load()
    names = [target.name for target in config.targets]
    report = SoakReport(runs=runs)
    warm_up = max(1, runs // 10)
    started = time.monotonic()
    try:
        for run in range(1, runs + 1):
            records = await daemon.run(names)
            report.outcomes.update(str(record.outcome) for record in records)
            if run == warm_up:
                report.baseline_rss, report.baseline_fds = rss_bytes(), open_fds()
            if run % sample_every == 0 or run == runs:
                rss, fds = rss_bytes(), open_fds()
                report.samples.append((run, rss, fds))
                if run > warm_up:
                    report.max_rss = max(report.max_rss, rss)
                    report.max_fds = max(report.max_fds, fds)
    finally:
        etrn_server.close()
        poke_server.close()
        await etrn_server.wait_closed()
        await poke_server.wait_closed()
    report.seconds = time.monotonic() - started
    report.final_rss, report.final_fds = rss_bytes(), open_fds()
    report.max_rss = max(report.max_rss, report.baseline_rss)
    return report


def run_soak(runs: int, work: Path, sample_every: int = 500) -> SoakReport:
    """Log to /dev/null while the soak runs in a fresh event loop, then restore the logging set-up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog_config = structlog.get_config()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - must stay open for the logging handler
    configure_logging("json", "info", stream=devnull)
    try:
        return asyncio.run(soak(runs, work, sample_every))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)
        devnull.close()


def main(argv: list[str] | None = None) -> int:
    """Run the soak from the command line; exit 0 if RSS and descriptors stayed flat."""
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="processing runs to do")
    parser.add_argument("--sample", type=int, default=1000, help="take an RSS and fd sample every N runs")
    parser.add_argument("--work-dir", type=Path, help="directory for the state file (default: a new temporary one)")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mailreleased-soak-"))
    report = run_soak(args.runs, work, args.sample)
    print(report.render())
    print(f"max RSS of the process (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print("samples (run, RSS MiB, fds):")
    for run, rss, fds in report.samples[:: max(1, len(report.samples) // 20)]:
        print(f"  {run:>7} {rss / 1024 / 1024:8.2f} {fds:4d}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
