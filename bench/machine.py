"""Facts about the machine a run happened on, for the report header."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _filesystem(path: Path) -> str:
    completed = subprocess.run(
        ["findmnt", "-no", "FSTYPE,OPTIONS", "--target", str(path)],
        capture_output=True, text=True, check=False, timeout=10,
    )
    return completed.stdout.strip() or "unknown"


def _git_commit(repository: Path) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repository), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False, timeout=10,
    )
    return completed.stdout.strip() or "unknown"


def machine_facts(work_dir: Path, repository: Path) -> dict[str, Any]:
    """Return CPU, cores, memory, kernel, Python, the work directory's filesystem and the git commit."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mib": _memory_mib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "filesystem": _filesystem(work_dir),
        "work_dir": str(work_dir),
        "git_commit": _git_commit(repository),
    }
