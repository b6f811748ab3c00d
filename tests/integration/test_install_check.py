"""`install --check` exit codes, and diffs (--dry-run, --check) without secrets or binary dumps.

Real files, a real `file:` crontab, real subprocesses for the exit codes operators and CI see.
"""

from __future__ import annotations

import json

MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: beta
    schedule: "0 1 * * *"
    command: echo beta
"""

DB_PASSWORD = "hunter2hunter2"
CONFIG_URL_PASSWORD = "Sup3rS3cretPw"
TASK_URL_PASSWORD = "TaskUrlPassw0rd"
SERVICE_TOKEN = "tok-0123456789abcdef"
SHORT_KEY = "abc"  # below the redaction length: masked by its name in the spec
SECRETS = (DB_PASSWORD, CONFIG_URL_PASSWORD, TASK_URL_PASSWORD, SERVICE_TOKEN)

SECRET_MANIFEST = f"""\
tasks:
  - name: backup
    schedule: "0 2 * * *"
    command: echo backup
    env:
      DB_PASSWORD: "${{DB_PASSWORD}}"
      SERVICE_TOKEN: {SERVICE_TOKEN}
      DB_KEY: {SHORT_KEY}
      MODE: full
    alert_urls: ["json://ops:{TASK_URL_PASSWORD}@127.0.0.1:9/hook"]
"""


def check(env, cli_process, *extra: str):
    return cli_process(*env.args("install", "--check", *extra))


def add_secrets_to_config(env, password: str = DB_PASSWORD) -> None:
    env.add_config(
        DB_PASSWORD=password, ALERT_URLS=f"mailto://alice:{CONFIG_URL_PASSWORD}@mail.example.com"
    )


def assert_no_secret(text: str, *also: str) -> None:
    for secret in (*SECRETS, *also):
        assert secret not in text, f"{secret!r} leaked:\n{text}"


def test_check_on_a_fresh_install_exits_1_and_writes_nothing(env, cli_process):
    env.write_manifest(MANIFEST)
    before = env.snapshot()
    result = check(env, cli_process)
    assert result.returncode == 1, result.stderr
    assert "alpha" in result.stdout and "added" in result.stdout
    assert "+*/5 * * * *" in result.stdout  # the plan and the diff, as --dry-run prints them
    assert env.snapshot() == before
    assert not env.crontab.exists()


def test_check_exits_0_when_the_installation_matches(env, cli_process):
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    before = env.snapshot()
    result = check(env, cli_process)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no changes" in result.stdout
    assert env.snapshot() == before


def test_a_manifest_edit_is_drift(env, cli_process):
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    env.write_manifest(MANIFEST.replace('"0 1 * * *"', '"0 3 * * *"'))
    before = env.snapshot()
    result = check(env, cli_process)
    assert result.returncode == 1
    assert "-0 1 * * *" in result.stdout and "+0 3 * * *" in result.stdout
    assert env.snapshot() == before


def test_a_hand_edited_crontab_is_drift(env, cli_process):
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    text = env.crontab.read_text()
    env.crontab.write_text(text.replace("*/5 * * * *", "*/7 * * * *"))
    before = env.snapshot()
    result = check(env, cli_process)
    assert result.returncode == 1
    assert "-*/7 * * * *" in result.stdout and "+*/5 * * * *" in result.stdout
    assert env.snapshot() == before


def test_check_json_carries_changes_and_the_exit_code(env, cli_process):
    env.write_manifest(MANIFEST)
    result = check(env, cli_process, "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["changes"] is True and data["dry_run"] is True and "+*/5" in data["diff"]
    assert cli_process(*env.args("install")).returncode == 0
    result = check(env, cli_process, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["changes"] is False


def test_check_on_bad_input_exits_2_without_traceback(env, cli_process):
    env.write_manifest(MANIFEST.replace("command: echo beta", "command: echo beta\n    shedule: x"))
    before = env.snapshot()
    result = check(env, cli_process)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "shedule" in result.stderr
    assert env.snapshot() == before


def test_dry_run_and_check_diffs_mask_every_secret(env, cli_process):
    add_secrets_to_config(env)
    env.write_manifest(SECRET_MANIFEST)
    for extra in (["--dry-run"], ["--check"], ["--check", "--json"], ["--dry-run", "--json"]):
        result = cli_process(*env.args("install", *extra))
        assert result.returncode == (1 if "--check" in extra else 0), result.stderr
        assert_no_secret(result.stdout + result.stderr)
        text = json.loads(result.stdout)["diff"] if "--json" in extra else result.stdout
        # The spec is in the diff, masked the way listings mask it.
        assert '"DB_PASSWORD": "***"' in text and '"DB_KEY": "***"' in text
        assert f'"DB_KEY": "{SHORT_KEY}"' not in text
        assert '"MODE": "full"' in text
        assert "mailto://***:***@mail.example.com" in text
        assert "json://ops:***@127.0.0.1:9/hook" in text


def test_old_secrets_stay_masked_when_the_config_changes_them(env, cli_process):
    add_secrets_to_config(env)
    env.write_manifest(SECRET_MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    new_password = "n3w-password-value"
    text = env.config.read_text().replace(DB_PASSWORD, new_password)
    env.config.write_text(text)
    result = check(env, cli_process)
    assert result.returncode == 1
    assert_no_secret(result.stdout, new_password)
    spec = env.state_dir / "tasks" / "backup.json"
    assert f"{spec}: only secret values changed (masked)" in result.stdout


def test_uninstall_purge_dry_run_masks_removed_specs(env, cli_process):
    add_secrets_to_config(env)
    env.write_manifest(SECRET_MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    result = cli_process(*env.args("uninstall", "--purge", "--dry-run"))
    assert result.returncode == 0
    assert '-{"alert"' in result.stdout
    assert_no_secret(result.stdout)


def test_binary_spec_caches_are_named_not_dumped(env, cli_process):
    add_secrets_to_config(env)
    env.write_manifest(SECRET_MANIFEST)
    marshal = env.state_dir / "tasks" / "backup.marshal"
    result = cli_process(*env.args("install", "--dry-run"))
    assert f"binary file {marshal} added" in result.stdout
    assert "\0" not in result.stdout and "\ufffd" not in result.stdout
    assert f"a/{marshal}" not in result.stdout
    assert cli_process(*env.args("install")).returncode == 0
    env.write_manifest(SECRET_MANIFEST.replace("MODE: full", "MODE: quick"))
    result = check(env, cli_process)
    assert result.returncode == 1
    assert f"binary file {marshal} changed" in result.stdout
    assert "\0" not in result.stdout and "\ufffd" not in result.stdout
    assert_no_secret(result.stdout)


def test_a_wrapper_chmod_by_hand_is_drift_shown_as_a_mode_change(env, cli_process):
    env.write_manifest(MANIFEST)
    assert cli_process(*env.args("install")).returncode == 0
    wrapper = env.wrapper("alpha")
    wrapper.chmod(0o700)
    result = check(env, cli_process)
    assert result.returncode == 1
    assert f"{wrapper}: mode becomes 0755" in result.stdout
    assert wrapper.stat().st_mode & 0o777 == 0o700
