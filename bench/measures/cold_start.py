"""Measure 8: cold start of ``mailreleased once`` on one ETRN target, against ``fetchmail -p ETRN``.

Both release the same domain at the same private Postfix and are timed
from exec to exit, alternating, ``cold_runs`` times each. The start of the
bare interpreter (``python -c pass``) is timed the same way as the floor
that any Python program pays.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from bench.configs import etrn_target, write_config
from bench.context import Context
from bench.measures.relay import FETCHMAIL, mailreleased_command
from bench.postfix import BenchPostfix, postfix_available
from bench.procs import LOOPBACK, BenchError
from bench.results import measure_result, row
from bench.servers import Server, start_provider, timed_command
from bench.stats import paired_ratios, summarize

DOMAIN = "d1.bench.test"


def run(context: Context) -> dict[str, Any]:
    """Time both clients ``cold_runs`` times against one Postfix instance."""
    unavailable = []
    reason = postfix_available()
    if reason is not None:
        unavailable.append(f"Postfix: {reason}; the built-in provider is the ETRN server instead")
    have_fetchmail = shutil.which(FETCHMAIL) is not None
    if not have_fetchmail:
        unavailable.append("fetchmail: not installed; apt-get install -y fetchmail (or run .ci/install-peers)")

    directory = context.fresh_dir("cold-start")
    server: BenchPostfix | Server
    if reason is None:
        server = BenchPostfix(directory / "postfix")
        server.start()
    else:
        server = start_provider(directory, count=0, size=0)
    ours: list[float] = []
    theirs: list[float] = []
    floor: list[float] = []
    try:
        config = write_config(directory, [etrn_target("postfix", server.port, [DOMAIN])])
        rcfile = directory / "fetchmailrc"
        rcfile.write_text(f"poll {LOOPBACK} proto etrn port {server.port}\n    fetchdomains {DOMAIN}\n")
        rcfile.chmod(0o600)
        environment = {**os.environ, "HOME": str(directory), "FETCHMAILHOME": str(directory)}

        context.log(f"cold start, {context.sizes.cold_runs} runs each")
        for _ in range(context.sizes.cold_runs):
            seconds, status = timed_command([mailreleased_command(), "once", "-c", str(config), "--force"], directory / "once.log")
            if status != 0:
                raise BenchError(f"mailreleased once exited with {status}; see {directory}/once.log")
            ours.append(seconds)
            if have_fetchmail:
                seconds, status = timed_command([FETCHMAIL, "-N", "-f", str(rcfile), "--nosyslog"],
                                                directory / "fetchmail.log", env=environment)
                if status != 0:
                    raise BenchError(f"fetchmail exited with {status}; see {directory}/fetchmail.log")
                theirs.append(seconds)
            floor.append(timed_command([sys.executable, "-c", "pass"], directory / "python.log")[0])
    finally:
        server.stop()

    ours_ms = [seconds * 1000 for seconds in ours]
    theirs_ms = [seconds * 1000 for seconds in theirs]
    ours_summary = summarize(ours_ms)
    rows = [
        row("cold start of `mailreleased once`, one ETRN target at Postfix", "ms", ours_summary,
            reference_name="fetchmail 6.4 -p ETRN, same target", reference=summarize(theirs_ms) if theirs else None,
            ratio=paired_ratios(ours_ms, theirs_ms) if theirs else None, goal="<= 150 ms",
            met=ours_summary["median"] <= 150),
        row("start of the bare interpreter (`python -c pass`)", "ms", summarize([seconds * 1000 for seconds in floor])),
    ]
    return measure_result(8, "Cold start of one processing run", rows, unavailable=unavailable,
                          raw={"mailreleased_seconds": ours, "fetchmail_seconds": theirs, "python_seconds": floor})
