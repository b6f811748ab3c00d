"""Local overrides (`enable`/`disable`) are visible, and never pin what the manifest says.

Real files and a real `file:` crontab; the CLI runs in-process (`cli`) or as a process.
"""

from __future__ import annotations

import json

from agency_cron.backends.crontab import installed_entries

MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: beta
    schedule: "0 1 * * *"
    command: echo beta
    enabled: false
"""


def overrides(env) -> dict:
    path = env.state_dir / "overrides.json"
    return json.loads(path.read_text())["enabled"] if path.exists() else {}


def line_is_on(env, name: str) -> bool:
    (line,) = installed_entries(env.crontab.read_text())[name]
    return not line.startswith("#")


def installed(env, cli):
    env.install(cli, MANIFEST)
    return env


def by_name(rows: list[dict]) -> dict:
    return {row["name"]: row for row in rows}


def test_enable_of_a_task_the_manifest_enables_removes_the_override(env, cli):
    installed(env, cli)
    assert cli(*env.args("disable", "alpha"))[0] == 0
    assert overrides(env) == {"alpha": False} and not line_is_on(env, "alpha")
    assert cli(*env.args("enable", "alpha"))[0] == 0
    assert overrides(env) == {} and line_is_on(env, "alpha")
    # The manifest decides again: turning the task off there takes effect at the next install.
    env.write_manifest(
        MANIFEST.replace("command: echo alpha", "command: echo alpha\n    enabled: false")
    )
    assert cli(*env.args("install"))[0] == 0
    assert not line_is_on(env, "alpha")


def test_disable_of_a_task_the_manifest_disables_removes_the_override(env, cli):
    installed(env, cli)
    assert cli(*env.args("enable", "beta"))[0] == 0
    assert overrides(env) == {"beta": True} and line_is_on(env, "beta")
    assert cli(*env.args("disable", "beta"))[0] == 0
    assert overrides(env) == {} and not line_is_on(env, "beta")
    env.write_manifest(MANIFEST.replace("    enabled: false\n", ""))
    assert cli(*env.args("install"))[0] == 0
    assert line_is_on(env, "beta")


def test_list_and_status_json_carry_the_override(env, cli):
    installed(env, cli)
    assert cli(*env.args("disable", "alpha"))[0] == 0
    assert cli(*env.args("enable", "beta"))[0] == 0
    listed = by_name(json.loads(cli(*env.args("list", "--json"))[1]))
    assert listed["alpha"]["override"] == "disabled" and listed["alpha"]["enabled"] is False
    assert listed["beta"]["override"] == "enabled" and listed["beta"]["enabled"] is True
    states = by_name(json.loads(cli(*env.args("status", "--json"))[1]))
    assert states["alpha"]["override"] == "disabled" and states["alpha"]["state"] == "disabled"
    assert states["beta"]["override"] == "enabled" and states["beta"]["state"] == "never-run"
    assert cli(*env.args("enable", "alpha"))[0] == 0
    rows = by_name(json.loads(cli(*env.args("list", "--json"))[1]))
    assert rows["alpha"]["override"] is None and rows["alpha"]["enabled"] is True


def test_a_pinned_override_equal_to_the_manifest_shows_once_the_manifest_moves(env, cli):
    installed(env, cli)
    # overrides.json as an older agency-cron left it: `enable alpha` pinned true.
    (env.state_dir / "overrides.json").write_text('{"version": 1, "enabled": {"alpha": true}}\n')
    assert by_name(json.loads(cli(*env.args("list", "--json"))[1]))["alpha"]["override"] is None
    env.write_manifest(
        MANIFEST.replace("command: echo alpha", "command: echo alpha\n    enabled: false")
    )
    rows = by_name(json.loads(cli(*env.args("list", "--json"))[1]))
    assert rows["alpha"]["override"] == "enabled"


def test_human_list_status_plan_and_doctor_say_locally(env, cli, cli_process):
    installed(env, cli)
    assert cli(*env.args("disable", "alpha"))[0] == 0
    assert cli(*env.args("enable", "beta"))[0] == 0
    wide = {"COLUMNS": "200"}
    listing = cli_process(*env.args("list"), env=wide).stdout
    assert row_of(listing, "alpha").count("disabled locally") == 1
    assert "enabled locally" in row_of(listing, "beta")
    status = cli_process(*env.args("status"), env=wide).stdout
    assert "disabled locally" in row_of(status, "alpha")
    assert "enabled locally" in row_of(status, "beta")
    plan = cli_process(*env.args("install", "--dry-run"), env=wide).stdout
    assert "(disabled locally)" in row_of(plan, "alpha")
    assert "(enabled locally)" in row_of(plan, "beta")
    result = cli_process(*env.args("doctor", "--json"))
    findings = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "overrides"]
    assert {(f["task"], f["ok"]) for f in findings} == {("alpha", True), ("beta", True)}
    details = {f["task"]: f["detail"] for f in findings}
    assert details["alpha"].startswith("disabled locally (the manifest enables it")
    assert "agency-cron enable alpha" in details["alpha"]
    assert details["beta"].startswith("enabled locally (the manifest disables it")
    human = cli_process(*env.args("doctor"), env=wide).stdout
    assert "disabled locally" in human and "enabled locally" in human


def test_no_override_says_nothing_locally(env, cli, cli_process):
    installed(env, cli)
    wide = {"COLUMNS": "200"}
    for args in (("list",), ("status",), ("install", "--dry-run")):
        assert "locally" not in cli_process(*env.args(*args), env=wide).stdout
    result = cli_process(*env.args("doctor", "--json"))
    findings = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "overrides"]
    assert [f["detail"] for f in findings] == ["no local overrides"]


def row_of(output: str, name: str) -> str:
    (row,) = [line for line in output.splitlines() if line.split()[:1] == [name]]
    return row
