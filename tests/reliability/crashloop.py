"""Crash loop: drain an ATRN queue into a Maildir while SIGKILLing mailreleased again and again.

The built-in provider runs as its own process with a queue directory, so a
message leaves its queue only after mailreleased answered its DATA with 250.
Each ``mailreleased once`` run is killed with SIGKILL, either after a random
delay or at a pause point inside the Maildir delivery (see
:mod:`tests.reliability.crashpoint`), and started again, until the kills are
spent and the provider queue is empty. Then every message must be in
``new/`` at least once, complete and byte-identical to the original (apart
from the trace headers and LF line ends), with at most one duplicate per
kill, and ``tmp/`` must be empty.

Full form (160 s on the 2-CPU VM described in docs/reliability.md)::

    python -m tests.reliability.crashloop --messages 1000 --kills 100

The command prints a report and exits 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import email
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailreleased.testing.messages import make_messages

DOMAIN = "example.test"
USER = "customer"
PASSWORD = "crash-loop-secret"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Seconds one unkilled `once` run may take before the harness gives up on it.
RUN_TIMEOUT = 300.0
PROVIDER_START_TIMEOUT = 30.0
# Runs allowed after the last kill to finish the drain.
EXTRA_RUNS = 20
# Interval of the harness's own polling of the child process and the Maildir.
POLL_INTERVAL = 0.002
PAUSE_POINTS = [
    ("write", "before"),
    ("fsync-file", "before"),
    ("fsync-file", "after"),
    ("rename", "before"),
    ("rename", "after"),
    ("fsync-dir", "after"),
]
HEADER_PREFIXES = (b"Return-Path:", b"Delivered-To:", b"Received:", b"\t", b" ")


@dataclasses.dataclass
class Report:
    """What one crash loop did and found."""

    messages: int
    kills_requested: int
    kills: int = 0
    runs: int = 0
    kill_points: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    exit_codes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    stale_tmp_after_kills: int = 0
    tmp_cleaned_at_startup: int = 0
    files: int = 0
    delivered_ids: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    duplicates: int = 0
    partials: list[str] = dataclasses.field(default_factory=list)
    tmp_left: int = 0
    queue_left: int = 0
    hung_runs: int = 0
    pauses_not_reached: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return (
            not self.lost
            and not self.partials
            and self.duplicates <= self.kills
            and self.tmp_left == 0
            and self.queue_left == 0
            and self.hung_runs == 0
            and self.kills == self.kills_requested
        )

    def render(self) -> str:
        """Format the report as plain text lines."""
        lines = [
            f"messages queued:        {self.messages}",
            f"kills (SIGKILL):        {self.kills} of {self.kills_requested} requested",
            f"mailreleased runs:      {self.runs}",
            f"exit codes (unkilled):  {dict(sorted(self.exit_codes.items()))}",
            f"files in new/:          {self.files}",
            f"distinct Message-IDs:   {self.delivered_ids}",
            f"lost:                   {len(self.lost)}",
            f"duplicates:             {self.duplicates}",
            f"partial or corrupt:     {len(self.partials)}",
            f"tmp/ files right after each kill, summed: {self.stale_tmp_after_kills}",
            f"tmp/ files removed by start-up cleaning (maildir_tmp_cleaned): {self.tmp_cleaned_at_startup}",
            f"tmp/ files at the end:  {self.tmp_left}",
            f"provider queue left:    {self.queue_left}",
            f"hung runs:              {self.hung_runs}",
            f"pause points not reached (run ended first): {self.pauses_not_reached}",
            f"wall time:              {self.seconds:.1f} s",
            "kill points:",
        ]
        lines += [f"  {point:<44} {count}" for point, count in sorted(self.kill_points.items())]
        lines.append("result: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


class Provider:
    """The loopback provider as a separate process with a queue directory."""

    def __init__(self, work: Path, messages: int, size: int) -> None:
        self.queue_dir = work / "queue"
        port_file = work / "provider.port"
        log = (work / "provider.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "mailreleased.testing.provider",
                "--listen", "127.0.0.1:0", "--domain", DOMAIN, "--user", f"{USER}:{PASSWORD}",
                "--queue-dir", str(self.queue_dir), "--seed", str(messages), "--size", str(size),
                "--port-file", str(port_file), "--timeout", "60",
            ],
            stdout=log, stderr=log, cwd=REPO_ROOT,
        )
        log.close()
        deadline = time.monotonic() + PROVIDER_START_TIMEOUT
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the provider did not start; see {work / 'provider.log'}")
            time.sleep(0.01)
        self.port = int(port_file.read_text())

    def queued(self) -> int:
        """Return the number of messages still in the provider's queue directory."""
        return len(list(self.queue_dir.glob("*.msg")))

    def stop(self) -> None:
        """Stop the provider with SIGTERM (SIGKILL after 10 seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def write_config(work: Path, port: int) -> Path:
    """Write the mailreleased config for the crash loop and return its path."""
    secret = work / "secret"
    secret.write_text(PASSWORD + "\n")
    config = work / "mailreleased.yaml"
    config.write_text(
        json.dumps(
            {
                "state_dir": str(work / "state"),
                "log": {"format": "json", "level": "info"},
                "targets": [
                    {
                        "name": "odmr",
                        "method": "atrn",
                        "host": "127.0.0.1",
                        "port": port,
                        "domains": [DOMAIN],
                        "tls": "off",
                        "auth": {"username": USER, "password_file": str(secret), "mechanisms": ["CRAM-MD5"]},
                        "timeouts": {"connect": "10s", "greeting": "60s", "reply": "60s"},
                        "delivery": {"type": "maildir", "path": str(work / "Maildir")},
                    }
                ],
            }
        )
    )
    return config


class CrashLoop:
    """Runs and kills ``mailreleased once`` until the provider queue is empty."""

    def __init__(self, work: Path, provider: Provider, config: Path, report: Report, rng: random.Random) -> None:
        self.work = work
        self.provider = provider
        self.config = config
        self.report = report
        self.rng = rng
        self.maildir = work / "Maildir"
        # A killed run leaves tmp/ files that only the next start-up removes, so the loop ends unkilled.
        self.last_run_killed = False
        (work / "logs").mkdir(exist_ok=True)

    def run(self) -> None:
        """Spend every kill, then run unkilled until the queue is empty."""
        report = self.report
        limit = report.kills_requested * 3 + EXTRA_RUNS
        while report.runs < limit:
            if report.kills < report.kills_requested and self.provider.queued() > 0:
                self._killed_run()
            elif self.provider.queued() > 0 or self.last_run_killed:
                self._clean_run()
            else:
                return

    def _start(self, crashpoint: str | None) -> subprocess.Popen[bytes]:
        self.report.runs += 1
        self.last_run_killed = False
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        env.pop("MAILRELEASED_CRASHPOINT", None)
        if crashpoint is not None:
            env["MAILRELEASED_CRASHPOINT"] = f"{crashpoint}:{self.maildir}"
        log = (self.work / "logs" / f"run-{self.report.runs:04d}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crashpoint", "once", "-c", str(self.config), "--json"],
            stdout=log, stderr=log, env=env, cwd=REPO_ROOT,
        )
        log.close()
        return process

    def _clean_run(self) -> None:
        process = self._start(None)
        try:
            code = process.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self.report.hung_runs += 1
            return
        self.report.exit_codes[code] += 1

    def _killed_run(self) -> None:
        budget = self.provider.queued() / max(1, self.report.kills_requested - self.report.kills)
        mode = self._choose_mode(budget)
        if mode.startswith("pause"):
            point, when = self.rng.choice(PAUSE_POINTS)
            count = 1 if budget < 3 else self.rng.randint(1, min(10, int(budget)))
            self._pause_kill(f"{point}:{when}:{count}", f"pause at {point} ({when})")
        else:
            self._timed_kill(mode, self.rng.randint(1, max(1, int(budget))))

    def _choose_mode(self, budget: float) -> str:
        if budget < 3:
            return self.rng.choice(["timed-startup", "pause"])
        return self.rng.choices(["timed-startup", "timed-drain", "pause"], weights=[2, 4, 6])[0]

    def _pause_kill(self, crashpoint: str, label: str) -> None:
        process = self._start(crashpoint)
        deadline = time.monotonic() + RUN_TIMEOUT
        while process.poll() is None:
            if _stopped(process.pid):
                self._kill(process, label)
                return
            if time.monotonic() > deadline:
                self._kill(process, "hung")
                self.report.hung_runs += 1
                return
            time.sleep(POLL_INTERVAL)
        # The run ended before reaching the point (too few messages left); it counts as a clean run.
        self.report.exit_codes[process.returncode] += 1
        self.report.pauses_not_reached += 1

    def _timed_kill(self, mode: str, messages: int) -> None:
        new_before = _count(self.maildir / "new")
        process = self._start(None)
        if mode == "timed-startup":
            deadline = time.monotonic() + self.rng.uniform(0.0, 1.0)
        else:
            # Wait until this run stored ``messages`` messages, then up to 5 ms more, so the kill
            # lands at a random point of the next message while the queue lasts for every kill.
            start_deadline = time.monotonic() + RUN_TIMEOUT
            while _count(self.maildir / "new") - new_before < messages and process.poll() is None:
                if time.monotonic() > start_deadline:
                    break
                time.sleep(POLL_INTERVAL)
            deadline = time.monotonic() + self.rng.uniform(0.0, 0.005)
        while process.poll() is None and time.monotonic() < deadline:
            # On a fast machine a start-up delay can outlast the whole drain, so never let a
            # start-up kill wait past the run's first stored message.
            if mode == "timed-startup" and _count(self.maildir / "new") > new_before:
                break
            time.sleep(POLL_INTERVAL)
        if process.poll() is not None:
            self.report.exit_codes[process.returncode] += 1
            return
        writing = _count_matching(self.maildir / "tmp", f"P{process.pid}Q")
        delivered = _count(self.maildir / "new") - new_before
        if writing:
            phase = "mid-message (own file in tmp/)"
        elif delivered == 0:
            phase = "before this run's first message"
        else:
            phase = "between messages"
        self._kill(process, f"random delay: {phase}")

    def _kill(self, process: subprocess.Popen[bytes], label: str) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.last_run_killed = True
        self.report.kills += 1
        self.report.kill_points[label] += 1
        self.report.stale_tmp_after_kills += _count(self.maildir / "tmp")


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "T"


def _count(directory: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(directory))
    except FileNotFoundError:
        return 0


def _count_matching(directory: Path, fragment: str) -> int:
    try:
        return sum(1 for entry in os.scandir(directory) if fragment in entry.name)
    except FileNotFoundError:
        return 0


def check_maildir(report: Report, maildir: Path, size: int) -> None:
    """Compare the Maildir with the original messages and fill in the loss figures."""
    originals = {
        _message_id(message.data): message.data.replace(b"\r\n", b"\n")
        for message in make_messages(DOMAIN, report.messages, size)
    }
    seen: collections.Counter[str] = collections.Counter()
    for folder in ("new", "cur"):
        for path in sorted((maildir / folder).glob("*")):
            report.files += 1
            problem = _check_file(path.read_bytes(), originals, seen)
            if problem is not None:
                report.partials.append(f"{path.name}: {problem}")
    report.delivered_ids = len(seen)
    report.lost = sorted(set(originals) - set(seen))
    report.duplicates = sum(count - 1 for count in seen.values())
    report.tmp_left = _count(maildir / "tmp")


def _message_id(data: bytes) -> str:
    value = email.message_from_bytes(data)["Message-ID"]
    return str(value).strip() if value is not None else ""


def _check_file(data: bytes, originals: dict[str, bytes], seen: collections.Counter[str]) -> str | None:
    message_id = _message_id(data)
    original = originals.get(message_id)
    if original is None:
        return f"unknown or missing Message-ID {message_id!r}"
    if not data.endswith(original):
        return f"content of {message_id} differs from the original"
    prefix = data[: len(data) - len(original)]
    for line in prefix.splitlines():
        if not line.startswith(HEADER_PREFIXES):
            return f"unexpected line before the original headers: {line[:60]!r}"
    seen[message_id] += 1
    return None


def count_tmp_cleaned(logs: Path) -> int:
    """Sum the ``removed`` counts of the ``maildir_tmp_cleaned`` events in the run logs."""
    removed = 0
    for path in logs.glob("run-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"maildir_tmp_cleaned"' in line:
                removed += int(json.loads(line).get("removed", 0))
    return removed


def run_crash_loop(work: Path, *, messages: int, kills: int, size: int = 4096, seed: int = 1) -> Report:
    """Run the whole crash loop in ``work`` and return its report."""
    report = Report(messages=messages, kills_requested=kills)
    started = time.monotonic()
    provider = Provider(work, messages, size)
    try:
        config = write_config(work, provider.port)
        CrashLoop(work, provider, config, report, random.Random(seed)).run()
        report.queue_left = provider.queued()
    finally:
        provider.stop()
    check_maildir(report, work / "Maildir", size)
    report.tmp_cleaned_at_startup = count_tmp_cleaned(work / "logs")
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the crash loop from the command line; exit 0 if every check passed."""
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crashloop", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages queued at the provider")
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs to deliver")
    parser.add_argument("--size", type=int, default=4096, help="approximate message size in bytes")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the kill plan")
    parser.add_argument("--work-dir", type=Path, help="directory for queue, Maildir and logs (default: a new temporary one)")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mailreleased-crashloop-"))
    work.mkdir(parents=True, exist_ok=True)
    report = run_crash_loop(work, messages=args.messages, kills=args.kills, size=args.size, seed=args.seed)
    print(f"work directory: {work}")
    print(report.render())
    for problem in report.partials[:20]:
        print(f"partial: {problem}")
    if report.lost:
        print(f"lost Message-IDs (first 20): {report.lost[:20]}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
