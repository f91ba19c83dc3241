"""The shape of a measure's result: table rows with figures, goal and verdict, plus raw data."""

from __future__ import annotations

from typing import Any


def row(
    measure: str,
    unit: str,
    mailreleased: dict[str, Any] | None,
    *,
    reference_name: str | None = None,
    reference: dict[str, Any] | None = None,
    ratio: dict[str, Any] | None = None,
    goal: str | None = None,
    met: bool | None = None,
    goal_on: str = "value",
) -> dict[str, Any]:
    """Return one report row; summaries come from ``bench.stats.summarize``, None means not measured.

    ``goal_on`` names the figure the goal is judged on: ``value`` (mailreleased's) or ``ratio``.
    """
    return {
        "measure": measure,
        "unit": unit,
        "mailreleased": mailreleased,
        "reference_name": reference_name,
        "reference": reference,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "goal_on": goal_on,
    }


def measure_result(number: int, title: str, rows: list[dict[str, Any]], *, notes: list[str] | None = None,
                   raw: dict[str, Any] | None = None, unavailable: list[str] | None = None) -> dict[str, Any]:
    """Return a measure's whole result; ``unavailable`` names references that could not run, and why."""
    return {
        "number": number,
        "title": title,
        "rows": rows,
        "notes": notes or [],
        "unavailable": unavailable or [],
        "raw": raw or {},
    }


def median_of(summary: dict[str, Any] | None) -> float | None:
    """Return a summary's median, or None."""
    return None if summary is None else summary.get("median")
