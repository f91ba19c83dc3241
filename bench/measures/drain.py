"""Measures 1 to 3: ATRN drains into the Maildir sink against Postfix smtpd and a discard sink.

The sender is always the built-in provider's delivery client: inside the
provider process for mailreleased (the real ATRN path through ``run_once``),
and through ``bench.feeder`` for the references. Each repetition starts
fresh processes and writes into fresh directories, and the order of the
three receivers rotates between repetitions so that drift on a shared
machine does not favour one of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.configs import atrn_target, write_config
from bench.context import MIB, Context
from bench.postfix import BenchPostfix, postfix_available
from bench.procs import BenchError
from bench.results import measure_result, row
from bench.servers import discard_totals, run_child, run_feeder, start_discard, start_provider
from bench.stats import paired_ratios, summarize

RECEIVERS = ("mailreleased", "postfix", "discard")
# Messages timed per disk-floor pattern; enough for a stable rate, few enough to take seconds.
FLOOR_COUNT = 1_000


def drain_mailreleased(context: Context, count: int, size: int, *, max_message_size: str = "50M") -> dict[str, Any]:
    """Drain ``count`` messages from a fresh provider into a fresh Maildir with fsync; return the child's result."""
    directory = context.fresh_dir("atrn-maildir")
    provider = start_provider(directory, count=count, size=size)
    try:
        delivery = {"type": "maildir", "path": str(directory / "Maildir"), "fsync": True}
        config = write_config(directory, [atrn_target(provider.port, delivery, max_message_size=max_message_size)])
        result = run_child(directory, config)
    finally:
        provider.stop()
    if result["messages"] != count:
        raise BenchError(f"mailreleased received {result['messages']} of {count} expected messages: {result}")
    return result


def drain_postfix(context: Context, count: int, size: int) -> dict[str, Any]:
    """Feed ``count`` messages to a fresh private Postfix's smtpd and check they all reached the hold queue."""
    directory = context.fresh_dir("postfix-smtpd")
    postfix = BenchPostfix(directory / "postfix")
    postfix.start()
    try:
        result = run_feeder(directory, postfix.port, count=count, size=size)
        deadline = time.monotonic() + 30
        while postfix.held_count() < count and time.monotonic() < deadline:
            time.sleep(0.1)
        held_count = postfix.held_count()
    finally:
        postfix.stop()
    if result["messages"] != count or held_count != count:
        raise BenchError(
            f"Postfix accepted {result['messages']} and put {held_count} in its hold queue of {count} messages; see {postfix.log_file}"
        )
    return result


def drain_discard(context: Context, count: int, size: int) -> dict[str, Any]:
    """Feed ``count`` messages to a fresh discard sink."""
    directory = context.fresh_dir("discard")
    sink = start_discard(directory)
    try:
        result = run_feeder(directory, sink.port, count=count, size=size)
    finally:
        sink.stop()
    received_count = discard_totals(directory)["messages"]
    if result["messages"] != count or received_count != count:
        raise BenchError(f"the discard sink took {received_count} of {count} messages")
    return result


