"""Per-target run counters and last outcomes, persisted in ``state_dir``.

The file is rewritten atomically (temporary file, fsync, rename, fsync of the
directory), so a crash leaves either the old or the new state, never half.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailreleased.errors import StateError

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
STATE_VERSION = 1


@dataclasses.dataclass
class TargetState:
    """The counter and last outcomes of one target, kept between processing runs."""

    runs: int = 0
    last_outcome: str | None = None
    last_time: float | None = None
    last_success: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> TargetState:
        """Build from a decoded JSON object, ignoring unknown or mistyped fields."""
        if not isinstance(data, dict):
            return cls()
        runs = data.get("runs")
        return cls(
            runs=runs if isinstance(runs, int) and runs >= 0 else 0,
            last_outcome=_str_or_none(data.get("last_outcome")),
            last_time=_float_or_none(data.get("last_time")),
            last_success=_float_or_none(data.get("last_success")),
        )


def should_signal(runs: int, every: int) -> bool:
    """Apply the every-N rule to the 1-based run number ``runs``.

    With ``every`` N above 1 a target signals on runs 1, N+1, 2N+1 and so on,
    so that starting the daemon releases mail at once. 0 and 1 mean every run.
    """
    if every <= 1:
        return True
    return (runs - 1) % every == 0


class StateStore:
    """The state file of one ``state_dir``: load once, update, save atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.targets: dict[str, TargetState] = {}

    def load(self) -> None:
        """Read the state file; create the directory if needed and check it is writable."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state_dir {str(directory)!r} cannot be created: {exc.strerror}") from None
        self._probe_writable(directory)
        self.targets = self._read()

    def _read(self) -> dict[str, TargetState]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A corrupt state file only loses counters, so start afresh rather than refuse to run.
            self._quarantine(exc)
            return {}
        targets = raw.get("targets", {}) if isinstance(raw, dict) else {}
        if not isinstance(targets, dict):
            return {}
        return {str(name): TargetState.from_json(value) for name, value in targets.items()}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Lock the state file, re-read it, let the caller update, then save.

        A daemon and a ``once`` may share one state_dir. Each takes the lock
        and starts from what is on disk, so neither overwrites the other's
        counters. The lock is held only for the update, never across network I/O.
        """
        with self._locked():
            for name, state in self._read().items():
                mine = self.targets.get(name)
                if mine is None:
                    self.targets[name] = state
                else:
                    # Update in place: callers may hold a reference to this object.
                    for field in dataclasses.fields(state):
                        setattr(mine, field.name, getattr(state, field.name))
            yield
            self._write()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.path.parent / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"state lock in {str(self.path.parent)!r} cannot be opened: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _probe_writable(directory: Path) -> None:
        # os.access() returns true for root even on a read-only mount, so try a real write.
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            raise StateError(
                f"state_dir {str(directory)!r} is not writable ({exc.strerror}); "
                "fix its permissions or set 'state_dir' to a writable directory"
            ) from None

    def get(self, name: str) -> TargetState:
        """Return the state of target ``name``, creating it on first use."""
        return self.targets.setdefault(name, TargetState())

    def retain(self, names: set[str]) -> None:
        """Forget targets that are no longer configured, on disk too."""
        with self.transaction():
            self.targets = {name: state for name, state in self.targets.items() if name in names}

    def save(self) -> None:
        """Write the state file atomically and durably, under the state lock."""
        with self._locked():
            self._write()

    def _write(self) -> None:
        payload = {
            "version": STATE_VERSION,
            "targets": {name: dataclasses.asdict(state) for name, state in sorted(self.targets.items())},
        }
        data = json.dumps(payload, indent=1, sort_keys=True).encode()
        directory = self.path.parent
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, self.path)
            except BaseException:
                _unlink_quietly(Path(tmp_name))
                raise
            _fsync_directory(directory)
        except OSError as exc:
            raise StateError(f"state file {str(self.path)!r} cannot be written: {exc.strerror or exc}") from None

    def _quarantine(self, exc: Exception) -> None:
        broken = self.path.with_suffix(".json.corrupt")
        try:
            os.replace(self.path, broken)
        except OSError:
            pass
        self.targets = {}


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
