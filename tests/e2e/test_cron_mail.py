"""End to end: with no alert target, a failed run reaches a person through cron's own mail.

The real cron daemon runs two installed every-minute tasks from a cron.d file (as root)
whose MAILTO names a mailbox; the real MTA cron calls, /usr/sbin/sendmail (Debian's
msmtp-mta), relays to an aiosmtpd server on 127.0.0.1, configured by a test-specific
/etc/msmtprc (the machine's own, if any, is put back afterwards). The failing task's report
arrives; the succeeding task sends nothing. Run under `flock /tmp/agency-crond.lock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

WAIT_S = 200  # cron reads the new file at the next minute; the test needs two runs of it
MSMTPRC = Path("/etc/msmtprc")
SENDMAIL = Path("/usr/sbin/sendmail")


@pytest.fixture
def inbox(smtp_inbox):
    """The SMTP server the relay delivers to (tests/conftest.py's smtp_inbox)."""
    return smtp_inbox


@pytest.fixture
def msmtp_relay(inbox, site) -> Iterator[Path]:
    """/etc/msmtprc relaying to the inbox, for the test only; the MTA must be msmtp."""
    target = os.path.realpath(SENDMAIL)
    if not target.endswith("/msmtp"):
        pytest.fail(f"{SENDMAIL} is {target}, not msmtp: apt-get install msmtp-mta (.ci/run does)")
    log = site / "msmtp.log"
    saved = MSMTPRC.read_bytes() if MSMTPRC.exists() else None
    MSMTPRC.write_text(
        textwrap.dedent(
            f"""\
            # written by tests/e2e/test_cron_mail.py for the length of the test
            defaults
            auth off
            tls off
            logfile {log}
            account default
            host 127.0.0.1
            port {inbox.port}
            from cron@agency-cron.test
            """
        )
    )
    MSMTPRC.chmod(0o644)
    try:
        yield log
    finally:
        if saved is None:
            MSMTPRC.unlink(missing_ok=True)
        else:
            MSMTPRC.write_bytes(saved)


def statuses(agency_cron, site: Path, env: dict, name: str) -> list[str]:
    shown = agency_cron(site, env, "history", name, "--json")
    return [row["status"] for row in json.loads(shown.stdout)] if shown.returncode == 0 else []


@pytest.mark.slow
def test_cron_mails_the_report_of_a_failed_run_and_nothing_for_a_success(
    site, cron_daemon, cron_d_file, cli_env, inbox, msmtp_relay, make_env, agency_cron, read
):
    word = uuid.uuid4().hex[:8]
    failing, passing = f"mail-fail-{word}", f"mail-ok-{word}"
    make_env(
        site,
        crontab=f"system:{cron_d_file}",
        manifest=f"""\
            tasks:
              - name: {failing}
                schedule: "* * * * *"
                command: echo "broken-{word}"; exit 3
              - name: {passing}
                schedule: "* * * * *"
                command: echo "fine-{word}"
            """,
    )
    # The operator's own line in the cron.d file: where cron mails a job's output.
    cron_d_file.write_text("MAILTO=ops@agency-cron.test\n")
    cron_d_file.chmod(0o644)
    installed = agency_cron(site, cli_env, "install")
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "reaches nobody" not in installed.stderr  # MAILTO set, an MTA present
        cron_daemon.ensure_running()

        def reports() -> list[str]:
            return [b for b in inbox.bodies() if f"task {failing} failed" in b]

        # Two failure reports: by the second one (a minute later), the first minute's run of
        # the succeeding task has long ended, and any mail of its own would be here too.
        deadline = time.monotonic() + WAIT_S
        while len(reports()) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        if len(reports()) < 2:
            pytest.fail(
                f"no two failure reports within {WAIT_S}s; got {len(inbox.messages)} mail(s)\n"
                f"daemon: {cron_daemon.describe()}\nmsmtp log:\n{read(msmtp_relay)}\n"
                f"cron.d:\n{read(cron_d_file)}\n"
                f"cron log:\n{read(site / 'log' / 'cron' / f'{failing}.sh.log')}"
            )
        assert "success" in statuses(agency_cron, site, cli_env, passing)
        assert statuses(agency_cron, site, cli_env, failing)[:2] == ["failed", "failed"]

        report = reports()[0]
        assert "exit code 3" in report
        assert f"broken-{word}" in report
        assert f"log: {site}/log/{failing}.log" in report
        assert all(m["To"] == "ops@agency-cron.test" for m in inbox.emails())
        assert [b for b in inbox.bodies() if passing in b or f"fine-{word}" in b] == []
        # The raw output still goes to the cron log, never to the mail.
        assert f"broken-{word}" in read(site / "log" / "cron" / f"{failing}.sh.log")
        assert all("agency-cron: start task=" not in b for b in inbox.bodies())
    finally:
        with contextlib.suppress(Exception):
            agency_cron(site, cli_env, "uninstall", "--purge")
