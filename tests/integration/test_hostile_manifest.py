"""Hostile manifests are bounded, and secrets never go into a command line.

A 400-byte YAML alias bomb (9^9 values once expanded) used to take 15 s and 1.2 GB before
it was refused with 34 MB of messages. Each case runs the real CLI in its own process;
time and peak memory are measured there (resource.getrusage) and printed, but only the
outcome and a generous memory bound are asserted: no timing thresholds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agency_cron.config import clear_secret_problem
from agency_cron.manifest import MAX_BYTES, MAX_DEPTH, MAX_PROBLEMS, MAX_VALUES

# Before the bounds the bomb peaked at 1.2 GB; a CLI that reads a small manifest takes ~45 MB.
MEMORY_BOUND_MB = 200
MEASURE = """\
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({
    "code": done.returncode, "out": done.stdout, "err": done.stderr,
    "seconds": time.perf_counter() - start,
    "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""
SECRET = "pg-secret-value-0123456789"


def measured(env, *args: str) -> dict:
    """`agency-cron --config C --manifest M ARGS` in a child of a fresh process, so that
    RUSAGE_CHILDREN is that one CLI's peak memory."""
    command = [sys.executable, "-m", "agency_cron", *env.args(*args)]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=True,
    )
    result = json.loads(done.stdout)
    print(
        f"{' '.join(args)}: exit {result['code']}, {result['seconds']:.2f} s, {result['peak_mb']:.0f} MB"
    )
    return result


def error_lines(result: dict) -> list[str]:
    return result["err"].splitlines()


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A task whose description holds width**levels values through nested aliases."""
    anchors = ["&a0 [" + ",".join(["x"] * width) + "]"]
    anchors += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return (
        "tasks:\n  - name: bomb\n    schedule: '@daily'\n    command: 'true'\n"
        f"    description: [{', '.join(anchors)}]\n"
    )


def test_alias_bomb_is_refused_at_once_with_little_memory(env):
    env.write_manifest(alias_bomb())
    assert len(env.manifest.read_bytes()) < 500
    before = env.snapshot()
    for command in ("validate", "install"):
        result = measured(env, command)
        assert result["code"] == 2
        assert error_lines(result) == [
            f"agency-cron: error: {env.manifest}: line 5: holds more than {MAX_VALUES:,} values"
            " once its aliases are expanded"
        ]
        assert result["peak_mb"] < MEMORY_BOUND_MB
    assert env.snapshot() == before and not env.crontab.exists()


def test_merge_key_bomb_is_refused(env):
    """`<<:` merges go through the same count: each merge copies its mapping's keys."""
    lines = ["defaults:", "  env: &m0 {A: '1', B: '2', C: '3', D: '4', E: '5', F: '6'}"]
    for level in range(1, 9):
        merges = ", ".join(f"*m{level - 1}" for _ in range(9))
        lines.append(f"  description{level}: &m{level} {{<<: [{merges}], K{level}: x}}")
    lines.append("tasks: []")
    env.write_manifest("\n".join(lines) + "\n")
    result = measured(env, "validate")
    assert result["code"] == 2
    assert len(error_lines(result)) == 1
    assert "values once its aliases are expanded" in result["err"]
    assert result["peak_mb"] < MEMORY_BOUND_MB


def test_recursive_alias_is_refused(env):
    env.write_manifest("tasks: &loop [*loop]\n")
    result = measured(env, "validate")
    assert result["code"] == 2
    assert error_lines(result) == [
        f"agency-cron: error: {env.manifest}: line 1: alias *loop is inside its own anchor"
    ]


def test_ordinary_aliases_and_merge_overrides_still_load(env, cli):
    """Bounds must not cost the shapes people use: a shared mapping merged into each task,
    one of its keys overridden by the task (YAML's merge rule)."""
    env.write_manifest(
        """\
        defaults:
          env: &common {REGION: eu, TIER: web}
        tasks:
          - &base
            name: first
            schedule: "@daily"
            command: echo first
            timeout: 10m
          - <<: *base
            name: second
            timeout: 5m
            env: {<<: *common, TIER: db}
        """
    )
    code, out, err = cli(*env.args("validate"))
    assert code == 0, err
    listing = json.loads(cli(*env.args("list", "--json"))[1])
    assert [row["name"] for row in listing] == ["first", "second"]


def test_nesting_is_bounded_at_max_depth(env, cli):
    def manifest(depth: int) -> str:
        # The root mapping, `tasks` and one task are levels 1-3; the description's lists follow.
        inner = "[" * (depth - 3) + "x" + "]" * (depth - 3)
        return f"tasks:\n  - name: deep\n    schedule: '@daily'\n    command: 'true'\n    description: {inner}\n"

    env.write_manifest(manifest(MAX_DEPTH))
    code, _, err = cli(*env.args("validate"))
    assert code == 2 and "description: Input should be a valid string" in err
    env.write_manifest(manifest(MAX_DEPTH + 1))
    code, _, err = cli(*env.args("validate"))
    assert code == 2
    assert err.strip() == (
        f"agency-cron: error: {env.manifest}: line 5: nested more than {MAX_DEPTH} levels deep"
    )


def test_deep_json_is_refused_in_one_line(env, tmp_path):
    """json's own recursion limit used to surface as a RecursionError traceback."""
    env.manifest = tmp_path / "tasks.json"
    env.manifest.write_text('{"tasks": ' + "[" * 200_000 + "]" * 200_000 + "}")
    result = measured(env, "validate")
    assert result["code"] == 2
    assert error_lines(result) == [
        f"agency-cron: error: {env.manifest}: nested more than {MAX_DEPTH} levels deep"
    ]
    assert result["peak_mb"] < MEMORY_BOUND_MB


def test_many_values_without_aliases_are_refused(env, tmp_path):
    """Under the size cap, a flat list of a million values would still cost seconds and
    hundreds of MB to build: counted on the parser's events and refused first."""
    env.write_manifest("tasks: [" + "1," * 1_000_000 + "1]\n")
    result = measured(env, "validate")
    assert result["code"] == 2
    assert error_lines(result) == [
        f"agency-cron: error: {env.manifest}: line 1: holds more than {MAX_VALUES:,} values"
    ]
    assert result["peak_mb"] < MEMORY_BOUND_MB


def test_huge_file_is_refused_unread(env):
    task = "tasks:\n  - {name: big, schedule: '@daily', command: 'true'}\n"
    padding = MAX_BYTES - len(task) - 2
    env.write_manifest(task + "#" + "x" * padding + "\n")
    assert env.manifest.stat().st_size == MAX_BYTES
    result = measured(env, "validate")
    assert result["code"] == 0, result["err"]  # the bound is the size, nothing else
    with env.manifest.open("a") as handle:
        handle.write("#")
    result = measured(env, "validate")
    assert result["code"] == 2
    assert error_lines(result) == [
        f"agency-cron: error: {env.manifest}: larger than 4 MiB; a manifest that big is"
        " refused (split it into a folder of files)"
    ]
    assert result["peak_mb"] < MEMORY_BOUND_MB


def test_long_values_are_cut_in_messages(env):
    """A 2.1 MB schedule, a 1 MB key (an explicit `?` key: a plain one stops at 1024
    characters) and a 1 MB name: each message stays one short line."""
    schedule = "[" * 2_100_000
    key = "k" * 1_000_000
    name = "n" * 1_000_000
    env.write_manifest(
        f"tasks:\n"
        f"  - name: long\n    schedule: '{schedule}'\n    command: 'true'\n"
        f"  - name: keyed\n    schedule: '@daily'\n    command: 'true'\n    ? {key}\n    : 1\n"
        f"  - name: {name}\n    schedule: '@daily'\n    command: 'true'\n"
    )
    result = measured(env, "validate")
    assert result["code"] == 2
    lines = error_lines(result)
    assert len(result["err"]) < 2000, result["err"][:3000]
    prefix = f"agency-cron: error: {env.manifest}: "
    assert lines[0] == (
        f"{prefix}tasks[0] (long): schedule: '{'[' * 40}...' (2.1 MB) is longer than 1000"
        " characters"
    )
    assert lines[1] == f"{prefix}tasks[1] (keyed): '{'k' * 40}...' (1.0 MB): unknown key"
    assert lines[2].startswith(f"{prefix}tasks[2] ('{'n' * 40}...' (1.0 MB)): name: must be 1-64")
    assert len(lines) == 3


def test_problems_are_capped(env):
    tasks = "".join(f"  - {{name: t{i}, schedule: 'bad', command: 'true'}}\n" for i in range(500))
    env.write_manifest("tasks:\n" + tasks)
    result = measured(env, "validate")
    assert result["code"] == 2
    lines = error_lines(result)
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1] == f"agency-cron: error: ... and {500 - MAX_PROBLEMS} more problems"


