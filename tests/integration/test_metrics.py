"""`agency-cron metrics`, `--textfile`, serve's /metrics and the metrics-export task, for real.

Runs go through `agency-cron run`; the expected figures are read from history.db with plain
sqlite3, independently of agency_cron.metrics. Every output is checked by Debian's
`promtool check metrics`. Read-only folders and a full disk are real: a tmpfs mounted in a
private mount namespace (`unshare -m`), gone when the command ends.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = "/usr/bin/promtool"
READ_TOKEN = "read-0123456789abcdef-metrics"
ADMIN_TOKEN = "admin-0123456789abcdef-metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Figures that move between two reads of the same history (the write-ahead log is
# checkpointed and removed when the last connection closes).
VOLATILE = {
    "agency_cron_metrics_scrape_duration_seconds",
    "agency_cron_metrics_generated_timestamp_seconds",
    "agency_cron_history_bytes",
}
NOT_OUTCOMES = ("skipped", "retry-scheduled", "running")

MANIFEST = """\
tasks:
  - name: good
    schedule: "*/5 * * * *"
    command: echo fine
  - name: bad
    schedule: "0 2 * * *"
    command: echo boom >&2; exit 3
  - name: slow
    schedule: "@hourly"
    command: sleep 30
    timeout: 1s
  - name: flaky
    schedule: "@daily"
    command: exit 1
    retries: 1
    retry_delay: 1s
  - name: as-nobody
    schedule: "@daily"
    command: "true"
    user: nobody
    enabled: false
  - name: at-boot
    schedule: "@reboot"
    command: "true"
