"""Every command is documented: `--help` with an example, and a row in README's table.

The commands come from the Typer app itself (its registered commands and sub-typers, walked
through Click), so a new command fails here until it has both; a README row naming a
command that does not exist fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from agency_cron.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def walk(group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], bool]]:
    """(command path, is a group) for every command and sub-typer, depth first.

    Groups are told by their `commands` mapping: recent Typer releases carry their own
    copy of Click, whose classes are not click's.
    """
    found = []
    for name, command in sorted(group.commands.items()):
        if getattr(command, "hidden", False):
            continue
        path = (*prefix, name)
        is_group = isinstance(getattr(command, "commands", None), dict)
        found.append((path, is_group))
        if is_group:
            found += walk(command, path)
    return found


COMMANDS = walk(typer.main.get_command(app))
LEAVES = [path for path, is_group in COMMANDS if not is_group]


def readme_commands() -> list[list[str]]:
    """The words of each `code span` in the first column of README's commands table."""
    text = README.read_text()
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    spans = []
    for row in section.splitlines():
        if row.startswith("| `"):
            first_cell = re.split(r"(?<!\\)\|", row)[1]  # `\|` is a pipe inside a cell
            spans += [span.split() for span in re.findall(r"`([^`]+)`", first_cell)]
    return spans


def documented(path: tuple[str, ...], spans: list[list[str]]) -> bool:
    return any(span[: len(path)] == list(path) for span in spans)


def test_the_walk_finds_the_commands():
    # A guard on the walk itself: these exist today, nested ones included.
    assert {("install",), ("list",), ("log-summary",), ("export", "systemd")} <= set(LEAVES)
    assert (("export",), True) in COMMANDS


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_help_has_an_example(cli, path):
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    examples = [line.strip() for line in out.splitlines() if "Example:" in line]
    assert examples, f"`agency-cron {' '.join(path)} --help` shows no 'Example:' line:\n{out}"
    assert any(f"agency-cron {' '.join(path)}" in line for line in examples), examples


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_is_in_the_readme_table(path):
    assert documented(path, readme_commands()), (
        f"`{' '.join(path)}` is missing from the commands table in README.md"
    )


def test_every_readme_row_names_a_real_command():
    names = {path[0] for path in LEAVES} | {path[0] for path, _ in COMMANDS}
    stale = [" ".join(span) for span in readme_commands() if span[0] not in names]
    assert stale == [], f"README.md lists commands the CLI does not have: {stale}"
    for span in readme_commands():
        if span[0] == "export":
            assert tuple(span[:2]) in LEAVES, span


def test_the_top_level_help_has_an_example(cli):
    code, out, err = cli("--help")
    assert code == 0, err
    assert "Example: agency-cron " in out
