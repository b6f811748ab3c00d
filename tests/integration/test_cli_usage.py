"""The CLI as users meet it: usage errors, --version, --help with an example everywhere."""

from __future__ import annotations

import pytest
import typer

from agency_cron.cli import app


def commands(group=app, prefix=()):
    """Every command path of the Typer app, sub-apps included."""
    info = typer.main.get_command(group)
    found = []
    for name, command in getattr(info, "commands", {}).items():
        path = (*prefix, name)
        if getattr(command, "commands", None):
            found.append(path)
            found += [(*path, sub) for sub in command.commands]
        else:
            found.append(path)
    return found


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(cli_process, path):
    result = cli_process(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout, f"{' '.join(path)} --help has no example"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["install", "--bogus"], "No such option: --bogus"),
        (["run"], "Missing argument"),
        (["history", "x", "--limit", "0"], "--limit"),
    ],
)
def test_usage_errors_exit_2_without_traceback(cli_process, args, message):
    result = cli_process(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_version(cli_process):
    result = cli_process("--version")
    assert result.returncode == 0 and result.stdout.startswith("agency-cron ")
