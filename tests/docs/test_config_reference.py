"""The generated config reference covers the whole schema and matches the generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailreleased.config.model import Config
from mailreleased.config.reference import key_paths, main, render

CONFIG_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "config.md"
REGENERATE = "python -m mailreleased.config.reference --output docs/reference/config.md"


def test_committed_page_matches_generator() -> None:
    """The committed page is exactly what the generator renders now."""
    assert CONFIG_PAGE.read_text(encoding="utf-8") == render(), f"config.md is stale; run: {REGENERATE}"


@pytest.mark.parametrize("path", key_paths())
def test_page_lists_key_path(path: str) -> None:
    """Every key path of the schema has a row on the page."""
    assert f"| `{path}` |" in CONFIG_PAGE.read_text(encoding="utf-8")


def test_key_paths_reach_nested_sections() -> None:
    """The walk descends into lists, optional sections and every delivery type."""
    paths = set(key_paths())
    for expected in (
        "schedule.cron",
        "targets[].auth.password_file",
        "targets[].timeouts.reply",
        "targets[].receiver.max_message_size",
        "targets[].delivery.fsync",
        "targets[].delivery.argv",
        "targets[].delivery.path",
        "metrics.listen",
        "retry.max_backoff",
    ):
        assert expected in paths, f"{expected} is missing from key_paths()"


def test_every_field_has_a_meaning() -> None:
    """No row of the page has an empty meaning cell."""
    for line in render().splitlines():
        if line.startswith("| `"):
            assert not line.rstrip().endswith("|  |"), line


def test_top_level_keys_match_model() -> None:
    """The top-level rows are exactly the fields of Config."""
    top = [path for path in key_paths() if "." not in path and "[" not in path]
    assert top == list(Config.model_fields)


def test_check_option_reports_stale_file(tmp_path: Path) -> None:
    """--check exits 1 for a stale file and 0 for a fresh one."""
    stale = tmp_path / "config.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
