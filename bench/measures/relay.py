"""Measure 4: fetchmail's ODMR mode against mailreleased's SMTP sink, both relaying to one listener.

fetchmail (Debian's package) authenticates with CRAM-MD5, sends ATRN and
then proxies the provider's SMTP session byte for byte to its ``smtphost``.
mailreleased receives each message itself and relays it with its ``smtp``
delivery. Both relay to the discard sink and start from the same provider
queue, and both are timed as a user runs them: the whole process, from
exec to exit.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.configs import atrn_target, write_config
from bench.context import Context
from bench.procs import LOOPBACK, BenchError
from bench.results import measure_result, row
from bench.servers import DOMAIN, PASSWORD, USER, discard_totals, start_discard, start_provider, timed_command
from bench.stats import paired_ratios, summarize

FETCHMAIL = "fetchmail"


def mailreleased_command() -> str:
    """Return the ``mailreleased`` console script next to this interpreter."""
    return str(Path(sys.executable).with_name("mailreleased"))


def _fetchmail_once(context: Context, count: int, size: int) -> float:
    directory = context.fresh_dir("fetchmail-odmr")
    sink = start_discard(directory)
    provider = start_provider(directory, count=count, size=size)
    try:
        rcfile = directory / "fetchmailrc"
        rcfile.write_text(
            f"poll {LOOPBACK} proto odmr port {provider.port}\n"
            f"    user {USER} password {PASSWORD}\n"
            f"    fetchdomains {DOMAIN}\n"
            f"    smtphost {LOOPBACK}/{sink.port}\n"
        )
        rcfile.chmod(0o600)
        environment = {**os.environ, "HOME": str(directory), "FETCHMAILHOME": str(directory)}
        seconds, status = timed_command(
            [FETCHMAIL, "-N", "-f", str(rcfile), "--nosyslog"], directory / "fetchmail.log", env=environment
        )
    finally:
        provider.stop()
        sink.stop()
    received_count = discard_totals(directory)["messages"]
    if status != 0 or received_count != count:
        raise BenchError(f"fetchmail exited with {status} and relayed {received_count} of {count} messages; see {directory}/fetchmail.log")
    return seconds


def _mailreleased_once(context: Context, count: int, size: int) -> float:
    directory = context.fresh_dir("mailreleased-relay")
    sink = start_discard(directory)
    provider = start_provider(directory, count=count, size=size)
    try:
        delivery = {"type": "smtp", "host": LOOPBACK, "port": sink.port}
        config = write_config(directory, [atrn_target(provider.port, delivery)])
        seconds, status = timed_command(
            [mailreleased_command(), "once", "-c", str(config), "--force", "--json"], directory / "once.log"
        )
    finally:
        provider.stop()
        sink.stop()
    received_count = discard_totals(directory)["messages"]
    if status != 0 or received_count != count:
        raise BenchError(f"mailreleased once exited with {status} and relayed {received_count} of {count} messages; see {directory}/once.log")
    return seconds


def run(context: Context) -> dict[str, Any]:
    """Time both ODMR customers relaying the same queue to the discard sink."""
    count, size = context.sizes.relay_count, context.sizes.small_size
    unavailable = []
    have_fetchmail = shutil.which(FETCHMAIL) is not None
    if not have_fetchmail:
        unavailable.append("fetchmail: not installed; apt-get install -y fetchmail (or run .ci/install-peers)")
    ours: list[float] = []
    theirs: list[float] = []
    for rep in range(context.reps):
        context.log(f"ODMR relay of {count} x {size} B, repetition {rep + 1}")
        if have_fetchmail and rep % 2 == 1:
            theirs.append(_fetchmail_once(context, count, size))
        ours.append(_mailreleased_once(context, count, size))
        if have_fetchmail and rep % 2 == 0:
            theirs.append(_fetchmail_once(context, count, size))
    ours_rate = [count / seconds for seconds in ours]
    theirs_rate = [count / seconds for seconds in theirs]
    label = f"ODMR relay {count:,} x {size // 1024} KiB to an SMTP listener"
    rows = [
        row(f"{label}, messages/s", "messages/s", summarize(ours_rate),
            reference_name="fetchmail 6.4 ODMR (byte proxy)", reference=summarize(theirs_rate) if theirs else None,
            ratio=paired_ratios(ours_rate, theirs_rate) if theirs else None),
        row(f"{label}, wall time of one poll", "s", summarize(ours),
            reference_name="fetchmail 6.4 ODMR (byte proxy)", reference=summarize(theirs) if theirs else None,
            ratio=paired_ratios(ours, theirs) if theirs else None),
    ]
    return measure_result(4, "ODMR relay: fetchmail against mailreleased's smtp sink", rows,
                          raw={"mailreleased_seconds": ours, "fetchmail_seconds": theirs}, unavailable=unavailable)
