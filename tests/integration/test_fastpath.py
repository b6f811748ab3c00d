"""The no-op install fast path: it answers only when nothing it depends on has changed."""

from __future__ import annotations

import os
import stat

MANIFEST = """
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
  - name: beta
    schedule: "@hourly"
    command: echo beta
"""


def install(env, cli_process, **extra_env):
    result = cli_process(
        *env.args("install"), env={"XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"], **extra_env}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def fast(output: str) -> bool:
    return "task(s) unchanged\nno changes" in output


def test_second_install_is_answered_fast_and_touches_nothing(env, cli_process):
    env.write_manifest(MANIFEST)
    install(env, cli_process)
    install(env, cli_process)  # records the fingerprint of a settled install
    before = env.snapshot()
    assert fast(install(env, cli_process))
    assert env.snapshot() == before


def test_every_change_sends_install_down_the_full_path(env, cli_process):
    env.write_manifest(MANIFEST)
    install(env, cli_process)
    install(env, cli_process)
    wrapper = env.agency_root / "scripts/cronjobs/alpha.sh"

    wrapper.unlink()  # an output removed
    out = install(env, cli_process)
    assert not fast(out) and wrapper.exists()

    wrapper.chmod(0o644)  # an output changed
    assert not fast(install(env, cli_process))
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755

    text = env.crontab.read_text()  # the crontab edited by hand
    env.crontab.write_text(text.replace("*/5 * * * *", "*/7 * * * *"))
    assert not fast(install(env, cli_process))
    assert env.crontab.read_text() == text

    env.write_manifest(MANIFEST.replace("@hourly", "@daily"))  # an input changed
    assert not fast(install(env, cli_process))
    assert "@daily" in env.crontab.read_text()

    assert not fast(install(env, cli_process, SOME_SETTING="x"))  # the environment changed
    assert fast(install(env, cli_process, SOME_SETTING="x"))


def test_disable_is_seen_by_the_next_install(env, cli_process):
    env.write_manifest(MANIFEST)
    install(env, cli_process)
    install(env, cli_process)
    result = cli_process(
        *env.args("disable", "beta"), env={"XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]}
    )
    assert result.returncode == 0
    assert not fast(install(env, cli_process))
    assert "# @hourly" in env.crontab.read_text()


def test_one_time_tasks_are_never_fast_pathed(env, cli_process):
    env.write_manifest(
        """
        tasks:
          - name: once-off
            schedule: "once 2099-01-01T00:00"
            command: echo once
        """
    )
    install(env, cli_process)
    assert not fast(install(env, cli_process))
