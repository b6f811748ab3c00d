"""Start a run in the background: `agency-cron run --detach` and the admin API's run now.

The run goes through the runner exactly as a scheduled one does (lock, timeout, retries,
log, history, alert), in its own session so that it outlives the command or the request
that started it. The spec is handed over on stdin, its output goes to the cron log.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from agency_cron import layout, render
from agency_cron.config import Settings
from agency_cron.results import Started

if TYPE_CHECKING:
    from agency_cron.manifest import Task


def spec_now(settings: Settings, task: Task, manifest_path: Path | str) -> dict:
    """The spec of a run asked for now (`run`, `run --detach`, the API's run action): the
    task as its local override leaves it, with the wrapper's environment (render.spec_run_now)."""
    from agency_cron.overrides import effective_enabled, read_overrides

    enabled = effective_enabled(task, read_overrides(settings))
    return render.spec_run_now(task, settings, enabled, manifest_path)


def run_now(
    settings: Settings, task: Task, manifest_path: Path | str, alert: bool = False
) -> Started:
    """Run-now, for the CLI (`run --detach`) and the API alike: the task's spec_now started
    in the background under a fresh run id; returns at once."""
    run_id = new_run_id()
    pid = start_detached(settings, spec_now(settings, task, manifest_path), alert, run_id)
    return Started(task.name, run_id, pid)


def new_run_id() -> str:
    """The same form the runner gives its own runs: 12 hex digits."""
    return os.urandom(6).hex()


def start_detached(settings: Settings, spec: dict, alert: bool, run_id: str) -> int:
    """Start the runner for `spec` in its own session; returns the runner's pid at once."""
    log = layout.cron_log_path(settings, spec["name"])
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [render.python_executable(), "-m", "agency_cron.runner", "-", f"--run-id={run_id}"]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [*command, *(["--alert"] if alert else [])],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A run asked for now starts now: no zone check, no jitter.
            env={**os.environ, "AGENCY_CRON_SCHEDULED": "no"},
        )
    stdin = process.stdin
    assert stdin is not None  # stdin=PIPE above
    stdin.write(json.dumps(spec).encode())
    stdin.close()
    # Nobody waits for it here; a thread reaps it so that it does not linger as a zombie.
    import threading

    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid
