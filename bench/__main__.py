"""Command line of the benchmarks: ``python -m bench [--smoke] [--only N,M] [--reps N]``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.context import FULL, SMOKE, Context
from bench.machine import machine_facts
from bench.procs import REPOSITORY, raise_open_file_limit
from bench.report import render

# Measure number -> (module under bench.measures, function).
MEASURES: dict[int, tuple[str, str]] = {
    1: ("drain", "run_small"),
    2: ("drain", "run_large"),
    3: ("drain", "run_huge"),
    4: ("relay", "run"),
    5: ("etrn_batch", "run"),
    6: ("targets", "run"),
    7: ("idle", "run"),
    8: ("cold_start", "run"),
}
IDLE_MEASURE = 7
FULL_IDLE_SECONDS = 600.0
SMOKE_IDLE_SECONDS = 2.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark mailreleased against Postfix, fetchmail and minimal references on loopback.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repetition (about a minute)")
    parser.add_argument("--only", metavar="N,M", help="run only these measures (1-8), comma-separated")
    parser.add_argument("--reps", type=int, metavar="N", help="repetitions per measure (default 3, smoke 1)")
    parser.add_argument("--idle-seconds", type=float, metavar="SECONDS",
                        help=f"idle time of measure 7 (default {FULL_IDLE_SECONDS:g}, smoke {SMOKE_IDLE_SECONDS:g})")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write benchmarks.md and benchmarks.json into DIR instead of docs/ and bench/results/")
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp"), metavar="DIR",
                        help="parent of the scratch directory (default /var/tmp); it is removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory for inspection")
    parser.add_argument("--render-only", type=Path, metavar="JSON",
                        help="measure nothing; render the report again from a results JSON file")
    return parser


def _selected(only: str | None) -> list[int]:
    if not only:
        return sorted(MEASURES)
    numbers = []
    for item in only.split(","):
        if not item.strip().isdigit() or int(item) not in MEASURES:
            raise SystemExit(f"python -m bench: error: --only {only!r}: {item!r} is not a measure number 1-8")
        numbers.append(int(item))
    return sorted(set(numbers))


def _run_measure(context: Context, number: int) -> dict[str, Any]:
    module_name, function_name = MEASURES[number]
    started = time.monotonic()
    try:
        module = importlib.import_module(f"bench.measures.{module_name}")
        result: dict[str, Any] = getattr(module, function_name)(context)
    except Exception as exc:  # noqa: BLE001 - one failed measure must not lose the others' figures
        context.log(f"measure {number} failed: {exc}")
        traceback.print_exc()
        result = {"number": number, "title": f"measure {number} ({module_name}.{function_name})",
                  "rows": [], "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "unavailable": []}
    result["seconds"] = time.monotonic() - started
    context.log(f"measure {number} done in {result['seconds']:.0f}s")
    return result


def _run_all(context: Context, numbers: list[int]) -> list[dict[str, Any]]:
    """Run the measures in order; the idle measure runs beside the others in a thread."""
    results: dict[int, dict[str, Any]] = {}
    idle_thread = None
    if IDLE_MEASURE in numbers and len(numbers) > 1:
        def idle() -> None:
            results[IDLE_MEASURE] = _run_measure(context, IDLE_MEASURE)

        idle_thread = threading.Thread(target=idle, name="idle-measure")
        idle_thread.start()
    for number in numbers:
        if number == IDLE_MEASURE and idle_thread is not None:
            continue
        results[number] = _run_measure(context, number)
    if idle_thread is not None:
        idle_thread.join()
    return [results[number] for number in numbers]


def _write_outputs(results: dict[str, Any], out: Path | None) -> list[Path]:
    text = json.dumps(results, indent=1, sort_keys=False)
    report = render(results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "benchmarks.json", out / "benchmarks.md"]
        paths[0].write_text(text)
        paths[1].write_text(report)
        return paths
    raw_dir = REPOSITORY / "bench" / "results"
    raw_dir.mkdir(exist_ok=True)
    paths = [raw_dir / "latest.json", REPOSITORY / "docs" / "benchmarks.json", REPOSITORY / "docs" / "benchmarks.md"]
    paths[0].write_text(text)
    paths[1].write_text(text)
    paths[2].write_text(report)
    return paths


def _exit_status(results: dict[str, Any], ci: bool) -> int:
    failed = [m["number"] for m in results["measures"] if "error" in m]
    if failed:
        print(f"python -m bench: measures {failed} failed; see the log above", file=sys.stderr)
        return 1
    missing = [m["number"] for m in results["measures"] if m.get("unavailable")]
    if ci and missing:
        print(f"python -m bench: references unavailable in measures {missing} while CI=true; install them with .ci/install-peers",
              file=sys.stderr)
        return 1
    return 0


def _render_only(results_file: Path, out: Path | None) -> int:
    results = json.loads(results_file.read_text())
    report_path = (out or REPOSITORY / "docs") / "benchmarks.md"
    report_path.write_text(render(results))
    print(f"wrote {report_path}", file=sys.stderr)
    return 0


def _make_context(args: argparse.Namespace) -> Context:
    if args.reps is not None and args.reps < 1:
        raise SystemExit("python -m bench: error: --reps must be at least 1")
    reps = args.reps or (1 if args.smoke else 3)
    idle_seconds = args.idle_seconds
    if idle_seconds is None:
        idle_seconds = SMOKE_IDLE_SECONDS if args.smoke else FULL_IDLE_SECONDS
    args.work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mailreleased-bench-", dir=args.work_dir))
    root.chmod(0o755)
    return Context(sizes=SMOKE if args.smoke else FULL, reps=reps, root=root, smoke=args.smoke,
                   idle_seconds=idle_seconds, ci=os.environ.get("CI", "").lower() == "true")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected measures, write the report and the raw JSON, return the exit status."""
    args = _parser().parse_args(argv)
    if args.render_only is not None:
        return _render_only(args.render_only, args.out)
    numbers = _selected(args.only)
    raise_open_file_limit()
    context = _make_context(args)
    context.log(f"scratch directory {context.root}; measures {numbers}, {context.reps} repetitions")

    started = time.monotonic()
    load_at_start = os.getloadavg()
    try:
        measures = _run_all(context, numbers)
        results = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "smoke": args.smoke,
            "reps": context.reps,
            "idle_seconds": context.idle_seconds,
            "sizes": dataclasses.asdict(context.sizes),
            "machine": machine_facts(context.root, REPOSITORY),
            "wall_seconds": time.monotonic() - started,
            # Other work on the machine competes with every measure; the load averages show how much.
            "load_average_start": load_at_start,
            "load_average_end": os.getloadavg(),
            "measures": measures,
        }
        for path in _write_outputs(results, args.out):
            context.log(f"wrote {path}")
    finally:
        # Deleting waits until every measure is done, because freed inodes slow file creation on this disk.
        if not args.keep:
            context.log(f"removing {context.root}")
            shutil.rmtree(context.root, ignore_errors=True)
    return _exit_status(results, context.ci)


if __name__ == "__main__":
    raise SystemExit(main())
