"""Bad input: exit 2, one clear message per problem naming file, task and field, no traceback,
and the crontab and every file exactly as they were (CONTRACT.md, "Guarantees").

Every case starts from a real installed state (foreign crontab lines plus a valid install on a
`file:` target), snapshots it, runs the bad command, and checks that nothing moved.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FOREIGN = (
    b'MAILTO=""\n'
    b"# owned by someone else\n"
    b"0 0 * * * /usr/bin/report   --all  > /dev/null 2>&1\n"
    b"@reboot   /usr/local/bin/warm-cache\n"
    b"*/5 * * * *\techo 100% done  # trailing comment\n"
    b"# caf\xc3\xa9 and raw latin-1 \xe9 bytes\n"
)

GOOD = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: backup
    schedule: ["0 1 * * *", "@every 30m"]
    command: echo backup
"""


# --------------------------------------------------------------------------- helpers


def install_good(env, cli) -> None:
    """The installed state every case starts from."""
    env.crontab.write_bytes(FOREIGN)
    env.write_manifest(GOOD)
    code, _, err = cli(*env.args("install"))
    assert code == 0, err
    assert env.crontab.read_bytes() != FOREIGN  # managed lines are there


def state(env) -> tuple[dict, bytes]:
    return env.snapshot(), env.crontab.read_bytes()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def assert_refused(env, before, code: int, err: str, *needles: str, lines: int | None = 1) -> None:
    """Exit 2, no traceback, every needle in stderr, `lines` messages, nothing changed."""
    assert code == 2, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr:\n{err}"
    if lines is not None:
        assert len(error_lines(err)) == lines, f"expected {lines} message line(s):\n{err}"
    for line in error_lines(err):
        assert line.startswith("agency-cron: error: "), f"not a message line: {line!r}\n{err}"
    assert "\x00" not in err and "\r" not in err, repr(err)
    assert state(env) == before


def task(name: str = "backup", **fields) -> dict:
    """One task as flow YAML (values are given already YAML-quoted where needed)."""
    base = {"name": name, "schedule": '"@daily"', "command": "echo hi"}
    base.update(fields)
    return base