# --- secrets never expanded into a command line --------------------------------------------


def secret_site(env) -> None:
    env.add_config(f"DB_PASSWORD={SECRET}\nAPI_TOKEN=tok-0123456789\n")


def test_secret_in_command_or_script_is_refused_by_validate_and_install(env):
    secret_site(env)
    env.write_manifest(
        """\
        tasks:
          - name: dump
            schedule: "@daily"
            command: pg_dump "postgres://app:${DB_PASSWORD}@db/app"
          - name: push
            schedule: "@daily"
            script: |
              curl -H "Authorization: Bearer ${API_TOKEN:-none}" https://example.invalid
          - name: fine
            schedule: "@daily"
            env: {DB_PASSWORD: "${DB_PASSWORD}"}
            command: 'pg_dump "postgres://app:$DB_PASSWORD@db/app" && echo $${DB_PASSWORD}'
        """
    )
    before = env.snapshot()
    prefix = f"agency-cron: error: {env.manifest}: "
    expected = [
        f"{prefix}tasks[0] (dump): {clear_secret_problem('command', 'DB_PASSWORD')}",
        f"{prefix}tasks[1] (push): {clear_secret_problem('script', 'API_TOKEN')}",
    ]
    for command in ("validate", "install"):
        result = measured(env, command)
        assert result["code"] == 2
        assert error_lines(result) == expected
        assert SECRET not in result["err"]
    assert env.snapshot() == before and not env.crontab.exists()
    assert "env: {DB_PASSWORD: ...}) and use $DB_PASSWORD instead" in expected[0]