"""


# --- helpers ---------------------------------------------------------------------------------


def promtool_check(text: str) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: apt-get install prometheus (.ci/run does)")
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.timestamp is None
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def stable(found: dict) -> dict:
    return {k: v for k, v in found.items() if k[0] not in VOLATILE}


def value(found: dict, name: str, task: str, **labels: str) -> float | None:
    for (sample, pairs), number in found.items():
        got = dict(pairs)
        if (
            sample == name
            and got.get("task") == task
            and all(got.get(k) == v for k, v in labels.items())
        ):
            return number
    return None


def epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def metrics_text(cli, env, *extra: str) -> str:
    code, out, err = cli(*env.args("metrics", *extra))
    assert code == 0, err
    return out


def write_config(env, text: str) -> None:
    env.add_config(text)


@pytest.fixture
def ran(env, cli):
    """The manifest installed and its tasks run through `agency-cron run`."""
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    for name, expected in (("good", 0), ("good", 0), ("bad", 3), ("slow", 124), ("flaky", 1)):
        assert cli(*env.args("run", name))[0] == expected
    return env


def history_rows(env) -> list[sqlite3.Row]:
    db = sqlite3.connect(env.state_dir / "history.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM runs ORDER BY started_at, id").fetchall()
    finally:
        db.close()


def assert_equals_history(env, found: dict) -> None:
    rows = history_rows(env)
    for name in ("good", "bad", "slow", "flaky", "as-nobody", "at-boot"):
        mine = [r for r in rows if r["task"] == name]
        labels = {"user": "nobody"} if name == "as-nobody" else {}
        for status in {r["status"] for r in mine} - {"running"}:
            count = sum(r["status"] == status for r in mine)
            assert value(found, "agency_cron_runs_total", name, status=status, **labels) == count
        successes = [r["started_at"] for r in mine if r["status"] == "success"]
        last_success = max(successes) if successes else None
        got = value(found, "agency_cron_last_success_timestamp_seconds", name, **labels)
        assert got == epoch(last_success), name
        ended = [r for r in mine if r["status"] not in NOT_OUTCOMES]
        last = ended[-1] if ended else None
        got = value(found, "agency_cron_last_run_timestamp_seconds", name, **labels)
        assert got == epoch(last["started_at"] if last else None), name
        duration = value(found, "agency_cron_last_duration_seconds", name, **labels)
        code = value(found, "agency_cron_last_exit_code", name, **labels)
        assert (duration, code) == (
            (last["duration_s"], last["exit_code"]) if last else (None, None)
        )
    host = os.uname().nodename
    assert found[("agency_cron_history_rows", frozenset({("host", host)}))] == len(rows)


# --- metrics on stdout --------------------------------------------------------------------------


def test_metrics_equal_the_history_after_real_runs(ran, cli):
    text = metrics_text(cli, ran)
    promtool_check(text)
    found = samples(text)
    assert_equals_history(ran, found)
    assert value(found, "agency_cron_runs_total", "flaky", status="retry-scheduled") == 1
    assert value(found, "agency_cron_runs_total", "slow", status="timeout") == 1
    assert value(found, "agency_cron_last_exit_code", "slow") == 124
    assert value(found, "agency_cron_last_run_success", "good") == 1
    assert value(found, "agency_cron_last_run_success", "bad") == 0
    assert value(found, "agency_cron_enabled", "as-nobody", user="nobody") == 0
    assert value(found, "agency_cron_enabled", "good") == 1
    # next fire times: none for a disabled task or an @reboot one
    assert value(found, "agency_cron_next_run_timestamp_seconds", "as-nobody") is None
    assert value(found, "agency_cron_next_run_timestamp_seconds", "at-boot") is None
    assert value(found, "agency_cron_next_run_timestamp_seconds", "good") > time.time()
    size = (ran.state_dir / "history.db").stat().st_size
    host = os.uname().nodename
    assert found[("agency_cron_history_bytes", frozenset({("host", host)}))] >= size


def test_overdue_is_the_verdict_of_health(ran, cli):
    """A success moved two days back makes `good` overdue for `health` and for metrics."""
    db = sqlite3.connect(ran.state_dir / "history.db")
    db.execute("UPDATE runs SET started_at = '2020-01-01T00:00:00.000+00:00' WHERE task = 'good'")
    db.commit()
    db.close()
    code, out, _ = cli(*ran.args("health", "--json"))
    overdue = {item["name"] for item in json.loads(out)["overdue"]}
    found = samples(metrics_text(cli, ran))
    assert "good" in overdue
    for name in ("good", "bad", "slow", "flaky", "as-nobody", "at-boot"):
        labels = {"user": "nobody"} if name == "as-nobody" else {}
        assert value(found, "agency_cron_overdue", name, **labels) == (name in overdue), name
    assert value(found, "agency_cron_last_success_timestamp_seconds", "good") == epoch(
        "2020-01-01T00:00:00.000+00:00"
    )


def test_a_status_this_version_does_not_know_is_counted(ran, cli):
    """Other runners may record statuses (`lost`, later ones) that the exporter must not
    drop; a row still `running` is no outcome and is not counted."""
    db = sqlite3.connect(ran.state_dir / "history.db")
    for status in ("lost", "lost", "quarantined", "running"):
        db.execute(
            "INSERT INTO runs (task, run_id, attempt, attempts, started_at, status)"
            " VALUES ('good', 'x', 1, 1, '2030-01-01T00:00:00.000+00:00', ?)",
            (status,),
        )
    db.commit()
    db.close()
    text = metrics_text(cli, ran)
    promtool_check(text)
    found = samples(text)
    assert value(found, "agency_cron_runs_total", "good", status="lost") == 2
    assert value(found, "agency_cron_runs_total", "good", status="quarantined") == 1
    assert value(found, "agency_cron_runs_total", "good", status="running") is None
    # the newest row that ended is now a `quarantined` one (no exit code recorded)
    assert value(found, "agency_cron_last_run_success", "good") == 0
    assert value(found, "agency_cron_last_exit_code", "good") is None


def test_a_run_in_progress(env, cli):
    env.write_manifest(
        'tasks:\n  - name: sleeper\n    schedule: "@hourly"\n    command: sleep 60\n'
    )
    assert cli(*env.args("install"))[0] == 0
    assert cli(*env.args("run", "sleeper", "--detach"))[0] == 0
    try:
        deadline = time.monotonic() + 30
        while json.loads(cli(*env.args("status", "sleeper", "--json"))[1])["state"] != "running":
            assert time.monotonic() < deadline, "the detached run never showed as running"
            time.sleep(0.2)
        found = samples(metrics_text(cli, env))
        assert value(found, "agency_cron_running", "sleeper") == 1
        assert value(found, "agency_cron_overdue", "sleeper") == 0
        assert value(found, "agency_cron_runs_total", "sleeper", status="running") is None
    finally:
        cli(*env.args("kill", "sleeper"))
    deadline = time.monotonic() + 30
    while json.loads(cli(*env.args("status", "sleeper", "--json"))[1])["state"] == "running":
        assert time.monotonic() < deadline, "the killed run never ended"
        time.sleep(0.2)
    found = samples(metrics_text(cli, env))
    assert value(found, "agency_cron_running", "sleeper") == 0
    assert value(found, "agency_cron_runs_total", "sleeper", status="killed") == 1
    assert value(found, "agency_cron_last_run_success", "sleeper") == 0


def test_no_history_yet(env, cli):
    env.write_manifest(MANIFEST)
    text = metrics_text(cli, env)
    promtool_check(text)
    found = samples(text)
    assert value(found, "agency_cron_last_run_timestamp_seconds", "good") == 0
    assert value(found, "agency_cron_runs_total", "good", status="success") == 0
    assert found[("agency_cron_history_rows", frozenset({("host", os.uname().nodename)}))] == 0


def test_an_unreadable_history_is_an_error_not_zeros(ran, tmp_path):
    """Zeros would tell Prometheus that nothing ever succeeded; the previous textfile stays
    (and goes stale, which the rules report)."""
    target = tmp_path / "agency_cron.prom"
    assert run_metrics(ran, "--textfile", str(target)).returncode == 0
    before = target.read_bytes()
    db = ran.state_dir / "history.db"
    for leftover in db.parent.glob("history.db-*"):
        leftover.unlink()
    db.write_bytes(b"this is not a database" * 100)
    result = run_metrics(ran, "--textfile", str(target))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"agency-cron: error: {db}: STATE_DIR: cannot read the history: file is not a database"
    ]
    assert target.read_bytes() == before


# --- the textfile ------------------------------------------------------------------------------


def run_metrics(env, *extra: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", *env.args("metrics", *extra)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=lambda: os.umask(umask),
        check=False,
    )


def test_textfile_is_replaced_atomically_mode_0644(ran, cli, tmp_path):
    folder = tmp_path / "node-exporter"
    folder.mkdir()
    target = folder / "agency_cron.prom"
    first = run_metrics(ran, "--textfile", str(target), umask=0o077)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "" and first.stderr == ""
    assert target.stat().st_mode & 0o777 == 0o644  # readable by node_exporter's own user
    inode = target.stat().st_ino
    promtool_check(target.read_text())
    assert_equals_history(ran, samples(target.read_text()))
    assert stable(samples(target.read_text())) == stable(samples(metrics_text(cli, ran)))
    assert cli(*ran.args("run", "good"))[0] == 0
    second = run_metrics(ran, "--textfile", str(target))
    assert second.returncode == 0, second.stderr
    assert target.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in folder.iterdir()) == ["agency_cron.prom"]  # no temp left
    assert_equals_history(ran, samples(target.read_text()))


def test_textfile_in_a_missing_folder_is_one_line_exit_2(ran, tmp_path):
    target = tmp_path / "nowhere" / "agency_cron.prom"
    result = run_metrics(ran, "--textfile", str(target))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"agency-cron: error: {target}: --textfile: folder {target.parent} does not exist"
    ]
    assert not target.parent.exists()


def in_private_mount(env, tmp_path, setup: str, command: str) -> dict[str, str]:
    """Run `setup` then `command` in a private mount namespace on a fresh tmpfs at DIR;
    returns the exit code, stderr, the folder's listing and the textfile's content."""
    folder, out = tmp_path / "mnt", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    script = f"""