def manifest(*tasks: dict) -> str:
    """A manifest: a valid first task, then the given tasks at tasks[1], tasks[2], ..."""
    out = ["tasks:", '  - {name: alpha, schedule: "*/5 * * * *", command: echo alpha}']
    for item in tasks:
        body = ", ".join(f"{k}: {v}" for k, v in item.items() if v is not None)
        out.append(f"  - {{{body}}}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- field errors
# (id, manifest text, task label inside the message, field)
# The bad task is always tasks[1]; its label is "tasks[1] (NAME)" when it has a usable name.

FIELD_CASES = [
    # a newline, a carriage return or a NUL in any field
    ("newline-command", manifest(task(command='"echo a\\necho b"')), "backup", "command"),
    ("cr-command", manifest(task(command='"echo a\\recho b"')), "backup", "command"),
    ("nul-command", manifest(task(command='"echo a\\0b"')), "backup", "command"),
    ("newline-description", manifest(task(description='"one\\ntwo"')), "backup", "description"),
    ("nul-description", manifest(task(description='"one\\0two"')), "backup", "description"),
    (
        "newline-schedule",
        manifest(task(schedule='"@daily\\n* * * * * evil"')),
        "backup",
        "schedule",
    ),
    ("nul-schedule", manifest(task(schedule='"0 0 * * *\\0"')), "backup", "schedule"),
    (
        "newline-in-schedule-list",
        manifest(task(schedule='["@daily", "@hourly\\nx"]')),
        "backup",
        "schedule",
    ),
    ("newline-working-dir", manifest(task(working_dir='"/tmp\\n/x"')), "backup", "working_dir"),
    ("nul-working-dir", manifest(task(working_dir='"/tmp\\0x"')), "backup", "working_dir"),
    ("newline-log", manifest(task(log='"a\\nb.log"')), "backup", "log"),
    ("nul-log", manifest(task(log='"a\\0b.log"')), "backup", "log"),
    ("newline-tag", manifest(task(tags='["ok", "a\\nb"]')), "backup", "tags"),
    ("nul-alert-url", manifest(task(alert_urls='["json://host/\\0"]')), "backup", "alert_urls"),
    ("nul-script", manifest(task(command=None, script='"echo a\\0b"')), "backup", "script"),
    ("newline-env-value", manifest(task(env='{GREETING: "hi\\nthere"}')), "backup", "env"),
    ("nul-env-value", manifest(task(env='{GREETING: "hi\\0there"}')), "backup", "env"),
    ("newline-env-key", manifest(task(env='{"A\\nB": x}')), "backup", "env"),
    ("env-key-with-equals", manifest(task(env='{"A=B": x}')), "backup", "env"),
    ("env-value-a-list", manifest(task(env="{A: [1, 2]}")), "backup", "env"),
    # names
    ("name-empty", manifest(task(name='""')), None, "name"),
    ("name-65-chars", manifest(task(name="n" * 65)), "n" * 65, "name"),
    ("name-slash", manifest(task(name='"a/b"')), "a/b", "name"),
    ("name-dotdot", manifest(task(name='".."')), "..", "name"),
    ("name-dotdot-inside", manifest(task(name='"a..b"')), "a..b", "name"),
    ("name-space", manifest(task(name='"my task"')), "my task", "name"),
    ("name-semicolon", manifest(task(name='"a;rm -rf x"')), "a;rm -rf x", "name"),
    ("name-subshell", manifest(task(name='"$(id)"')), "$(id)", "name"),
    ("name-backtick", manifest(task(name='"`id`"')), "`id`", "name"),
    ("name-pipe", manifest(task(name='"a|b"')), "a|b", "name"),
    ("name-glob", manifest(task(name='"a*"')), "a*", "name"),
    ("name-leading-dash", manifest(task(name='"-x"')), "-x", "name"),
    ("name-not-a-string", manifest(task(name="123")), None, "name"),
    ("name-missing", manifest(task(name=None)), None, "name"),
    # schedules
    ("schedule-4-fields", manifest(task(schedule='"0 0 * *"')), "backup", "schedule"),
    ("schedule-6-fields", manifest(task(schedule='"0 0 0 * * *"')), "backup", "schedule"),
    (
        "schedule-command-in-it",
        manifest(task(schedule='"* * * * * /bin/true"')),
        "backup",
        "schedule",
    ),
    ("schedule-bogus-nickname", manifest(task(schedule='"@bogus"')), "backup", "schedule"),
    ("schedule-step-0", manifest(task(schedule='"*/0 * * * *"')), "backup", "schedule"),
    ("schedule-step-00", manifest(task(schedule='"0 */00 * * *"')), "backup", "schedule"),
    ("schedule-minute-60", manifest(task(schedule='"60 * * * *"')), "backup", "schedule"),
    ("schedule-dow-8", manifest(task(schedule='"0 0 * * 8"')), "backup", "schedule"),
    ("schedule-reversed-range", manifest(task(schedule='"5-1 * * * *"')), "backup", "schedule"),
    ("schedule-L", manifest(task(schedule='"0 0 L * *"')), "backup", "schedule"),
    ("schedule-question-mark", manifest(task(schedule='"0 0 ? * *"')), "backup", "schedule"),
    ("schedule-hash", manifest(task(schedule='"0 0 * * 1#2"')), "backup", "schedule"),
    ("schedule-feb-31", manifest(task(schedule='"0 0 31 2 *"')), "backup", "schedule"),
    ("schedule-feb-30", manifest(task(schedule='"0 0 30 2 *"')), "backup", "schedule"),
    ("schedule-every-7m", manifest(task(schedule='"@every 7m"')), "backup", "schedule"),
    ("schedule-every-15s", manifest(task(schedule='"@every 15s"')), "backup", "schedule"),
    ("schedule-every-0m", manifest(task(schedule='"@every 0m"')), "backup", "schedule"),
    ("schedule-every-90m", manifest(task(schedule='"@every 90m"')), "backup", "schedule"),
    ("schedule-every-2d", manifest(task(schedule='"@every 2d"')), "backup", "schedule"),
    ("schedule-every-no-unit", manifest(task(schedule='"@every 15"')), "backup", "schedule"),
    ("schedule-empty", manifest(task(schedule='""')), "backup", "schedule"),
    ("schedule-empty-list", manifest(task(schedule="[]")), "backup", "schedule"),
    (
        "schedule-list-one-bad",
        manifest(task(schedule='["@daily", "@bogus"]')),
        "backup",
        "schedule",
    ),
    ("schedule-a-number", manifest(task(schedule="5")), "backup", "schedule"),
    ("schedule-missing", manifest(task(schedule=None)), "backup", "schedule"),
    ("duplicate-name", manifest(task(name="alpha")), "alpha", "name: duplicate task name"),
    # unknown keys, bodies, durations, other fields
    ("unknown-key", manifest(task(comand="echo x")), "backup", "comand"),
    # the field is the task as a whole here; the message names command and script
    (
        "no-command-no-script",
        manifest(task(command=None)),
        "backup",
        "task: give exactly one of command or script",
    ),
    (
        "command-and-script",
        manifest(task(script='"echo x"')),
        "backup",
        "task: give exactly one of command or script",
    ),
    ("command-blank", manifest(task(command='"   "')), "backup", "task: command is empty"),
    ("timeout-bare-number", manifest(task(timeout="10")), "backup", "timeout"),
    ("timeout-bad-unit", manifest(task(timeout="10x")), "backup", "timeout"),
    ("timeout-negative", manifest(task(timeout='"-5m"')), "backup", "timeout"),
    ("timeout-zero", manifest(task(timeout="0s")), "backup", "timeout"),
    ("retry-delay-word", manifest(task(retry_delay="soon")), "backup", "retry_delay"),
    ("retries-negative", manifest(task(retries="-1")), "backup", "retries"),
    ("overlap-unknown", manifest(task(overlap="sometimes")), "backup", "overlap"),
    ("alert-unknown", manifest(task(alert="loudly")), "backup", "alert"),
    ("enabled-not-bool", manifest(task(enabled="maybe")), "backup", "enabled"),
    ("working-dir-relative", manifest(task(working_dir="tmp")), "backup", "working_dir"),
    ("log-escapes-log-dir", manifest(task(log='"../evil.log"')), "backup", "log"),
    ("log-absolute", manifest(task(log="/etc/passwd")), "backup", "log"),
    ("unset-variable", manifest(task(command='"echo ${UNSET_VAR_FOR_TEST}"')), "backup", "command"),
    ("unset-variable-in-env", manifest(task(env='{X: "${UNSET_VAR_FOR_TEST}"}')), "backup", "env"),
]


# `validate` must refuse the same input; it is checked on one case of each kind.
VALIDATE_TOO = {
    "newline-command",
    "nul-schedule",
    "newline-env-value",
    "env-key-with-equals",
    "name-empty",
    "name-65-chars",
    "name-dotdot",
    "name-subshell",
    "schedule-6-fields",
    "schedule-bogus-nickname",
    "schedule-step-0",
    "schedule-feb-31",
    "schedule-every-7m",
    "schedule-every-15s",
    "unknown-key",
    "no-command-no-script",
    "timeout-bare-number",
    "unset-variable",
}
FIELD_PARAMS = [
    pytest.param(command, text, name, field, id=f"{case}-{command}")
    for case, text, name, field in FIELD_CASES
    for command in ("install", "validate")
    if command == "install" or case in VALIDATE_TOO
]


@pytest.mark.parametrize(("command", "text", "name", "field"), FIELD_PARAMS)
def test_bad_field_is_refused_with_one_message(env, cli, monkeypatch, command, text, name, field):
    monkeypatch.delenv("UNSET_VAR_FOR_TEST", raising=False)
    install_good(env, cli)
    env.write_manifest(text)
    before = state(env)
    code, _, err = cli(*env.args(command))
    where = f"{env.manifest}: tasks[1]"
    needle = f"{where}: {field}" if name is None else f"{where} ({name}): {field}"
    assert_refused(env, before, code, err, needle)


@pytest.mark.parametrize(
    "bad_name",
    ["a\nb", "a\rb", "a\x00b", "x\n0 * * * * /bin/evil # agency-cron:x"],
    ids=["newline", "cr", "nul", "newline-injecting-a-line"],
)
def test_name_with_control_character_gives_one_line(env, cli, bad_name):
    """The bad name must not break the message over lines (or smuggle raw control bytes)."""
    install_good(env, cli)
    escaped = bad_name.encode("unicode_escape").decode()
    env.write_manifest(manifest(task(name=f'"{escaped}"')))
    before = state(env)
    code, _, err = cli(*env.args("install"))
    assert_refused(env, before, code, err, f"{env.manifest}: tasks[1]", "name:")


def test_64_character_name_is_fine(env, cli):
    """The boundary the 65-character case is refused at."""
    install_good(env, cli)
    env.write_manifest(manifest(task(name="n" * 64)))
    code, _, err = cli(*env.args("install"))
    assert code == 0, err


# --------------------------------------------------------------------------- several at once


def test_every_problem_is_reported_at_once(env, cli):
    install_good(env, cli)
    env.write_manifest(
        manifest(
            task(name="backup", schedule='"0 0 31 2 *"'),
            task(name='"bad name"'),
            task(name="gamma", comand="x"),
            task(name="alpha"),
            task(name="delta", timeout="10"),
            task(name="epsilon", command=None),
        )
    )
    before = state(env)
    code, _, err = cli(*env.args("install"))
    m = env.manifest
    expected = [
        f"{m}: tasks[1] (backup): schedule: ",
        f"{m}: tasks[2] (bad name): name: ",
        f"{m}: tasks[3] (gamma): comand: unknown key (did you mean 'command'?)",
        f"{m}: tasks[4] (alpha): name: duplicate task name",
        f"{m}: tasks[5] (delta): timeout: ",
        f"{m}: tasks[6] (epsilon): task: give exactly one of command or script",
    ]
    assert_refused(env, before, code, err, *expected, lines=len(expected))
    lines = error_lines(err)
    for needle in expected:
        assert sum(needle in line for line in lines) == 1, (needle, err)


def test_validate_reports_them_too(env, cli):
    install_good(env, cli)
    env.write_manifest(
        manifest(task(schedule='"@every 7m"'), task(name="other", schedule='"@every 15s"'))
    )
    before = state(env)
    code, _, err = cli(*env.args("validate"))
    assert_refused(
        env,
        before,
        code,
        err,
        f"{env.manifest}: tasks[1] (backup): schedule: '@every 7m'",
        f"{env.manifest}: tasks[2] (other): schedule: '@every 15s'",
        lines=2,
    )


def test_unknown_key_suggests_the_right_one(env, cli):
    install_good(env, cli)
    env.write_manifest(manifest(task(schedul='"@daily"', schedule=None)))
    before = state(env)
    code, _, err = cli(*env.args("install"))
    assert_refused(
        env,
        before,
        code,
        err,
        f"{env.manifest}: tasks[1] (backup): schedul: unknown key (did you mean 'schedule'?)",
        f"{env.manifest}: tasks[1] (backup): schedule: ",
        lines=2,
    )


# --------------------------------------------------------------------------- whole-file problems
# (id, file name, content, needles besides the file path)

FILE_CASES = [
    ("yaml-unclosed-flow", "tasks.yaml", "tasks: [\n", ["invalid YAML"]),
    (
        "yaml-tab-indent",
        "tasks.yaml",
        "tasks:\n  - name: a\n\tschedule: x\n",
        ["invalid YAML", "line 3"],
    ),
    (
        "yaml-duplicate-task-key",
        "tasks.yaml",
        'tasks:\n  - name: a\n    schedule: "@daily"\n    schedule: "@hourly"\n    command: x\n',
        ["duplicate key", "schedule", "line 4"],
    ),
    (
        "yaml-duplicate-top-key",
        "tasks.yaml",
        'tasks: []\ntasks:\n  - {name: a, schedule: "@daily", command: x}\n',
        ["duplicate key", "tasks"],
    ),
    ("yaml-unhashable-key", "tasks.yaml", "? [a, b]\n: 1\n", []),
    ("yaml-unhashable-task-key", "tasks.yaml", "tasks:\n  - ? {a: 1}\n    : 1\n", []),
    (
        "yaml-nul-byte",
        "tasks.yaml",
        'tasks:\n  - {name: a, schedule: "@daily", command: "x\x00"}\n',
        ["NUL"],
    ),
    ("shape-list", "tasks.yaml", '- {name: a, schedule: "@daily", command: x}\n', ["tasks"]),
    ("shape-scalar", "tasks.yaml", "just a string\n", ["tasks"]),
    ("shape-empty", "tasks.yaml", "", ["tasks"]),
    ("shape-tasks-mapping", "tasks.yaml", "tasks: {name: a}\n", ["tasks:"]),
    ("shape-task-scalar", "tasks.yaml", "tasks: [5]\n", ["tasks[0]"]),
    ("shape-defaults-scalar", "tasks.yaml", "defaults: 5\ntasks: []\n", ["defaults:"]),
    (
        "unknown-top-level-key",
        "tasks.yaml",
        'task:\n  - {name: a, schedule: "@daily", command: x}\n',
        ["task: unknown top-level key (did you mean 'tasks'?)"],
    ),
    ("json-syntax", "tasks.json", '{"tasks": [{"name": "a",}]}\n', ["invalid JSON", "line 1"]),
    ("json-truncated", "tasks.json", '{"tasks": [\n', ["invalid JSON"]),
    (
        "json-bad-field",
        "tasks.json",
        '{"tasks": [{"name": "a", "schedule": "@daily", "command": "x\\u0000y"}]}\n',
        ["tasks[0] (a): command:"],
    ),
    ("not-utf8", "tasks.yaml", b"tasks:\n  - name: caf\xe9\n", ["cannot read"]),
]


@pytest.mark.parametrize("command", ["install", "validate"])
@pytest.mark.parametrize(
    ("filename", "content", "needles"),
    [pytest.param(f, c, n, id=case) for case, f, c, n in FILE_CASES],
)
def test_bad_manifest_file_is_refused(env, cli, command, filename, content, needles):
    install_good(env, cli)
    path = env.root / filename
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = state(env)
    code, _, err = cli("--config", str(env.config), "--manifest", str(path), command)
    assert_refused(env, before, code, err, str(path), *needles, lines=None)


def test_folder_manifest_with_the_same_name_in_two_files(env, cli):
    install_good(env, cli)
    folder = env.root / "tasks.d"
    folder.mkdir()
    one = 'name: backup\nschedule: "@daily"\ncommand: echo one\n'
    (folder / "10-one.yaml").write_text(one)
    (folder / "20-two.yml").write_text(one.replace("one", "two"))
    (folder / "30-three.json").write_text(
        '{"name": "other", "schedule": "@hourly", "command": "echo three"}'
    )
    before = state(env)
    for command in ("install", "validate"):
        code, _, err = cli("--config", str(env.config), "--manifest", str(folder), command)
        assert_refused(
            env,
            before,
            code,
            err,
            f"{folder / '20-two.yml'}: task (backup): name: duplicate task name",
            str(folder / "10-one.yaml"),
        )


def test_folder_manifest_reports_problems_of_every_file(env, cli):
    install_good(env, cli)
    folder = env.root / "tasks.d"
    folder.mkdir()
    (folder / "a.yaml").write_text('name: a\nschedule: "@every 7m"\ncommand: x\n')
    (folder / "b.json").write_text('{"name": "b", "schedule": "@daily"')
    (folder / "c.yaml").write_text('tasks:\n  - {name: c, schedule: "@daily", comand: x}\n')
    before = state(env)
    code, _, err = cli("--config", str(env.config), "--manifest", str(folder), "install")
    assert_refused(
        env,
        before,
        code,
        err,
        f"{folder / 'a.yaml'}: task (a): schedule: ",
        f"{folder / 'b.json'}: ",
        f"{folder / 'c.yaml'}: tasks[0] (c): comand: unknown key (did you mean 'command'?)",
        lines=None,
    )
    assert len(error_lines(err)) >= 3


@pytest.mark.parametrize("command", ["install", "validate"])
def test_name_of_a_bundled_script_is_a_manifest_error(env, cli, command):
    """A task called health_check_cron would overwrite the bundled health_check_cron.sh."""
    install_good(env, cli)
    env.write_manifest(manifest(task(name="health_check_cron")))
    before = state(env)
    code, _, err = cli(*env.args(command))
    assert_refused(env, before, code, err, f"{env.manifest}: tasks[1] (health_check_cron): name:")


# --------------------------------------------------------------------------- config.env

CONFIG_CASES = [
    ("LOG_RETENTION_DAYS", "abc"),
    ("LOG_RETENTION_DAYS", "0"),
    ("ALERT_ON_FAILURE", "maybe"),
    ("ALERT_TIMEOUT", "soon"),
    ("LOG_DIR", "relative/log"),
    ("STATE_DIR", "state"),
    ("AGENCY_ROOT", "agency"),
    ("LOGROTATE_DIR", "logrotate.d"),
    ("CRONTAB", "bogus"),
    ("CRONTAB", "file:relative/crontab"),
    ("CRONTAB", "user:no-such-user-xyz"),
    ("CRONTAB", "system:/etc/cron.d/agency.cron"),
]


@pytest.mark.parametrize("command", ["install", "validate"])
@pytest.mark.parametrize(("key", "value"), CONFIG_CASES, ids=[f"{k}={v}" for k, v in CONFIG_CASES])
def test_bad_config_value(env, cli, command, key, value):
    install_good(env, cli)
    lines = [line for line in env.config.read_text().splitlines() if not line.startswith(key + "=")]
    env.config.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")
    before = state(env)
    code, _, err = cli(*env.args(command))
    assert_refused(env, before, code, err, f"{env.config}: {key}: ")


def test_every_config_problem_at_once(env, cli):
    install_good(env, cli)
    env.add_config("LOG_RETENTION_DAYS=abc\nALERT_ON_FAILURE=maybe\nLOG_DIR=log\nCRONTAB=bogus\n")
    before = state(env)
    code, _, err = cli(*env.args("install"))
    assert_refused(
        env,
        before,
        code,
        err,
        f"{env.config}: LOG_RETENTION_DAYS: ",
        f"{env.config}: ALERT_ON_FAILURE: ",
        f"{env.config}: LOG_DIR: ",
        f"{env.config}: CRONTAB: ",
        lines=4,
    )


def test_bad_value_from_the_environment_is_not_blamed_on_config_env(env, cli, monkeypatch):
    """The process environment overrides config.env; the message must say where it came from."""
    install_good(env, cli)
    monkeypatch.setenv("LOG_RETENTION_DAYS", "abc")
    before = state(env)
    code, _, err = cli(*env.args("install"))
    assert_refused(env, before, code, err, "LOG_RETENTION_DAYS", "'abc'", "environment")


# --------------------------------------------------------------------------- named files missing


@pytest.mark.parametrize("how", ["option", "variable", "option-after-command"])
@pytest.mark.parametrize("command", ["install", "validate"])
def test_named_config_that_does_not_exist(env, cli, monkeypatch, how, command):
    install_good(env, cli)
    missing = env.root / "nope.env"
    before = state(env)
    if how == "option":
        args = ["--config", str(missing), "--manifest", str(env.manifest), command]
    elif how == "option-after-command":
        args = ["--manifest", str(env.manifest), command, "--config", str(missing)]
    else:
        monkeypatch.setenv("AGENCY_CRON_CONFIG", str(missing))
        args = ["--manifest", str(env.manifest), command]
    code, _, err = cli(*args)
    assert_refused(env, before, code, err, str(missing), "not found")


@pytest.mark.parametrize("how", ["option", "variable", "folder-path"])
@pytest.mark.parametrize("command", ["install", "validate"])
def test_named_manifest_that_does_not_exist(env, cli, monkeypatch, how, command):
    install_good(env, cli)
    missing = env.root / ("nope.d/" if how == "folder-path" else "nope.yaml")
    before = state(env)
    if how == "variable":
        monkeypatch.setenv("AGENCY_CRON_MANIFEST", str(missing))
        args = ["--config", str(env.config), command]
    else:
        args = ["--config", str(env.config), "--manifest", str(missing), command]
    code, _, err = cli(*args)
    assert_refused(env, before, code, err, str(missing).rstrip("/"), "not found")


def test_empty_manifest_folder(env, cli):
    install_good(env, cli)
    folder = env.root / "empty.d"
    folder.mkdir()
    (folder / "README.txt").write_text("not a manifest\n")
    before = state(env)
    code, _, err = cli("--config", str(env.config), "--manifest", str(folder), "install")
    assert_refused(env, before, code, err, str(folder))


# --------------------------------------------------------------------------- other commands


@pytest.mark.parametrize(
    "expr",
    ["0 0 31 2 *", "@every 7m", "@every 15s", "* * * * * *", "*/0 * * * *", "@bogus", "", "a\nb"],
)
def test_explain_bad_expression(env, cli, expr):
    install_good(env, cli)
    before = state(env)
    code, out, err = cli("explain", expr)
    assert_refused(env, before, code, err, "schedule:")
    assert out == ""


@pytest.mark.parametrize("command", ["next", "disable", "enable", "history", "status", "run"])
def test_unknown_task_name(env, cli, command):
    install_good(env, cli)
    before = state(env)
    code, _, err = cli(*env.args(command, "nope"))
    assert_refused(env, before, code, err, "unknown task 'nope'")


def test_install_of_an_unknown_task_name(env, cli):
    install_good(env, cli)
    before = state(env)
    code, _, err = cli(*env.args("install", "alpha", "nope"))
    assert_refused(env, before, code, err, "unknown task 'nope'")


# --------------------------------------------------------------------------- real processes


def test_process_malformed_yaml(env, cli, cli_process):
    install_good(env, cli)
    env.write_manifest("tasks:\n  - name: alpha\n    schedule: [unclosed\n")
    before = state(env)
    result = cli_process(*env.args("install"))
    assert_refused(env, before, result.returncode, result.stderr, str(env.manifest), "invalid YAML")
    result = cli_process(*env.args("validate"))
    assert_refused(env, before, result.returncode, result.stderr, str(env.manifest), "invalid YAML")


def test_process_bad_field(env, cli, cli_process):
    install_good(env, cli)
    env.write_manifest(manifest(task(schedule='"0 0 31 2 *"')))
    before = state(env)
    result = cli_process(*env.args("install"))
    assert_refused(
        env,
        before,
        result.returncode,
        result.stderr,
        f"{env.manifest}: tasks[1] (backup): schedule: '0 0 31 2 *' can never fire",
    )


def test_process_missing_named_config(env, cli, cli_process):
    install_good(env, cli)
    missing = env.root / "missing.env"
    before = state(env)
    result = cli_process("--config", str(missing), "--manifest", str(env.manifest), "install")
    assert_refused(env, before, result.returncode, result.stderr, str(missing), "not found")
    result = cli_process(
        "--manifest", str(env.manifest), "install", env={"AGENCY_CRON_CONFIG": str(missing)}
    )
    assert_refused(env, before, result.returncode, result.stderr, str(missing), "not found")


def _path_with_python_only(folder: Path) -> str:
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    return str(folder)


def test_process_crontab_binary_missing(env, cli, cli_process, tmp_path):
    install_good(env, cli)
    before = state(env)
    path = _path_with_python_only(tmp_path / "bin-no-crontab")
    result = cli_process(*env.args("install"), env={"PATH": path, "CRONTAB": "user"})
    assert_refused(env, before, result.returncode, result.stderr, "crontab", "not found")
    result = cli_process(*env.args("uninstall"), env={"PATH": path, "CRONTAB": "user"})
    assert_refused(env, before, result.returncode, result.stderr, "crontab", "not found")


def _fake_crontab(folder: Path, listing: bytes | None) -> Path:
    """A real executable `crontab` that fails; with `listing`, `crontab -l` works first."""
    folder.mkdir()
    script = folder / "crontab"
    body = "#!/bin/sh\n"
    if listing is not None:
        (folder / "listing").write_bytes(listing)
        body += f'if [ "$1" = "-l" ]; then cat "{folder}/listing"; exit 0; fi\n'
    body += 'echo "crontab: simulated failure" >&2\nexit 1\n'
    script.write_text(body)
    script.chmod(0o755)
    return folder


def test_process_crontab_binary_fails_to_list(env, cli, cli_process, tmp_path):
    install_good(env, cli)
    before = state(env)
    folder = _fake_crontab(tmp_path / "fake-bin", None)
    fake_env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "CRONTAB": "user"}
    for command in ("install", "uninstall"):
        result = cli_process(*env.args(command), env=fake_env)
        assert_refused(env, before, result.returncode, result.stderr, "crontab: simulated failure")