def test_kubernetes_export_gives_the_same_message(env, cli):
    """One rule, one message: export kubernetes refuses the value, validate the reference."""
    secret_site(env)
    env.write_manifest(
        f"""\
        tasks:
          - name: dump
            schedule: "@daily"
            command: pg_dump "postgres://app:{SECRET}@db/app"
        """
    )
    code, _, err = cli(*env.args("export", "kubernetes", "-"))
    assert code == 2
    assert err.strip() == f"agency-cron: error: task dump: {clear_secret_problem('command')}"


def test_env_form_keeps_the_secret_out_of_the_process_list(env, cli):
    """The way the message points to: the value reaches the task through its environment,
    the shell expands $DB_PASSWORD inside it, and no argument list in /proc holds it."""
    secret_site(env)
    env.write_manifest(
        """\
        tasks:
          - name: dump
            schedule: "@daily"
            env: {DB_PASSWORD: "${DB_PASSWORD}"}
            command: 'sleep 3; echo "length ${#DB_PASSWORD}"'
        """
    )
    assert cli(*env.args("install"))[0] == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "agency_cron", *env.args("run", "dump")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("sleep 3" in line for line in seen):
        seen = list(command_lines())
        time.sleep(0.05)
    assert any("sleep 3" in line for line in seen), "the task never showed in /proc"
    assert not [line for line in seen if SECRET in line]
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "length 26" in out
    for rendered in (env.agency_root / "scripts" / "cronjobs").glob("dump.sh"):
        assert SECRET not in rendered.read_text()


def command_lines():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue


# --- the admin API goes through the same loader --------------------------------------------


def test_api_bodies_are_bounded_and_refuse_secrets(make_server, write_config):
    server = make_server()
    env = server.env
    write_config(env, f"DB_PASSWORD={SECRET}\n")
    crontab_before = env.crontab.read_bytes()
    folder = env.state_dir / "api" / "tasks"
    deep = {"name": "deep", "schedule": "@daily", "command": "true"}
    deep["tags"] = inner = []
    for _ in range(MAX_DEPTH + 5):
        inner.append([])
        inner = inner[0]
    bodies = {
        "leak": (
            {"name": "leak", "schedule": "@daily", "command": "echo ${DB_PASSWORD}"},
            clear_secret_problem("command", "DB_PASSWORD"),
        ),
        "deep": (deep, f"nested more than {MAX_DEPTH} levels deep"),
        "wide": (
            {"name": "wide", "schedule": "@daily", "command": "true", "tags": [1] * 150_000},
            f"holds more than {MAX_VALUES:,} values",
        ),
    }
    with server.client() as client:
        for name, (body, message) in bodies.items():
            response = client.post("/api/tasks", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["detail"].endswith(message), response.json()["detail"]
            assert SECRET not in response.text
            assert not (folder / f"{name}.json").exists()
    assert env.crontab.read_bytes() == crontab_before