set -e
DIR={shlex.quote(str(folder))}
{setup}
set +e
{command} 2> {out}/stderr
echo $? > {out}/code
ls -A "$DIR" > {out}/listing
cat "$DIR/agency_cron.prom" > {out}/content 2>/dev/null
exit 0
"""
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(folder.iterdir())  # the tmpfs was never visible out here
    return {name: (out / name).read_text() for name in ("code", "stderr", "listing", "content")}


def metrics_command(env, target: str) -> str:
    argv = [sys.executable, "-m", "agency_cron", *env.args("metrics", "--textfile", target)]
    return " ".join(shlex.quote(a) for a in argv)


@pytest.mark.parametrize(
    "setup, reason",
    [
        (
            'mount -t tmpfs -o size=1m tmpfs "$DIR"; printf "previous\\n" > "$DIR/agency_cron.prom";'
            ' mount -o remount,ro "$DIR"',
            "Read-only file system",
        ),
        (
            # one page: the previous file fills it, so the new one cannot be written
            'mount -t tmpfs -o size=4k tmpfs "$DIR"; printf "previous\\n" > "$DIR/agency_cron.prom"',
            "No space left on device",
        ),
    ],
    ids=["read-only", "full"],
)
def test_unwritable_textfile_keeps_the_old_one(ran, tmp_path, setup, reason):
    target = f"{tmp_path}/mnt/agency_cron.prom"
    got = in_private_mount(ran, tmp_path, setup, metrics_command(ran, target))
    assert got["code"].strip() == "2"
    assert got["stderr"].splitlines() == [
        f"agency-cron: error: {target}: --textfile: cannot write: {reason}"
    ]
    assert got["listing"].split() == ["agency_cron.prom"]  # no temporary file left behind
    assert got["content"] == "previous\n"


def test_the_configured_textfile_is_named_by_its_setting(ran, tmp_path):
    target = f"{tmp_path}/mnt/agency_cron.prom"
    write_config(ran, f"METRICS_TEXTFILE={target}\n")
    setup = 'mount -t tmpfs -o size=1m,mode=755 tmpfs "$DIR"; mount -o remount,ro "$DIR"'
    got = in_private_mount(ran, tmp_path, setup, metrics_command(ran, target))
    assert got["code"].strip() == "2"
    assert got["stderr"].splitlines() == [
        f"agency-cron: error: {target}: METRICS_TEXTFILE: cannot write: Read-only file system"
    ]


# --- serve's /metrics -----------------------------------------------------------------------------


def serve_options(env, tmp_path, serving, *extra: str, environ: dict | None = None):
    log = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*.log')))}.log"
    full = {**os.environ, "NO_COLOR": "1", **(environ or {})}
    return serving(env.args(), log, *extra, environ=full)


def test_serve_metrics_with_a_read_token(ran, cli, serving, tmp_path):
    write_config(ran, f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n")
    with serve_options(ran, tmp_path, serving) as server:
        anonymous = httpx.get(f"{server.url}/metrics", timeout=30)
        answer = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=30
        )
    assert anonymous.status_code == 401
    assert "agency_cron" not in anonymous.text
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    promtool_check(answer.text)
    assert_equals_history(ran, samples(answer.text))
    assert stable(samples(answer.text)) == stable(samples(metrics_text(cli, ran)))


def test_serve_metrics_public_on_loopback_only(ran, serving, tmp_path, cli_process):
    write_config(ran, f"ADMIN_TOKEN={ADMIN_TOKEN}\nMETRICS_PUBLIC=true\n")
    with serve_options(ran, tmp_path, serving) as server:
        public = httpx.get(f"{server.url}/metrics", timeout=30)
        # a name pointed at 127.0.0.1 by another site (DNS rebinding) gets no free pass
        rebound = httpx.get(f"{server.url}/metrics", headers={"Host": "evil.example"}, timeout=30)
        other = httpx.get(f"{server.url}/api/tasks", timeout=30)
    assert public.status_code == 200 and public.headers["content-type"] == CONTENT_TYPE
    promtool_check(public.text)
    assert rebound.status_code == 401
    assert other.status_code == 401  # only /metrics is opened
    refused = cli_process(*ran.args("serve", "--host", "0.0.0.0", "--port", "1"))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "agency-cron: error: METRICS_PUBLIC: true opens /metrics without a token, on loopback"
        " only; 0.0.0.0 is not a loopback address (give the scraper ADMIN_READ_TOKEN instead)"
    ]


# --- the built-in metrics-export task -----------------------------------------------------------


def test_metrics_textfile_installs_an_every_minute_task(env, cli, tmp_path):
    folder = tmp_path / "node-exporter"
    folder.mkdir()
    target = folder / "agency_cron.prom"
    env.write_manifest(MANIFEST)
    write_config(env, f"METRICS_TEXTFILE={target}\n")
    assert cli(*env.args("install"))[0] == 0
    wrapper = env.agency_root / "scripts/cronjobs/metrics-export.sh"
    assert f"* * * * * {wrapper} # agency-cron:metrics-export\n" in env.crontab.read_text()
    script = env.agency_root / "scripts/cronjobs/metrics_export_cron.sh"
    assert script.stat().st_mode & 0o111
    assert "@AGENCY_" not in script.read_text()  # the installation is written in
    code, out, _ = cli(*env.args("status"))
    assert f"metrics: METRICS_TEXTFILE {target} not written yet" in out
    # the wrapper as cron starts it: a bare environment, from another directory
    result = subprocess.run(
        [str(wrapper)],
        env={"PATH": "/usr/bin:/bin", "AGENCY_CRON_NO_CRON_LOG": "1"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    promtool_check(target.read_text())
    found = samples(target.read_text())
    assert value(found, "agency_cron_enabled", "metrics-export") == 1
    assert value(found, "agency_cron_running", "metrics-export") == 1  # itself, while it ran
    code, out, _ = cli(*env.args("status"))
    assert f"metrics: exported to {target}, written" in out
    assert cli(*env.args("dashboard"))[0] == 0
    data = json.loads((env.state_dir / "dashboard/dashboard.json").read_text())
    assert data["metrics"]["state"] == "ok" and data["metrics"]["textfile"] == str(target)
    # `run` works too (it reads the same config and manifest as the wrapper)
    assert cli(*env.args("run", "metrics-export"))[0] == 0
    # and the bundled script by hand, from / in a bare environment, with only the textfile
    target.unlink()
    by_hand = subprocess.run(
        [str(script)],
        env={"PATH": "/usr/bin:/bin", "METRICS_TEXTFILE": str(target)},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    promtool_check(target.read_text())
    # a second install changes nothing
    code, out, _ = cli(*env.args("install"))
    assert code == 0 and "no changes" in out


def test_without_metrics_textfile_the_task_goes_away(env, cli, tmp_path):
    env.write_manifest(MANIFEST)
    write_config(env, f"METRICS_TEXTFILE={tmp_path}/agency_cron.prom\n")
    assert cli(*env.args("install"))[0] == 0
    assert "agency-cron:metrics-export" in env.crontab.read_text()
    env.config.write_text(env.config.read_text().replace("METRICS_TEXTFILE=", "#METRICS_TEXTFILE="))
    assert cli(*env.args("install"))[0] == 0
    assert "metrics-export" not in env.crontab.read_text()
    assert not (env.agency_root / "scripts/cronjobs/metrics-export.sh").exists()
    code, out, _ = cli(*env.args("status"))
    assert "metrics: no textfile export (METRICS_TEXTFILE unset)" in out
    assert cli(*env.args("dashboard"))[0] == 0
    data = json.loads((env.state_dir / "dashboard/dashboard.json").read_text())
    assert data["metrics"]["state"] == "off"


def test_a_manifest_task_of_the_same_name_takes_its_place(env, cli, tmp_path):
    env.write_manifest(
        MANIFEST
        + '  - name: metrics-export\n    schedule: "*/5 * * * *"\n'
        + f"    command: agency-cron metrics --textfile {tmp_path}/mine.prom\n"
    )
    write_config(env, f"METRICS_TEXTFILE={tmp_path}/agency_cron.prom\n")
    assert cli(*env.args("install"))[0] == 0
    lines = [line for line in env.crontab.read_text().splitlines() if "metrics-export" in line]
    assert len(lines) == 1 and lines[0].startswith("*/5 * * * * ")


def test_stale_textfile_shows_in_status(env, cli, tmp_path):
    target = tmp_path / "agency_cron.prom"
    env.write_manifest(MANIFEST)
    write_config(env, f"METRICS_TEXTFILE={target}\n")
    assert cli(*env.args("metrics", "--textfile", str(target)))[0] == 0
    an_hour_ago = time.time() - 3600
    os.utime(target, (an_hour_ago, an_hour_ago))
    code, out, _ = cli(*env.args("status"))
    assert f"metrics: {target} is STALE, last written" in out


# --- doctor -----------------------------------------------------------------------------------------


def metrics_finding(cli, env) -> dict:
    code, out, err = cli(*env.args("doctor", "--json"))
    assert code in (0, 1), err
    (finding,) = [f for f in json.loads(out)["findings"] if f["check"] == "metrics-textfile"]
    return finding


def test_doctor_textfile_folder(env, cli, tmp_path):
    env.write_manifest(MANIFEST)
    assert metrics_finding(cli, env)["ok"] is True  # off: nothing to check
    folder = tmp_path / "node-exporter"
    write_config(env, f"METRICS_TEXTFILE={folder}/agency_cron.prom\n")
    finding = metrics_finding(cli, env)
    assert finding["ok"] is False
    assert finding["detail"] == f"METRICS_TEXTFILE: {folder} does not exist"
    assert finding["fix"] == f"mkdir -p {folder}"
    folder.mkdir()
    finding = metrics_finding(cli, env)
    assert finding["ok"] is True and "not written yet" in finding["detail"]
    (folder / "agency_cron.prom").write_text("")
    (folder / "agency_cron.prom").chmod(0o600)
    finding = metrics_finding(cli, env)
    assert finding["ok"] is False
    assert finding["fix"] == f"chmod 644 {folder}/agency_cron.prom"


def test_doctor_textfile_folder_read_only(env, tmp_path):
    env.write_manifest(MANIFEST)
    write_config(env, f"METRICS_TEXTFILE={tmp_path}/mnt/agency_cron.prom\n")
    doctor = [sys.executable, "-m", "agency_cron", *env.args("doctor", "--json")]
    command = " ".join(shlex.quote(a) for a in doctor) + f" > {tmp_path}/out/doctor.json"
    setup = 'mount -t tmpfs -o size=1m tmpfs "$DIR"; mount -o remount,ro "$DIR"'
    in_private_mount(env, tmp_path, setup, command)
    findings = json.loads((tmp_path / "out/doctor.json").read_text())["findings"]
    (finding,) = [f for f in findings if f["check"] == "metrics-textfile"]
    assert finding["ok"] is False
    assert finding["detail"] == f"METRICS_TEXTFILE: {tmp_path}/mnt is not writable by root"
    assert finding["fix"].startswith(f"chown root {tmp_path}/mnt")


def test_bad_metrics_settings_are_refused_before_anything(env, cli):
    env.write_manifest(MANIFEST)
    write_config(env, "METRICS_TEXTFILE=relative.prom\n")
    code, _, err = cli(*env.args("install"))
    assert code == 2
    assert err.splitlines() == [
        f"agency-cron: error: {env.config}: METRICS_TEXTFILE: expected an absolute path ending"
        " in .prom (node_exporter reads only *.prom), got 'relative.prom'"
    ]
    assert not env.crontab.exists()
