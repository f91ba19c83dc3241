"""The benchmark harness in its smoke form: every measure runs and yields figures.

Without Postfix or fetchmail (or without root, which a private Postfix
needs) their reference figures are reported as unavailable and the run still
passes, unless CI=true: CI installs the peers, so a missing one is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
# The smoke run takes about a minute and a half on a loaded two-core machine.
SMOKE_TIMEOUT = 600


def test_bench_smoke_produces_figures(tmp_path: Path) -> None:
    """``python -m bench --smoke`` exits 0 and every measure has a figure for each side it ran."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    assert (tmp_path / "benchmarks.md").read_text().startswith("# Benchmarks")

    numbers = [measure["number"] for measure in results["measures"]]
    assert numbers == list(range(1, 9))
    for measure in results["measures"]:
        assert "error" not in measure, f"measure {measure['number']}: {measure.get('error')}"
        assert measure["rows"], f"measure {measure['number']} has no rows"
        for item in measure["rows"]:
            assert item["mailreleased"]["median"] is not None, f"measure {measure['number']}: {item['measure']}"
            if item["reference_name"] is not None and not measure["unavailable"]:
                assert item["reference"]["median"] is not None, f"measure {measure['number']}: {item['measure']}"
    if os.environ.get("CI", "").lower() == "true":
        unavailable = [reason for measure in results["measures"] for reason in measure["unavailable"]]
        assert unavailable == [], f"CI must have every reference peer installed: {unavailable}"
