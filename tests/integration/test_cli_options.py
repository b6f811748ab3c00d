"""The shared options: --config and --manifest on every command (--crontab where it touches a
scheduler), before or after the command name, as the README's Commands section says."""

from __future__ import annotations

import json

import pytest
import typer

from agency_cron.cli import app

MANIFEST = """\
tasks:
  - name: only
    schedule: "0 3 * * *"
    command: "true"
"""
SCHEDULER_COMMANDS = {"install", "uninstall", "disable", "enable", "doctor", "serve"}


def leaves(group=app, prefix=()):
    """Every command path of the Typer app, sub-apps' commands included (not the groups)."""
    found = []
    for name, command in getattr(typer.main.get_command(group), "commands", {}).items():
        subs = getattr(command, "commands", None)
        found += [(*prefix, name, sub) for sub in subs] if subs else [(*prefix, name)]
    return found


LEAVES = leaves()


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_lists_the_shared_options(cli, path):
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    assert "--config" in out and "--manifest" in out, f"{' '.join(path)} --help"
    assert ("--crontab" in out) == (path[-1] in SCHEDULER_COMMANDS), f"{' '.join(path)} --help"


def _elsewhere(env):
    """The manifest under a name no default lookup finds: only --manifest can name it."""
    env.write_manifest(MANIFEST)
    moved = env.root / "elsewhere.yaml"
    env.manifest.rename(moved)
    return moved


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("command", [["list", "--json"], ["next", "only", "--json"]])
def test_both_positions_work(env, cli, command, after):
    manifest = _elsewhere(env)
    options = ["--config", str(env.config), "--manifest", str(manifest)]
    args = [*command, *options] if after else [*options, *command]
    code, out, err = cli(*args)
    assert code == 0, err
    shown = json.loads(out)
    names = [row["name"] for row in shown] if isinstance(shown, list) else [shown["name"]]
    assert names == ["only"]


def test_after_the_command_wins_over_before(env, cli):
    manifest = _elsewhere(env)
    missing = env.root / "missing.yaml"
    code, out, err = cli(
        "--manifest",
        str(missing),
        "--config",
        str(env.config),
        "list",
        "--manifest",
        str(manifest),
        "--json",
    )
    assert code == 0, err
    assert [row["name"] for row in json.loads(out)] == ["only"]


def test_a_named_config_that_is_missing_is_an_error_after_the_command_too(env, cli):
    """explain reads no config, validate does: a named file must exist where it is read."""
    missing = env.root / "missing.env"
    code, _, err = cli("validate", "--config", str(missing), "--manifest", str(env.manifest))
    assert code == 2 and str(missing) in err and "Traceback" not in err


def test_explain_and_uninstall_accept_them(env, cli):
    env.write_manifest(MANIFEST)
    code, out, err = cli("explain", "0 3 * * *", *env.args("--json"))
    assert code == 0, err
    assert json.loads(out)["cron"] == "0 3 * * *"
    assert cli(*env.args("install"))[0] == 0
    other = env.root / "other-crontab"
    code, out, err = cli(
        "uninstall", "--dry-run", "--json", *env.args(), "--crontab", f"file:{other}"
    )
    assert code == 0, err
    assert str(other) in json.loads(out)["target"]


def test_every_json_output_carries_the_version(env, cli):
    """Objects at the top, lists on each row (CONTRACT.md keeps list/status/history lists)."""
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    assert cli(*env.args("run", "only"))[0] == 0
    lists = [["list"], ["status"], ["history", "only"]]
    objects = [["status", "only"], ["next", "only"], ["log-summary"], ["health"], ["doctor"]]
    objects += [["explain", "0 3 * * *"], ["install", "--dry-run"]]
    for command in lists + objects:
        code, out, err = cli(*env.args(*command, "--json"))
        assert code in (0, 1), (command, err)
        shown = json.loads(out)
        if command in lists:
            assert isinstance(shown, list) and shown, command
            assert all(row["version"] == 1 for row in shown), command
        else:
            assert isinstance(shown, dict) and shown["version"] == 1, command
