"""Options, sizes and scratch directories shared by all measures of one run."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Workload sizes of one run; the full run uses the sizes the goals are stated for."""

    small_count: int = 10_000
    small_size: int = 4 * KIB
    large_count: int = 100
    large_size: int = MIB
    huge_size: int = 200 * MIB
    # fetchmail relays about ten 4 KiB messages per second here, so 1,000 keep a repetition near 90 s.
    relay_count: int = 1_000
    etrn_domains: int = 10_000
    target_counts: tuple[int, ...] = (100, 1_000, 5_000)
    # Greeting delay of the fake servers behind the many-targets measure: a distant server's round trips.
    target_greeting_delay: float = 0.2
    cold_runs: int = 20


FULL = Sizes()
SMOKE = Sizes(
    small_count=200,
    large_count=5,
    huge_size=8 * MIB,
    relay_count=50,
    etrn_domains=200,
    target_counts=(10, 50, 100),
    cold_runs=3,
)


@dataclasses.dataclass
class Context:
    """The sizes, repetitions, scratch root and logger that every measure gets."""

    sizes: Sizes
    reps: int
    root: Path
    smoke: bool
    idle_seconds: float
    ci: bool
    _counter: itertools.count[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def fresh_dir(self, name: str) -> Path:
        """Create and return a new directory under the scratch root; nothing is ever reused."""
        path = self.root / f"{next(self._counter):03d}-{name}"
        path.mkdir(parents=True)
        path.chmod(0o755)
        return path

    def log(self, message: str) -> None:
        """Print a progress line with a timestamp to standard error."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
