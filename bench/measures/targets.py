"""Measure 6: many targets in one processing run, against the slowest single target.

Every target is an ``etrn`` target with one domain, aimed at discard sinks
that wait ``target_greeting_delay`` seconds before their greeting, as a
distant server's round trips do. "Slowest single target" is the wall time of
a run with one such target alone. A run of N targets that signals them
concurrently should stay close to it, and the time above it should grow
linearly with N. The targets are spread over SINKS listeners, so that no
listen backlog overflows when thousands connect at once.
"""

from __future__ import annotations

from typing import Any

from bench.configs import etrn_target, write_config
from bench.context import Context
from bench.procs import BenchError
from bench.results import measure_result, row
from bench.servers import Server, run_child, start_discard
from bench.stats import summarize

SINKS = 4


def _run(context: Context, sinks: list[Server], count: int) -> dict[str, Any]:
    directory = context.fresh_dir(f"targets-{count}")
    targets = [etrn_target(f"t{index}", sinks[index % len(sinks)].port, [f"d{index}.bench.test"]) for index in range(count)]
    result = run_child(directory, write_config(directory, targets))
    released = result["outcomes"].get("released", 0)
    if released != count:
        raise BenchError(f"{released} of {count} targets released: {result['outcomes']} {result['details']}")
    return result


def _linearity(counts: list[int], medians: list[float]) -> tuple[list[float], bool | None]:
    """Return the time per extra target between successive counts, and whether they agree within 2x."""
    slopes = [
        (medians[index + 1] - medians[index]) / (counts[index + 1] - counts[index])
        for index in range(len(counts) - 1)
    ]
    positive = [slope for slope in slopes if slope > 0]
    if len(positive) < 2:
        return slopes, None
    return slopes, max(positive) <= 2 * min(positive)


def run(context: Context) -> dict[str, Any]:
    """Time one run of each target count and of a single target."""
    counts = list(context.sizes.target_counts)
    delay = context.sizes.target_greeting_delay
    sinks = [start_discard(context.fresh_dir(f"targets-sink-{index}"), greeting_delay=delay) for index in range(SINKS)]

    single: list[float] = []
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    try:
        for rep in range(context.reps):
            context.log(f"targets in one run: single, {counts}, repetition {rep + 1}")
            single.append(_run(context, sinks, 1)["seconds"])
            for count in counts:
                runs[count].append(_run(context, sinks, count))
    finally:
        for sink in sinks:
            sink.stop()

    single_summary = summarize(single)
    rows = []
    medians = []
    for count in counts:
        walls = [result["seconds"] for result in runs[count]]
        ratios = [wall / alone for wall, alone in zip(walls, single)]
        ratio_summary = summarize(ratios)
        medians.append(summarize(walls)["median"])
        is_goal = count == 1_000 or (context.smoke and count == counts[-1])
        met = ratio_summary["median"] <= 2 if is_goal else None
        rows.append(row(f"{count:,} etrn targets in one run, wall time", "s", summarize(walls),
                        reference_name=f"one target alone ({delay * 1000:.0f} ms greeting delay)",
                        reference=single_summary, ratio=ratio_summary,
                        goal="<= 2x the slowest single target" if is_goal else None, met=met, goal_on="ratio"))
        rows.append(row(f"{count:,} etrn targets: slowest target's own duration", "s",
                        summarize([result["max_record_ms"] / 1000 for result in runs[count]])))

    slopes, linear = _linearity(counts, medians)
    rows.append(row(f"time per extra target between {', '.join(f'{c:,}' for c in counts)} targets", "ms/target",
                    summarize([slope * 1000 for slope in slopes]), goal="linear: each step within 2x of the others",
                    met=linear))
    notes = [f"time per extra target, step by step: {', '.join(f'{slope * 1000:.3f} ms' for slope in slopes)}"]
    return measure_result(6, "Many targets in one processing run", rows, notes=notes,
                          raw={"single_seconds": single, "runs": {str(count): value for count, value in runs.items()}})
