"""Control characters from task output never reach the operator's terminal raw (issue 10,
point 8): human output shows them escaped (`\\x1b`), as `systemctl status` does; `--json`
keeps the original text.

A real task prints ESC sequences (window title, clear screen), BEL, CR, DEL and a C1
control; the real runner records it; the CLI runs as a real process.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from agency_cron import history

# What the task prints: CR, OSC title + BEL, CSI clear screen, DEL, C1 CSI (U+009B). The
# views split output into lines at the CR (str.splitlines): the rest is the last line.
NOISE = "cr\rtitle\x1b]0;pwned\x07 clear\x1b[2J del\x7f c1\x9bx end"
LAST_LINE = "title\\x1b]0;pwned\\x07 clear\\x1b[2J del\\x7f c1\\x9bx end"  # as shown
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TASK = "noisy"


@pytest.fixture
def noisy(env, cli_process):
    """An installed task whose failed run printed NOISE (and recorded it in history)."""
    script = env.root / "noisy.sh"
    # printf's octal escapes: the script itself is plain text, its output is not.
    octal = "".join(f"\\{b:03o}" if b < 0x20 or b >= 0x7F else chr(b) for b in NOISE.encode())
    script.write_text(f"#!/bin/sh\nprintf '{octal}\\n'\nexit 3\n")
    script.chmod(0o755)
    env.write_manifest(
        f"""\
        tasks:
          - name: {TASK}
            schedule: "0 2 * * *"
            command: {script}
        """
    )
    assert cli_process(*env.args("install")).returncode == 0
    assert cli_process(*env.args("run", TASK)).returncode == 3
    return env


def human(env, cli_process, *args: str) -> str:
    result = cli_process(*env.args(*args), env={"COLUMNS": "200"})
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def assert_escaped(output: str) -> None:
    assert not RAW.search(output), repr(RAW.search(output).group())


def test_the_task_really_printed_control_characters(noisy, cli_process):
    """--json carries the original bytes: the escaping is for terminals only."""
    status = json.loads(cli_process(*noisy.args("status", TASK, "--json")).stdout)
    assert "\x1b]0;pwned\x07" in status["last_error"]
    summary = json.loads(cli_process(*noisy.args("log-summary", "--json")).stdout)
    (row,) = summary["tasks"]
    assert any(
        "\x1b[2J" in line and "\x7f" in line and "\x9b" in line for line in row["last_error"]
    )


@pytest.mark.parametrize("args", [("status",), ("status", TASK), ("log-summary",)])
def test_status_and_log_summary_escape_task_output(noisy, cli_process, args):
    output = human(noisy, cli_process, *args)
    assert_escaped(output)
    assert LAST_LINE in output, output


def test_history_escapes_what_a_run_recorded(noisy, cli_process):
    """A note is the runner's own text, but it can name paths and errors: escaped too."""
    conn = history.connect(str(noisy.state_dir / "history.db"))
    try:
        (row,) = [dict(r) for r in history.rows(conn, TASK, 1)]
        row.update(run_id="feedfacecafe", note=f"log write failed: {NOISE}")
        history.record(conn, {k: row.get(k) for k in history.COLUMNS})
    finally:
        conn.close()
    for args in (("history", TASK), ("history", TASK, "--wide")):
        output = human(noisy, cli_process, *args)
        assert_escaped(output)
        assert "feedfacecafe" in output and f"cr\\x0d{LAST_LINE}" in output
    rows = json.loads(cli_process(*noisy.args("history", TASK, "--json")).stdout)
    assert any(r["note"] and "\x1b]0;pwned\x07" in r["note"] for r in rows)


def test_health_and_doctor_escape_what_they_show(noisy, cli_process):
    text = noisy.crontab.read_text()
    # A managed line edited by hand with a control sequence: doctor quotes the line (drift).
    noisy.crontab.write_text(
        text.replace("0 2 * * *", "0 3 * * *", 1).replace(" #", " \x1b[2J #", 1)
    )
    doctor = human(noisy, cli_process, "doctor")
    assert_escaped(doctor)
    assert "\\x1b[2J" in doctor
    findings = json.loads(cli_process(*noisy.args("doctor", "--json")).stdout)["findings"]
    assert any("\x1b[2J" in f["detail"] for f in findings)
    assert_escaped(human(noisy, cli_process, "health"))
    assert_escaped(human(noisy, cli_process, "health", "--json"))


def test_dashboard_page_escapes_the_json_keeps(noisy, cli_process):
    out = noisy.root / "board"
    assert cli_process(*noisy.args("dashboard", "--out", str(out))).returncode == 0
    page = (out / "index.html").read_text()
    assert_escaped(page.replace("\n", " ").replace("\t", " "))
    assert "\\x1b]0;pwned\\x07" in page
    data = json.loads((out / "dashboard.json").read_text())
    assert any("\x07" in (entry["text"] or "") for entry in data["logs"])
    summary_page = noisy.root / "summary.html"
    assert cli_process(*noisy.args("log-summary", "--html", str(summary_page))).returncode == 0
    assert_escaped(summary_page.read_text().replace("\n", " "))


def test_escaping_keeps_sqlite_text_as_is(noisy):
    """The history itself is never rewritten: only what is shown is escaped."""
    conn = sqlite3.connect(noisy.state_dir / "history.db")
    try:
        (tail,) = conn.execute("SELECT output_tail FROM runs WHERE task = ?", (TASK,)).fetchone()
    finally:
        conn.close()
    assert "\x1b]0;pwned\x07" in tail
