"""The quick path of the --json read commands (quick.py) prints what the full path prints.

Each command runs three times as a real process: quick (after a full load has cached the
manifest), full (AGENCY_CRON_NO_QUICK=1), quick again. Times that move with the clock
(next runs at a minute boundary, log-summary's generated_at) are why the full answer is
compared with either quick one: a boundary falls between at most one pair.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

MANIFEST = """
tasks:
  - name: alpha
    description: the first one
    schedule: "*/5 * * * *"
    command: echo alpha
    tags: [db, nightly]
  - name: beta
    schedule: ["@hourly", "30 2 * * 1"]
    timezone: Europe/Paris
    command: echo "beta $API_TOKEN"
    env:
      API_TOKEN: beta-secret-token-1234
  - name: gamma
    schedule: "@daily"
    command: exit 3
    expect_within: 2h
"""
COMMANDS = [
    ("list", "--json"),
    ("status", "--json"),
    ("status", "gamma", "--json"),
    ("history", "gamma", "--json"),
    ("history", "alpha", "--limit", "1", "--json"),
    ("next", "beta", "--json"),
    ("next", "alpha", "-n", "2", "--json"),
    ("log-summary", "--json"),
    ("log-summary", "--since", "7d", "--task", "gamma", "--json"),
]
IMPORTS = "PYTHONPROFILEIMPORTTIME"
# reports.parse_since reads --since with the manifest's parse_duration until the field
# rules move to their own leaf (agency_cron/fields.py, issue 11 point 3): until then
# log-summary's quick path still imports pydantic, and only that.
SINCE_NEEDS_PYDANTIC = importlib.util.find_spec("agency_cron.fields") is None


def run(env, *args: str, quick: bool = True) -> subprocess.CompletedProcess:
    extra = {IMPORTS: "1"} if quick else {"AGENCY_CRON_NO_QUICK": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", *env.args(*args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **extra},
        timeout=120,
        check=False,
    )


WHY = """
import sys
from agency_cron import fastpath, quick
call = quick.parse(sys.argv[1:])
key = quick._key(call.config, call.manifest)
record = fastpath.read_record(quick._cache_path(key)) or {}
print("no record" if not record else "inputs differ" if record["inputs"] != fastpath.inputs_digest(key) else "")
for kind, now in (("files", fastpath.signature), ("probes", fastpath.probe_signature), ("listings", fastpath._listing)):
    print(kind, [(p, s, now(p)) for p, s in record.get(kind, []) if now(p) != s][:3])
"""


def why(env, args) -> str:
    """What no longer holds in the cached manifest's fingerprint (for a failure message)."""
    return subprocess.run(
        [sys.executable, "-c", WHY, *env.args(*args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", IMPORTS: "1"},
        check=False,
    ).stdout


def steady(text: str) -> str:
    """log-summary's clock fields, which differ between any two runs."""
    return re.sub(r'"(generated_at|since)": "[^"]*"', r'"\1": "-"', text)


def heavy(result: subprocess.CompletedProcess) -> set[str]:
    names = set(re.findall(r"^import time:.*\| +(\S+)$", result.stderr, re.M))
    return {name.split(".")[0] for name in names} & {"typer", "click", "rich", "pydantic", "yaml"}


def compare(env, args) -> None:
    # Full loads cache the manifest (its fingerprint under this env); the first may write
    # what it probed (STATE_DIR, history.db), so that the second records the settled state.
    run(env, *args)
    run(env, *args)
    first = run(env, *args)
    full = run(env, *args, quick=False)
    second = run(env, *args)
    allowed = {"pydantic"} if args[0] == "log-summary" and SINCE_NEEDS_PYDANTIC else set()
    assert heavy(first) <= allowed and heavy(second) <= allowed, (args, why(env, args))
    assert first.returncode == full.returncode == second.returncode == 0, full.stderr
    assert steady(full.stdout) in (steady(first.stdout), steady(second.stdout)), args
    json.loads(full.stdout)


@pytest.fixture
def plain(env):
    env.write_manifest(MANIFEST)
    return env


@pytest.fixture
def lived_in(env, cli):
    """Secrets in config.env, an override, history rows of every kind, an API task."""
    env.write_manifest(MANIFEST)
    with env.config.open("a") as handle:
        handle.write("DB_PASSWORD=config-secret-value\nALERT_URLS=json://user:pw@127.0.0.1:9/\n")
    assert cli(*env.args("install"))[0] == 0
    assert cli(*env.args("disable", "alpha"))[0] == 0
    for name in ("alpha", "beta", "gamma", "gamma"):
        cli(*env.args("run", name))
    api = env.state_dir / "api" / "tasks"
    api.mkdir(parents=True, exist_ok=True)
    (api / "delta.json").write_text(
        json.dumps({"name": "delta", "schedule": "@weekly", "command": "true"})
    )
    return env


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_same_answer_on_a_plain_installation(plain, args):
    compare(plain, args)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_same_answer_with_secrets_overrides_and_history(lived_in, args):
    compare(lived_in, args)
    assert "beta-secret-token-1234" not in run(lived_in, *args).stdout


def test_errors_are_the_full_paths(plain):
    """An unknown task, a bad option value, a missing config: the full path answers."""
    for args in (("history", "nope", "--json"), ("next", "alpha", "-n", "0", "--json")):
        run(plain, "list", "--json")
        quick, full = run(plain, *args), run(plain, *args, quick=False)
        assert quick.returncode == full.returncode == 2
        assert quick.stdout == full.stdout
        assert [x for x in quick.stderr.splitlines() if not x.startswith("import time:")] == [
            x for x in full.stderr.splitlines()
        ]


def test_a_changed_manifest_is_read_again(plain):
    run(plain, "list", "--json")
    assert not heavy(run(plain, "list", "--json"))
    plain.write_manifest(MANIFEST.replace("the first one", "edited"))
    result = run(plain, "list", "--json")
    assert heavy(result)  # the full path: the cache no longer holds
    assert json.loads(result.stdout)[0]["description"] == "edited"
    assert not heavy(run(plain, "list", "--json"))  # and cached again


def test_the_cache_holds_no_task_secrets(plain):
    run(plain, "list", "--json")
    folder = plain.root.parent / "cache" / "agency-cron"
    cached = list(folder.glob("manifest-*.json"))
    assert cached, sorted(folder.iterdir())
    for path in cached:
        assert "beta-secret-token-1234" not in path.read_text()
        assert (path.stat().st_mode & 0o777) == 0o600
