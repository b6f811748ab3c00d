"""Start a run in the background: `agency-cron run --detach` and the admin API's run now.

The run goes through the runner exactly as a scheduled one does (lock, timeout, retries,
log, history, alert), in its own session so that it outlives the command or the request
that started it. The spec is handed over on stdin, its output goes to the cron log.
"""

from __future__ import annotations

import json
import os
import subprocess

from agency_cron import layout, render
from agency_cron.config import Settings


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
