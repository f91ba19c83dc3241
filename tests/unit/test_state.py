"""The every-N rule and the persisted run counters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailreleased.errors import StateError
from mailreleased.state import StateStore, should_signal


@pytest.mark.parametrize(
    ("every", "signalled"),
    [(0, [1, 2, 3, 4, 5, 6, 7]), (1, [1, 2, 3, 4, 5, 6, 7]), (3, [1, 4, 7]), (2, [1, 3, 5, 7])],
    ids=["every-0", "every-1", "every-3", "every-2"],
)
def test_every_n_rule(every: int, signalled: list[int]) -> None:
    """Runs 1, N+1, 2N+1 signal; 0 and 1 mean every run."""
    assert [run for run in range(1, 8) if should_signal(run, every)] == signalled


def test_counter_survives_reload(tmp_path: Path) -> None:
    """A saved counter is read back by a new store (a process restart)."""
    store = StateStore(tmp_path)
    store.load()
    store.get("isp").runs = 3
    store.save()
    again = StateStore(tmp_path)
    again.load()
    assert again.get("isp").runs == 3


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    """The atomic write cleans up after itself."""
    store = StateStore(tmp_path)
    store.load()
    store.get("a").runs = 1
    store.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.lock"]
    assert json.loads((tmp_path / "state.json").read_text())["targets"]["a"]["runs"] == 1


def test_corrupt_state_starts_afresh(tmp_path: Path) -> None:
    """A corrupt state file is set aside, not fatal."""
    (tmp_path / "state.json").write_text("{not json")
    store = StateStore(tmp_path)
    store.load()
    assert store.get("isp").runs == 0
    assert (tmp_path / "state.json.corrupt").exists()


def test_retain_forgets_removed_targets(tmp_path: Path) -> None:
    """Targets dropped from the config lose their counters."""
    store = StateStore(tmp_path)
    store.load()
    store.get("old").runs = 5
    store.get("kept").runs = 2
    store.retain({"kept"})
    assert set(store.targets) == {"kept"}


def test_state_dir_under_a_file(tmp_path: Path) -> None:
    """A state_dir that can't be created is reported with its path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot be created"):
        StateStore(blocker / "state").load()


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
def test_unwritable_state_dir(tmp_path: Path) -> None:
    """A read-only state_dir is reported with the fix."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(StateError, match="not writable"):
        StateStore(locked).load()


def test_two_stores_share_counters(tmp_path: Path) -> None:
    """A daemon's store and a once's store both count, neither overwrites the other."""
    daemon = StateStore(tmp_path)
    daemon.load()
    with daemon.transaction():
        daemon.get("isp").runs += 1
    once = StateStore(tmp_path)
    once.load()
    with once.transaction():
        once.get("isp").runs += 1
    with daemon.transaction():
        daemon.get("isp").runs += 1
    assert daemon.get("isp").runs == 3
    again = StateStore(tmp_path)
    again.load()
    assert again.get("isp").runs == 3


def test_transaction_keeps_object_identity(tmp_path: Path) -> None:
    """A re-read updates the existing state objects in place."""
    store = StateStore(tmp_path)
    store.load()
    held = store.get("isp")
    other = StateStore(tmp_path)
    other.load()
    with other.transaction():
        other.get("isp").runs = 7
    with store.transaction():
        pass
    assert held.runs == 7
