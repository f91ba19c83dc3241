"""Run one mailreleased processing run in this process and report time and memory as JSON.

Used as ``python -m bench.child --config FILE --result FILE``. It loads the
config and sets up logging as ``mailreleased once`` does, imports every
module a run may load, then records VmRSS (the idle baseline), resets the
peak with ``/proc/self/clear_refs`` and times ``run_once(force=True)``.
Afterwards VmHWM is the peak resident set size during the run itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import json
import pkgutil
import time
from pathlib import Path

from bench.procs import proc_status_kib, raise_open_file_limit

# Packages whose modules a run imports lazily; importing them first keeps imports out of the peak.
PRELOADED_PACKAGES = ("mailreleased.signal", "mailreleased.smtp", "mailreleased.odmr")


def preload() -> None:
    """Import every module of PRELOADED_PACKAGES."""
    for name in PRELOADED_PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(module.name)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); return whether the kernel allowed it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run(config_path: Path) -> dict[str, object]:
    """Load ``config_path``, run one forced processing run and return the measurements."""
    from mailreleased.config.loader import load_config
    from mailreleased.log import configure_logging, register_secret
    from mailreleased.runner import run_once

    open_files = raise_open_file_limit()
    config = load_config(config_path)
    configure_logging(config.log.format, config.log.level)
    for target in config.targets:
        if target.auth is not None:
            register_secret(target.auth.secret.get_secret_value(), target.auth.username)
    preload()
    baseline = proc_status_kib_self()
    peak_reset = reset_peak_rss()
    started = time.perf_counter()
    records = asyncio.run(run_once(config, force=True))
    elapsed = time.perf_counter() - started
    after = proc_status_kib_self()
    outcomes = collections.Counter(str(record.outcome) for record in records)
    durations = [record.duration_ms for record in records if record.duration_ms is not None]
    return {
        "seconds": elapsed,
        "records": len(records),
        "outcomes": dict(outcomes),
        "messages": sum(record.messages or 0 for record in records),
        "bytes": sum(record.bytes or 0 for record in records),
        "max_record_ms": max(durations) if durations else None,
        "baseline_rss_kib": baseline.get("VmRSS"),
        "peak_rss_kib": after.get("VmHWM"),
        "peak_reset": peak_reset,
        "open_file_limit": open_files,
        "details": sorted({record.detail for record in records if record.detail})[:5],
    }


def proc_status_kib_self() -> dict[str, int]:
    """Return this process's /proc status memory fields in KiB."""
    import os

    return proc_status_kib(os.getpid())


def main() -> None:
    """Run the child and write its JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench.child", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="mailreleased config file")
    parser.add_argument("--result", type=Path, required=True, help="file that receives the JSON result")
    args = parser.parse_args()
    args.result.write_text(json.dumps(run(args.config)))


if __name__ == "__main__":
    main()
