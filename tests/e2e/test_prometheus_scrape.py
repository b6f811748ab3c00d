"""A real scrape end to end: Debian's prometheus-node-exporter reading the textfile that
`agency-cron metrics --textfile` wrote, Debian's prometheus scraping it and serve's
/metrics (with a bearer token) every second, and the shipped alert rules evaluated on
what it scraped. Everything on 127.0.0.1, bounded waits, every process stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

PROMETHEUS = "/usr/bin/prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "agency-cron.rules.yml"
ADMIN_TOKEN = "admin-0123456789abcdef-scrape"
READ_TOKEN = "read-0123456789abcdef-scrape"
WAIT_S = 90
MANIFEST = """\
tasks:
  - name: good
    schedule: "*/5 * * * *"
    command: echo fine
  - name: bad
    schedule: "@hourly"
    command: exit 4
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def started(argv: list[str], log: Path):
    """A process for the block; stopped by its pid afterwards (SIGTERM, then SIGKILL)."""
    for binary in argv[:1]:
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing (.ci/run installs prometheus and its node exporter)")
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def wait_for(what: str, check, logs: list[Path], processes: list[subprocess.Popen]):
    """check() until it returns something truthy, at most WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.args[0]} exited with {process.returncode}\n{tails(logs)}")
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {WAIT_S}s (last: {last!r})\n{tails(logs)}")


def tails(logs: list[Path]) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists()
    )


def api(base: str, path: str, **params: str):
    """The `data` of a Prometheus API answer; None while it is starting (503)."""
    answer = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=10)
    if answer.status_code == 503:
        return None
    body = answer.json()
    assert body["status"] == "success", body
    return body["data"]


def query(base: str, expr: str) -> list[dict]:
    data = api(base, "query", query=expr)
    return data["result"] if data else []


def firing(base: str, alertname: str) -> list[dict]:
    alerts = (api(base, "alerts") or {}).get("alerts", [])
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def last_success_of(env, task: str) -> float:
    db = sqlite3.connect(env.state_dir / "history.db")
    try:
        (started_at,) = db.execute(
            "SELECT MAX(started_at) FROM runs WHERE task = ? AND status = 'success'", (task,)
        ).fetchone()
    finally:
        db.close()
    return datetime.fromisoformat(started_at).timestamp()


def prometheus_config(tmp_path: Path, node_port: int, serve_url: str) -> Path:
    token = tmp_path / "scrape.token"
    token.write_text(READ_TOKEN + "\n")
    token.chmod(0o600)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files:
              - {RULES}
            scrape_configs:
              - job_name: node
                static_configs:
                  - targets: ["127.0.0.1:{node_port}"]
              - job_name: agency-cron
                authorization:
                  type: Bearer
                  credentials_file: {token}
                static_configs:
                  - targets: ["{serve_url.removeprefix("http://")}"]
            """
        )
    )
    return config


def test_prometheus_scrapes_the_textfile_and_serve(env, cli, serving, tmp_path):
    env.add_config(f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n")
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    assert cli(*env.args("run", "good"))[0] == 0
    assert cli(*env.args("run", "bad"))[0] == 4
    textfiles = tmp_path / "node-exporter"
    textfiles.mkdir()
    assert cli(*env.args("metrics", "--textfile", str(textfiles / "agency_cron.prom")))[0] == 0
    expected = last_success_of(env, "good")

    node_port, prom_port = free_port(), free_port()
    logs = [tmp_path / "node-exporter.log", tmp_path / "prometheus.log", tmp_path / "serve.log"]
    node = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{node_port}",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textfiles}",
    ]
    environ = {**os.environ, "NO_COLOR": "1"}
    with (
        started(node, logs[0]) as exporter,
        serving(env.args(), logs[2], environ=environ) as server,
        started(
            [
                PROMETHEUS,
                f"--config.file={prometheus_config(tmp_path, node_port, server.url)}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            logs[1],
        ) as prometheus,
    ):
        base = f"http://127.0.0.1:{prom_port}"
        processes = [exporter, prometheus, server.process]
        expr = 'agency_cron_last_success_timestamp_seconds{task="good"}'
        series = wait_for(
            "both jobs' last success of good",
            lambda: (found := query(base, expr)) and len(found) == 2 and found,
            logs,
            processes,
        )
        assert {s["metric"]["job"] for s in series} == {"node", "agency-cron"}
        for sample in series:
            assert float(sample["value"][1]) == expected, sample
            assert sample["metric"]["host"] == socket.gethostname()
        # node_exporter read the file without complaint (no sample timestamps, valid text)
        assert query(base, "node_textfile_scrape_error")[0]["value"][1] == "0"
        # the shipped rules, on the scraped data: `bad` fails, from both jobs
        alerts = wait_for(
            "AgencyCronTaskFailing for bad from both jobs",
            lambda: len(found := firing(base, "AgencyCronTaskFailing")) >= 2 and found,
            logs,
            processes,
        )
        assert {a["labels"]["task"] for a in alerts} == {"bad"}
        assert {a["labels"]["job"] for a in alerts} == {"node", "agency-cron"}
        targets = api(base, "targets")["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {
            "node": "up",
            "agency-cron": "up",
        }
    for process in processes:
        assert process.poll() is not None  # every process was stopped
