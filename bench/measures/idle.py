"""Measure 7: memory and CPU of ``mailreleased run`` while it idles between ticks.

The daemon gets one ``etrn`` target (a discard sink) and a 24-hour
interval, so after its first tick at start it only waits. RSS is read from
/proc/PID/status once the first tick has saved its state file, and again at
the end; CPU time (user + system, /proc/PID/stat) is the difference over the
idle window.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from bench.configs import etrn_target, write_config
from bench.context import Context
from bench.measures.relay import mailreleased_command
from bench.procs import REPOSITORY, BenchError, cpu_seconds, proc_status_kib, stop_process, tail
from bench.results import measure_result, row
from bench.servers import start_discard
from bench.stats import summarize

# Seconds to wait for the first tick to write its state file.
FIRST_TICK_TIMEOUT = 30.0
STATE_FILE_GLOB = "*"


def run(context: Context) -> dict[str, Any]:
    """Start the daemon, let it idle ``context.idle_seconds`` and read its RSS and CPU time."""
    directory = context.fresh_dir("idle")
    sink = start_discard(directory)
    config = write_config(directory, [etrn_target("idle", sink.port, ["idle.bench.test"])], interval="24h")
    log_file = directory / "daemon.log"
    try:
        with log_file.open("ab") as log:
            daemon = subprocess.Popen([mailreleased_command(), "run", "-c", str(config)],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY)
        try:
            start = _after_first_tick(daemon, directory / "state", log_file)
            time.sleep(context.idle_seconds)
            if daemon.poll() is not None:
                raise BenchError(f"the daemon exited with {daemon.returncode} while idle:\n{tail(log_file)}")
            end_status = proc_status_kib(daemon.pid)
            end_cpu = cpu_seconds(daemon.pid)
        finally:
            status = stop_process(daemon)
    finally:
        sink.stop()

    if status != 0:
        raise BenchError(f"the daemon exited with {status} on SIGTERM:\n{tail(log_file)}")
    start_rss = start["status"]["VmRSS"] / 1024
    end_rss = end_status["VmRSS"] / 1024
    cpu_percent = (end_cpu - start["cpu"]) / context.idle_seconds * 100

    rows = [
        row("idle daemon RSS after start (first tick done)", "MiB", summarize([start_rss]), goal="<= 45 MiB",
            met=start_rss <= 45),
        row(f"idle daemon RSS after {context.idle_seconds:g} s idle", "MiB", summarize([end_rss]), goal="<= 45 MiB",
            met=end_rss <= 45),
        row(f"idle daemon CPU over {context.idle_seconds:g} s", "% of one core", summarize([cpu_percent]),
            goal="< 0.1%", met=cpu_percent < 0.1),
    ]
    raw = {"start": start, "end": {"status": end_status, "cpu": end_cpu}, "idle_seconds": context.idle_seconds,
           "clock_tick_seconds": 0.01}
    return measure_result(7, "Idle daemon", rows, raw=raw,
                          notes=[f"CPU time is counted in clock ticks of 10 ms; over {context.idle_seconds:g} s "
                                 f"one tick is {1 / context.idle_seconds:.3g}% of a core"])


def _after_first_tick(daemon: subprocess.Popen[bytes], state_dir: Any, log_file: Any) -> dict[str, Any]:
    deadline = time.monotonic() + FIRST_TICK_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise BenchError(f"the daemon exited with {daemon.returncode} at start:\n{tail(log_file)}")
        if state_dir.exists() and any(state_dir.glob(STATE_FILE_GLOB)):
            # Let the tick finish logging and settle before the first reading.
            time.sleep(1.0)
            return {"status": proc_status_kib(daemon.pid), "cpu": cpu_seconds(daemon.pid)}
        time.sleep(0.1)
    raise BenchError(f"the daemon wrote no state file within {FIRST_TICK_TIMEOUT:.0f}s:\n{tail(log_file)}")
