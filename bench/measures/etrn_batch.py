"""Measure 5: ETRN for many domains on one target, against a minimal client doing the same exchange.

Both clients send the same commands in the same order: per connection EHLO,
eight ETRNs each waiting for its reply, and QUIT, one connection after
another. They run against the built-in provider and against a private
Postfix (``fast_flush_domains = bench.test`` covers ``dN.bench.test``),
alternating which client goes first.
"""

from __future__ import annotations

from typing import Any

from bench.configs import etrn_target, write_config
from bench.context import Context
from bench.postfix import BenchPostfix, postfix_available
from bench.procs import BenchError, python_command
from bench.results import measure_result, row
from bench.servers import run_child, run_json_child, start_provider
from bench.stats import paired_ratios, summarize


def _domains(count: int) -> list[str]:
    return [f"d{index}.bench.test" for index in range(count)]


def _mailreleased(context: Context, port: int, count: int) -> float:
    directory = context.fresh_dir("etrn-mailreleased")
    config = write_config(directory, [etrn_target("batch", port, _domains(count))])
    result = run_child(directory, config)
    released = result["outcomes"].get("released", 0)
    if released != count:
        raise BenchError(f"mailreleased released {released} of {count} domains: {result['outcomes']} {result['details']}")
    return float(result["seconds"])


def _minimal(context: Context, port: int, count: int) -> float:
    directory = context.fresh_dir("etrn-minimal")
    result_file = directory / "client.json"
    argv = python_command("bench.etrnclient", "--port", str(port), "--domains", str(count), "--result", str(result_file))
    result = run_json_child(argv, result_file, directory / "client.log")
    if result["accepted"] != count:
        raise BenchError(f"the minimal client got {result['accepted']} of {count} ETRNs accepted")
    return float(result["seconds"])


def _pair(context: Context, port: int, count: int, rep: int) -> tuple[float, float]:
    if rep % 2 == 0:
        ours = _mailreleased(context, port, count)
        theirs = _minimal(context, port, count)
    else:
        theirs = _minimal(context, port, count)
        ours = _mailreleased(context, port, count)
    return ours, theirs


def _rows(server: str, count: int, ours: list[float], theirs: list[float], goal: bool) -> list[dict[str, Any]]:
    ours_rate = [count / seconds for seconds in ours]
    theirs_rate = [count / seconds for seconds in theirs]
    ratio = paired_ratios(ours_rate, theirs_rate)
    met = ratio["median"] >= 0.8 if goal and ratio["median"] is not None else None
    return [row(f"ETRN {count:,} domains, 8 per connection, to {server}", "domains/s", summarize(ours_rate),
                reference_name="minimal asyncio ETRN client", reference=summarize(theirs_rate), ratio=ratio,
                goal=">= 0.8x the minimal client" if goal else None, met=met, goal_on="ratio")]


def run(context: Context) -> dict[str, Any]:
    """Release many domains against the provider and Postfix with both clients."""
    count = context.sizes.etrn_domains
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    unavailable: list[str] = []

    provider = start_provider(context.fresh_dir("etrn-provider"), count=0, size=0)
    try:
        ours, theirs = [], []
        for rep in range(context.reps):
            context.log(f"ETRN {count} domains to the provider, repetition {rep + 1}")
            pair = _pair(context, provider.port, count, rep)
            ours.append(pair[0])
            theirs.append(pair[1])
    finally:
        provider.stop()
    rows += _rows("the built-in provider", count, ours, theirs, goal=True)
    raw["provider"] = {"mailreleased_seconds": ours, "minimal_seconds": theirs}

    reason = postfix_available()
    if reason is not None:
        unavailable.append(f"Postfix: {reason}")
        return measure_result(5, f"ETRN batch of {count:,} domains", rows, raw=raw, unavailable=unavailable)
    postfix = BenchPostfix(context.fresh_dir("etrn-postfix") / "postfix")
    postfix.start()
    try:
        ours, theirs = [], []
        for rep in range(context.reps):
            context.log(f"ETRN {count} domains to Postfix, repetition {rep + 1}")
            pair = _pair(context, postfix.port, count, rep)
            ours.append(pair[0])
            theirs.append(pair[1])
    finally:
        postfix.stop()
    rows += _rows("Postfix 3.7 smtpd", count, ours, theirs, goal=True)
    raw["postfix"] = {"mailreleased_seconds": ours, "minimal_seconds": theirs}
    return measure_result(5, f"ETRN batch of {count:,} domains", rows, raw=raw, unavailable=unavailable)