@pytest.mark.parametrize("command", ["install", "uninstall --purge", "disable alpha"])
def test_process_crontab_binary_fails_to_write(env, cli, cli_process, tmp_path, command):
    """`crontab -l` works, writing the new table fails: no wrapper, spec, backup or override
    may change (files are written before the crontab, so they must be put back)."""
    install_good(env, cli)
    if command == "install":
        listing = FOREIGN  # the user crontab has none of our lines yet: all are added
        changed = GOOD.replace("echo backup", "echo backup v2")
        env.write_manifest(
            changed + '  - {name: gamma, schedule: "@hourly", command: echo gamma}\n'
        )
    else:
        listing = env.crontab.read_bytes()  # the installed table, managed lines included
    before = state(env)
    folder = _fake_crontab(tmp_path / "fake-bin", listing)
    fake_env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "CRONTAB": "user"}
    result = cli_process(*env.args(*command.split()), env=fake_env)
    assert result.returncode == 2, result.stderr
    assert "crontab: simulated failure" in result.stderr
    assert "Traceback" not in result.stderr
    after = state(env)
    touched = sorted(set(after[0]) ^ set(before[0])) + sorted(
        p for p in set(after[0]) & set(before[0]) if after[0][p] != before[0][p]
    )
    assert touched == [], f"files changed although the crontab write failed: {touched}"
    assert after == before
