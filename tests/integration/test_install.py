"""install / uninstall / enable / disable on real files, the real crontab binary and logrotate."""

from __future__ import annotations

import pwd
import stat
import subprocess
import uuid

import pytest

from agency_cron.backends.crontab import managed_name

FOREIGN = (
    'MAILTO=""\n'
    "# nightly report, owned by someone else\n"
    "0 0 * * * /usr/bin/report   --all  > /dev/null 2>&1\n"
    "@reboot   /usr/local/bin/warm-cache\n"
    "*/5 * * * * echo 'odd  spacing'  # trailing comment\n"
)

MANIFEST = """\
tasks:
  - name: alpha
    description: first task
    schedule: "*/5 * * * *"
    command: echo alpha
    tags: [one]
  - name: beta
    schedule: ["0 1 * * *", "@every 30m"]
    command: echo beta
    log: beta-custom.log
"""


def managed(text: str) -> list[str]:
    return [line for line in text.splitlines() if managed_name(line)]


def foreign(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not managed_name(line))


def test_install_writes_lines_wrappers_logrotate(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    code, out, err = cli(*env.args("install"))
    assert code == 0, err
    text = env.crontab.read_text()
    assert text.startswith(FOREIGN)
    wrapper = env.agency_root / "scripts/cronjobs/alpha.sh"
    assert managed(text) == [
        f"*/5 * * * * {wrapper} # agency-cron:alpha",
        f"0 1 * * * {env.agency_root}/scripts/cronjobs/beta.sh # agency-cron:beta",
        f"*/30 * * * * {env.agency_root}/scripts/cronjobs/beta.sh # agency-cron:beta",
    ]
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
    for script in ("health_check_cron.sh", "backup_verify_cron.sh"):
        assert (env.agency_root / "scripts/cronjobs" / script).stat().st_mode & 0o111
    assert (env.log_dir / "cron").is_dir()
    rotate = env.logrotate_dir / "agency_stack_cron"
    assert "rotate 7" in rotate.read_text() and "delaycompress" in rotate.read_text()
    assert "added" in out


def test_second_install_changes_nothing_and_keeps_mtimes(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install"))[0] == 0
    before = env.snapshot()
    code, out, _ = cli(*env.args("install"))
    assert code == 0
    assert "no changes" in out
    assert env.snapshot() == before


def test_dry_run_writes_nothing_and_shows_a_diff(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    before = env.snapshot()
    code, out, _ = cli(*env.args("install", "--dry-run"))
    assert code == 0
    assert env.snapshot() == before
    assert not (env.root / "state").exists()
    assert "+*/5 * * * *" in out and "agency-cron:alpha" in out
    assert "dry run: nothing written" in out


def test_changed_and_removed_tasks(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    env.write_manifest(
        MANIFEST.replace('"*/5 * * * *"', '"*/10 * * * *"').split("  - name: beta")[0]
    )
    code, out, _ = cli(*env.args("install", "--json"))
    assert code == 0
    import json

    rows = {r["item"]: r["action"] for r in json.loads(out)["rows"] if r["kind"] == "task"}
    assert rows == {"alpha": "changed", "beta": "removed"}
    text = env.crontab.read_text()
    assert foreign(text) == FOREIGN
    assert managed(text) == [
        f"*/10 * * * * {env.agency_root}/scripts/cronjobs/alpha.sh # agency-cron:alpha"
    ]
    assert not (env.agency_root / "scripts/cronjobs/beta.sh").exists()


def test_install_named_tasks_only(env, cli):
    env.write_manifest(MANIFEST)
    assert cli(*env.args("install", "beta"))[0] == 0
    assert {managed_name(line) for line in managed(env.crontab.read_text())} == {"beta"}
    code, _, err = cli(*env.args("install", "nope"))
    assert code == 2 and "unknown task 'nope'" in err


def test_disable_survives_install_until_enabled(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    assert cli(*env.args("disable", "alpha"))[0] == 0
    alpha = [line for line in managed(env.crontab.read_text()) if line.endswith(":alpha")]
    assert alpha[0].startswith("# */5 * * * *")
    assert "no changes" in cli(*env.args("install"))[1]
    listed = {r["name"]: r for r in __import__("json").loads(cli(*env.args("list", "--json"))[1])}
    assert listed["alpha"]["enabled"] is False and listed["alpha"]["next_run"] is None
    assert cli(*env.args("enable", "alpha"))[0] == 0
    assert any(line.startswith("*/5") for line in managed(env.crontab.read_text()))
    assert foreign(env.crontab.read_text()) == FOREIGN
    assert cli(*env.args("disable", "nope"))[0] == 2


def test_uninstall_restores_the_original_bytes(env, cli):
    env.crontab.write_bytes(FOREIGN.encode() + b"# latin-1 \xe9\xe8 bytes stay\n")
    original = env.crontab.read_bytes()
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    code, _, _ = cli(*env.args("uninstall", "--purge"))
    assert code == 0
    assert env.crontab.read_bytes() == original
    assert not (env.agency_root / "scripts/cronjobs/alpha.sh").exists()
    assert not (env.logrotate_dir / "agency_stack_cron").exists()


def test_backup_before_every_crontab_change(env, cli):
    env.crontab.write_text(FOREIGN)
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    backups = list((env.state_dir / "backups").glob("*.crontab"))
    assert [b.read_text() for b in backups] == [FOREIGN]


def test_rendered_logrotate_config_passes_logrotate_debug(env, cli):
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))
    (env.log_dir / "alpha.log").write_text("x\n")
    result = subprocess.run(
        [
            "logrotate",
            "-d",
            "-s",
            str(env.root / "lr.state"),
            str(env.logrotate_dir / "agency_stack_cron"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error:" not in output.lower(), output
    assert str(env.log_dir / "alpha.log") in output


@pytest.fixture
def throwaway_user():
    name = f"acron{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True, check=False)
        subprocess.run(["userdel", name], check=False)


def test_user_crontab_through_the_real_binary(env, cli, throwaway_user):
    original = FOREIGN
    subprocess.run(["crontab", "-u", throwaway_user, "-"], input=original, text=True, check=True)
    env.write_manifest(MANIFEST)
    target = f"user:{throwaway_user}"
    assert cli(*env.args("install", "--crontab", target))[0] == 0
    listed = subprocess.run(
        ["crontab", "-u", throwaway_user, "-l"], capture_output=True, text=True
    ).stdout
    assert listed.startswith(original) and len(managed(listed)) == 3
    # cron runs these as the crontab's owner: its spec and logs are handed to it.
    uid = pwd.getpwnam(throwaway_user).pw_uid
    assert (env.state_dir / "tasks" / "alpha.json").stat().st_uid == uid
    assert (env.log_dir / "beta-custom.log").stat().st_uid == uid
    assert "no changes" in cli(*env.args("install", "--crontab", target))[1]
    assert cli(*env.args("uninstall", "--crontab", target))[0] == 0
    listed = subprocess.run(
        ["crontab", "-u", throwaway_user, "-l"], capture_output=True, text=True
    ).stdout
    assert listed == original


def test_unknown_user_is_a_config_error(env, cli):
    env.write_manifest(MANIFEST)
    code, _, err = cli(*env.args("install", "--crontab", "user:no-such-user-xyz"))
    assert code == 2 and "no such user" in err


def test_system_target_writes_a_cron_d_file_with_user_field(env, cli):
    env.write_manifest(MANIFEST)
    target = env.root / "cron.d" / "agency_stack"
    assert cli(*env.args("install", "--crontab", f"system:{target}"))[0] == 0
    me = pwd.getpwuid(__import__("os").geteuid()).pw_name
    assert managed(target.read_text())[0] == (
        f"*/5 * * * * {me} {env.agency_root}/scripts/cronjobs/alpha.sh # agency-cron:alpha"
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    code, _, err = cli(*env.args("install", "--crontab", f"system:{env.root}/cron.d/agency.cron"))
    assert code == 2 and "contain a dot" in err
