"""Summaries of repeated measurements: median, spread and ratios of medians."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Return the median, minimum, maximum and all samples of ``values``.

    The spread is reported as min..max because a handful of repetitions on a
    shared machine gives no useful standard deviation.
    """
    if not values:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": list(values),
    }


def ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    """Return the ratio of two summaries' medians, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    top, bottom = numerator.get("median"), denominator.get("median")
    if top is None or not bottom:
        return None
    return float(top) / float(bottom)


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any]:
    """Summarize the per-repetition ratios of two series measured side by side."""
    pairs = [top / bottom for top, bottom in zip(numerators, denominators) if bottom]
    return summarize(pairs)
