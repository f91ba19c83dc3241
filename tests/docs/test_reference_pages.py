"""The reference pages name every outcome, CLI command, option and environment override."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mailreleased import cli
from mailreleased.outcome import Outcome

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _page(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI parser has no subcommands")


@pytest.mark.parametrize("outcome", [str(outcome) for outcome in Outcome])
def test_outcomes_page_lists_outcome(outcome: str) -> None:
    """Every Outcome value has a row in the vocabulary table."""
    assert f"| `{outcome}` |" in _page("outcomes.md")


@pytest.mark.parametrize("outcome", [str(outcome) for outcome in Outcome])
def test_exit_codes_page_mentions_outcome(outcome: str) -> None:
    """Every outcome appears on the exit codes page."""
    assert f"`{outcome}`" in _page("exit-codes.md")


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_cli_page_documents_command(command: str) -> None:
    """Every subcommand has its own section on the CLI page."""
    assert f"## `mailreleased {command}`" in _page("cli.md")


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (name, option)
        for name, sub in sorted(_subcommands().items())
        for action in sub._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    ],
)
def test_cli_page_documents_option(command: str, option: str) -> None:
    """Every option of every subcommand appears on the CLI page."""
    assert f"`{option}" in _page("cli.md")


def test_cli_page_lists_environment_overrides() -> None:
    """Every environment override of the CLI is in the environment table."""
    page = _page("cli.md")
    for variable in (*cli.ENV_OVERRIDES, "MAILRELEASED_CONFIG", "MAILRELEASED_DEBUG"):
        assert f"| `{variable}` |" in page


def _logged_event_names() -> set[str]:
    """Return the event names that the package logs with a literal first argument."""
    import ast

    package = Path(__file__).resolve().parents[2] / "mailreleased"
    names: set[str] = set()
    for path in package.rglob("*.py"):
        if "testing" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical")
                and "log" in ast.unparse(node.func.value).lower()
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("event", sorted(_logged_event_names() | {"signal"}))
def test_logging_page_lists_event(event: str) -> None:
    """Every event name the package logs appears on the logging page."""
    assert f"`{event}`" in _page("logging.md")