def disk_write_rate(context: Context, count: int, size: int) -> float:
    """Write ``count`` files of ``size`` bytes with fsync each into a fresh directory; return bytes per second."""
    directory = context.fresh_dir("disk-rate")
    block = os.urandom(size)
    started = time.perf_counter()
    for index in range(count):
        descriptor = os.open(directory / f"{index:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, block)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return count * size / (time.perf_counter() - started)


def fsync_floor(context: Context, count: int, size: int) -> dict[str, float]:
    """Time the disk steps of one message, ``count`` times each; return messages per second.

    ``one_fsync`` creates, writes and fsyncs a file (one disk sync per
    message, as Postfix's cleanup does). ``maildir`` also renames the file
    from tmp/ into new/ and fsyncs new/, as the Maildir sink does.
    """
    directory = context.fresh_dir("fsync-floor")
    (directory / "tmp").mkdir()
    (directory / "new").mkdir()
    block = b"x" * size
    rates = {}
    for pattern in ("one_fsync", "maildir"):
        started = time.perf_counter()
        for index in range(count):
            temporary = directory / "tmp" / f"{pattern}-{index:06d}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(descriptor, block)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            if pattern == "maildir":
                os.rename(temporary, directory / "new" / temporary.name)
                new_directory = os.open(directory / "new", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(new_directory)
                finally:
                    os.close(new_directory)
        rates[pattern] = count / (time.perf_counter() - started)
    return rates


def _drain_series(
    context: Context, count: int, size: int, *, with_disk: bool
) -> tuple[dict[str, list[dict[str, Any]]], list[str], list[Any]]:
    unavailable: list[str] = []
    postfix_reason = postfix_available()
    if postfix_reason is not None:
        unavailable.append(f"Postfix smtpd: {postfix_reason}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RECEIVERS}
    # Per repetition: bytes/s of whole files (1 MiB drain) or fsync_floor() rates (4 KiB drain).
    disk_rates: list[Any] = []
    runners = {"mailreleased": drain_mailreleased, "postfix": drain_postfix, "discard": drain_discard}
    for rep in range(context.reps):
        order = RECEIVERS[rep % 3:] + RECEIVERS[:rep % 3]
        for name in order:
            if name == "postfix" and postfix_reason is not None:
                continue
            context.log(f"drain {count} x {size} B, repetition {rep + 1}: {name}")
            runs[name].append(runners[name](context, count, size))
        if with_disk:
            disk_rates.append(disk_write_rate(context, count, size))
        else:
            disk_rates.append(fsync_floor(context, min(count, FLOOR_COUNT), size))
    return runs, unavailable, disk_rates


def _rates(runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    messages = [run["messages"] / run["seconds"] for run in runs]
    mib = [run["bytes"] / run["seconds"] / MIB for run in runs]
    return messages, mib


def _drain_rows(label: str, runs: dict[str, list[dict[str, Any]]], goal_unit: str, goal: str) -> list[dict[str, Any]]:
    ours_messages, ours_mib = _rates(runs["mailreleased"])
    rows = []
    for reference, name in (("postfix", "Postfix smtpd (hold queue, fsync)"), ("discard", "discard sink (limit)")):
        theirs_messages, theirs_mib = _rates(runs[reference])
        for unit, ours, theirs in (("messages/s", ours_messages, theirs_messages), ("MiB/s", ours_mib, theirs_mib)):
            ratio = paired_ratios(ours, theirs) if theirs else None
            is_goal = reference == "postfix" and unit == goal_unit
            met = None
            if is_goal and ratio is not None and ratio["median"] is not None:
                met = ratio["median"] >= 1.5
            rows.append(row(f"{label}, {unit}", unit, summarize(ours), reference_name=name,
                            reference=summarize(theirs) if theirs else None, ratio=ratio,
                            goal=goal if is_goal else None, met=met, goal_on="ratio"))
    return rows


def run_small(context: Context) -> dict[str, Any]:
    """Measure 1: drain many 4 KiB messages."""
    count, size = context.sizes.small_count, context.sizes.small_size
    runs, unavailable, floors = _drain_series(context, count, size, with_disk=False)
    label = f"ATRN drain {count:,} x {size // 1024} KiB"
    rows = _drain_rows(label, runs, "messages/s", ">= 1.5x Postfix smtpd messages/s")
    ours, _ = _rates(runs["mailreleased"])
    for pattern, name in (("one_fsync", "disk floor: create, write, fsync"),
                          ("maildir", "disk floor: fsync file, rename into new/, fsync new/")):
        floor = [rates[pattern] for rates in floors]
        rows.append(row(f"{label}, messages/s against the disk alone", "messages/s", summarize(ours),
                        reference_name=f"{name} ({min(count, FLOOR_COUNT):,} x {size // 1024} KiB)",
                        reference=summarize(floor), ratio=paired_ratios(ours, floor)))
    return measure_result(1, f"ATRN drain, {count:,} x {size // 1024} KiB messages", rows,
                          raw={**runs, "disk_floor_messages_per_second": floors}, unavailable=unavailable)


def run_large(context: Context) -> dict[str, Any]:
    """Measure 2: drain 1 MiB messages, and the disk's own write-and-fsync rate."""
    count, size = context.sizes.large_count, context.sizes.large_size
    runs, unavailable, disk = _drain_series(context, count, size, with_disk=True)
    label = f"ATRN drain {count:,} x {size // MIB} MiB"
    rows = _drain_rows(label, runs, "MiB/s", ">= 1.5x Postfix smtpd MiB/s")
    _, ours_mib = _rates(runs["mailreleased"])
    disk_mib = [rate / MIB for rate in disk]
    rows.append(row(f"{label}, fraction of disk write+fsync rate", "MiB/s", summarize(ours_mib),
                    reference_name=f"disk: {count} x {size // MIB} MiB files, write + fsync each",
                    reference=summarize(disk_mib), ratio=paired_ratios(ours_mib, disk_mib),
                    goal="reported (no fixed goal)", met=None, goal_on="ratio"))
    return measure_result(2, f"ATRN drain, {count:,} x {size // MIB} MiB messages", rows,
                          raw={**runs, "disk_bytes_per_second": disk}, unavailable=unavailable)


def run_huge(context: Context) -> dict[str, Any]:
    """Measure 3: peak RSS of the receiving process while one very large message arrives."""
    size = context.sizes.huge_size
    limit = f"{size // MIB + 64}M"
    huge, small = [], []
    for rep in range(context.reps):
        context.log(f"one {size // MIB} MiB message, repetition {rep + 1}")
        huge.append(drain_mailreleased(context, 1, size, max_message_size=limit))
        small.append(drain_mailreleased(context, 1, context.sizes.small_size, max_message_size=limit))
    growth = [(run["peak_rss_kib"] - run["baseline_rss_kib"]) / 1024 for run in huge]
    small_growth = [(run["peak_rss_kib"] - run["baseline_rss_kib"]) / 1024 for run in small]
    peak = [run["peak_rss_kib"] / 1024 for run in huge]
    baseline = [run["baseline_rss_kib"] / 1024 for run in huge]
    growth_summary = summarize(growth)
    rows = [
        row(f"one {size // MIB} MiB message: peak RSS growth over the idle baseline", "MiB", growth_summary,
            reference_name="same process, one 4 KiB message", reference=summarize(small_growth),
            goal="<= 32 MiB", met=growth_summary["median"] <= 32 if growth_summary["median"] is not None else None),
        row(f"one {size // MIB} MiB message: peak RSS (VmHWM)", "MiB", summarize(peak),
            reference_name="idle baseline RSS before the run", reference=summarize(baseline)),
        row(f"one {size // MIB} MiB message: drain rate", "MiB/s",
            summarize([run["bytes"] / run["seconds"] / MIB for run in huge])),
    ]
    return measure_result(3, f"Memory while receiving one {size // MIB} MiB message", rows, raw={"huge": huge, "small": small})
