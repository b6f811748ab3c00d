"""render.py: the wrapper and logrotate texts, as the shell and logrotate read them.

The wrapper is run for real with a stand-in interpreter that records its arguments and
environment, so quoting is judged by /bin/sh, not by reading the text; logrotate checks
its config with `logrotate -d`, the way install does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_cron import render
from agency_cron.config import load_settings
from agency_cron.manifest import Task
from agency_cron.secrets import is_secret_name

# Variables the wrapper sets itself; a task may override them, but not in the property.
WRAPPER_KEYS = {"AGENCY_ROOT", "LOG_DIR", "STATE_DIR", "AGENCY_CRON_MANIFEST", "PATH"}
RECORDER = """#!/bin/sh
printf '%s\\0' "$@" > "$RECORD.args"
/usr/bin/env -0 > "$RECORD.env"
"""


@pytest.fixture(scope="session")
def site(settings_at):
    """site(root, KEY=value...) -> Settings of an installation under root (no files)."""
    return settings_at


@pytest.fixture
def interpreter(tmp_path_factory, monkeypatch):
    """A stand-in for python3 that records how the wrapper called it: (args, environment)."""
    folder = tmp_path_factory.mktemp("interpreter")
    fake = folder / "python3"
    fake.write_text(RECORDER)
    fake.chmod(0o755)
    monkeypatch.setenv("AGENCY_CRON_PYTHON", str(fake))
    yield fake


def run_wrapper(text: str, folder: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    wrapper = folder / "task.sh"
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    record = folder / "record"
    result = subprocess.run(
        [str(wrapper), *args],
        env={"RECORD": str(record), "AGENCY_CRON_NO_CRON_LOG": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    argv = record.with_suffix(".args").read_bytes().decode().split("\0")[:-1]
    pairs = record.with_suffix(".env").read_bytes().decode().split("\0")[:-1]
    return argv, dict(pair.split("=", 1) for pair in pairs)


env_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda key: key not in WRAPPER_KEYS and key not in ("RECORD", "AGENCY_CRON_NO_CRON_LOG")
)
# What the manifest lets through: anything but a newline, a carriage return or NUL.
env_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"), max_size=20
)
secret_keys = st.builds(
    lambda stem, suffix: stem + suffix,
    st.from_regex(r"[A-Z][A-Z0-9]{0,6}", fullmatch=True),
    st.sampled_from(["_TOKEN", "_PASSWORD", "_SECRET", "_KEY", "_token"]),
)
secret_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=4).map(
    lambda text: f"s3cr3t-{text}"
)
descriptions = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"), max_size=40
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    public=st.dictionaries(env_keys, env_values, max_size=5),
    secret=st.dictionaries(secret_keys, secret_values, max_size=3),
    description=descriptions,
    args=st.lists(env_values, max_size=3),
)
def test_the_wrapper_exports_the_env_exactly_and_keeps_secrets_out(
    tmp_path_factory, interpreter, public, secret, description, args, site
):
    folder = tmp_path_factory.mktemp("wrapper")
    settings_ = site(folder)
    public = {k: v for k, v in public.items() if not is_secret_name(k)}
    task = Task(
        name="job",
        schedule=("@daily",),
        command="true",
        description=description,
        env={**public, **secret},
    )
    text = render.wrapper_text(task, settings_, folder / "tasks.yaml")
    for value in secret.values():
        assert value not in text

    argv, environ = run_wrapper(text, folder, *args)

    spec = str(settings_.state_dir / "tasks" / "job.json")
    assert argv == ["-S", "-P", "-c", render.runner_bootstrap(), spec, *args]
    for key, value in public.items():
        assert environ[key] == value
    assert not set(secret) & set(environ)
    assert environ["AGENCY_ROOT"] == str(settings_.agency_root)
    assert environ["LOG_DIR"] == str(settings_.log_dir)
    assert environ["STATE_DIR"] == str(settings_.state_dir)
    assert environ["AGENCY_CRON_MANIFEST"] == str(folder / "tasks.yaml")
    assert environ["PATH"].split(":")[0] == str(interpreter.parent)


def test_the_task_env_may_set_path(tmp_path, interpreter, site):
    task = Task(name="job", schedule=("@daily",), command="true", env={"PATH": "/opt/tools"})
    _, environ = run_wrapper(render.wrapper_text(task, site(tmp_path), "/m.yaml"), tmp_path)
    assert environ["PATH"] == "/opt/tools"


@pytest.mark.parametrize(
    "manifest",
    [
        "/srv/it's here/tasks.yaml",
        "/srv/$(touch pwned)/`id`/tasks.yaml",
        "/srv/odd\necho INJECTED >&2\n/tasks.yaml",
    ],
)
def test_any_manifest_path_is_inert(tmp_path, interpreter, manifest, site):
    # The path is shown in a comment and exported: neither may become a command.
    task = Task(name="job", schedule=("@daily",), command="true")
    text = render.wrapper_text(task, site(tmp_path), manifest)
    _, environ = run_wrapper(text, tmp_path)
    assert environ["AGENCY_CRON_MANIFEST"] == manifest
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "root", ["/srv/with space", "/srv/quo'te", "/srv/d$ollar", "/srv/caf\u00e9", "/srv/50%"]
)
def test_odd_install_paths_reach_the_runner_unchanged(tmp_path, interpreter, root):
    settings_ = load_settings(
        environ={"AGENCY_ROOT": root, "LOG_DIR": f"{root}/log", "STATE_DIR": f"{root}/state"}
    )
    task = Task(name="job", schedule=("@daily",), command="true")
    argv, environ = run_wrapper(render.wrapper_text(task, settings_, "/m.yaml"), tmp_path)
    assert environ["AGENCY_ROOT"] == root
    assert environ["STATE_DIR"] == f"{root}/state"
    assert argv[4] == f"{root}/state/tasks/job.json"


def test_the_wrapper_is_pure(tmp_path, site):
    task = Task(name="job", schedule=("@daily",), command="true", env={"A": "1"})
    first = render.wrapper_text(task, site(tmp_path), tmp_path / "m.yaml")
    assert first == render.wrapper_text(task, site(tmp_path), tmp_path / "m.yaml")
    assert first.startswith("#!/bin/sh\n") and first.endswith("\n")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- logrotate


def logrotate_check(text: str, folder: Path) -> str:
    """`logrotate -d` on the text, as install runs it; its output."""
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    assert os.access(binary, os.X_OK), "logrotate is not installed (apt-get install logrotate)"
    config = folder / "agency_stack_cron"
    config.write_text(text)
    config.chmod(0o644)
    result = subprocess.run(
        [binary, "-d", "-s", str(folder / "state"), str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("log_dir", ["log", "log dir", "caf\u00e9 logs", "a#b"])
@pytest.mark.parametrize("retention", [1, 7, 365])
def test_logrotate_config_covers_both_log_folders(tmp_path, log_dir, retention, site):
    folder = tmp_path / log_dir
    (folder / "cron").mkdir(parents=True)
    (folder / "task.log").write_text("x\n")
    (folder / "cron" / "task.sh.log").write_text("x\n")
    settings_ = site(tmp_path, LOG_DIR=str(folder), LOG_RETENTION_DAYS=str(retention))
    text = render.logrotate_text(settings_, "root", "root")

    assert f"rotate {retention}\n" in text
    assert "su root root\n" in text
    directives = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert "create 0640" in directives and "copytruncate" not in directives
    output = logrotate_check(text, tmp_path)
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert errors == []
    assert f"considering log {folder}/task.log" in output
    assert f"considering log {folder}/cron/task.sh.log" in output
    assert f"{retention} rotations" in output
