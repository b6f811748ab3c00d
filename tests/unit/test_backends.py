"""The backend interface: one parser of CRONTAB= targets, and each backend's desired state
compared with what it really finds installed (real files, the real crontab binary)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agency_cron.backends import (
    FORMS,
    MODULES,
    Installed,
    Target,
    backend,
    crond,
    crontab,
    parse_target,
    systemd,
    target_path,
)
from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import Task
from agency_cron.plan import ADDED, REMOVED, UNCHANGED, build_plan, build_uninstall_plan

ROOT = pwd.getpwuid(0).pw_name
FOREIGN = 'MAILTO=""\n# someone else\'s\n0 0 * * *   /usr/bin/report  --all\n'


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "user", "path", "module"),
    [
        ("user", "user", None, None, crontab),
        (f"user:{ROOT}", "user", ROOT, None, crontab),
        ("file:/srv/site/crontab", "file", None, Path("/srv/site/crontab"), crontab),
        ("system:/etc/cron.d/agency-cron", "system", None, Path("/etc/cron.d/agency-cron"), crond),
        ("systemd:/etc/systemd/system", "systemd", None, Path("/etc/systemd/system"), systemd),
    ],
)
def test_each_target_form_parses_to_its_backend(spec, kind, user, path, module):
    target = parse_target(spec)
    assert (target.spec, target.kind, target.user, target.path) == (spec, kind, user, path)
    assert backend(target) is module
    assert target_path(spec) == path


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", f"CRONTAB: expected {FORMS}, got ''"),
        ("crontab", f"CRONTAB: expected {FORMS}, got 'crontab'"),
        ("user:", f"CRONTAB: expected {FORMS}, got 'user:'"),
        ("user:Root", f"CRONTAB: expected {FORMS}, got 'user:Root'"),
        ("file:relative/crontab", f"CRONTAB: expected {FORMS}, got 'file:relative/crontab'"),
        ("file:/", f"CRONTAB: expected {FORMS}, got 'file:/'"),
        ("system:", f"CRONTAB: expected {FORMS}, got 'system:'"),
        ("systemd:units", f"CRONTAB: expected {FORMS}, got 'systemd:units'"),
        ("kubernetes:/x", f"CRONTAB: expected {FORMS}, got 'kubernetes:/x'"),
        ("file:/a\nuser", f"CRONTAB: expected {FORMS}, got 'file:/a\\nuser'"),
        ("user:nobody-here-xyz", "CRONTAB: user:nobody-here-xyz: no such user on this system"),
        (
            "system:/etc/cron.d/agency.cron",
            "CRONTAB: system:/etc/cron.d/agency.cron: Debian cron skips cron.d files whose "
            "names contain a dot",
        ),
    ],
)
def test_bad_targets_are_one_line_config_errors(spec, problem):
    with pytest.raises(ConfigError) as caught:
        parse_target(spec)
    assert caught.value.problems == [problem]
    assert caught.value.exit_code == 2
    assert target_path(spec) is None


def test_every_form_has_a_module():
    assert set(MODULES.values()) == {"crontab", "crond", "systemd"}
    for module in MODULES.values():
        assert hasattr(sys.modules[f"agency_cron.backends.{module}"], "desired")


def test_config_validates_the_target_by_asking_the_registry(tmp_path):
    """config.py's message is the registry's, without its `CRONTAB: ` prefix, and names the
    file; a path the kernel owns is refused too."""
    config = tmp_path / "config.env"
    for spec, why in [
        ("cron:/x", f"expected {FORMS}, got 'cron:/x'"),
        ("system:/etc/cron.d/a.b", "system:/etc/cron.d/a.b: Debian cron skips cron.d files"),
        ("file:/proc/crontab", "/proc/crontab is under /proc"),
    ]:
        config.write_text(f"AGENCY_ROOT={tmp_path}\nCRONTAB={spec}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(config=config)
        assert any(p.startswith(f"{config}: CRONTAB: {why}") for p in caught.value.problems)


def test_validating_a_target_imports_no_backend(tmp_path):
    """config.py is on every read path: checking CRONTAB= must not import a backend module
    (nor python-crontab, nor systemd's Jinja templates)."""
    config = tmp_path / "config.env"
    config.write_text(f"AGENCY_ROOT={tmp_path}\nCRONTAB=system:/etc/cron.d/agency-cron\n")
    code = (
        "import sys; from agency_cron.config import load_settings; "
        f"load_settings(config={str(config)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith(('agency_cron.backends.', "
        "'crontab', 'jinja2'))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


# --- desired vs installed, on real files ------------------------------------------------


MANIFEST = """\
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: "true"
  - name: beta
    schedule: ["0 1 * * *", "@every 30m"]
    command: "true"
    enabled: false
"""


@pytest.fixture
def site(tmp_path, clean_environ, make_env):
    """A throwaway installation; `configure(target)` points its CRONTAB somewhere."""
    manifest = tmp_path / "tasks.yaml"
    manifest.write_text(MANIFEST)

    class Site:
        root = tmp_path

        def configure(self, target: str):
            return load_settings(config=make_env(tmp_path, crontab=target).config)

        def plan(self, settings, names=None):
            from agency_cron.manifest import load_manifest

            loaded = load_manifest(manifest, settings, intervals=True)
            return build_plan(settings, loaded, manifest, names)

    return Site()


def _task_actions(plan) -> dict[str, str]:
    return {row.item: row.action for row in plan.rows if row.kind == "task"}


def _install(site, settings):
    from agency_cron.apply import apply_plan

    return apply_plan(site.plan(settings), settings)


def test_crontab_file_backend_reads_back_what_it_wrote(site):
    table = site.root / "crontab"
    table.write_text(FOREIGN)
    settings = site.configure(f"file:{table}")
    target = parse_target(settings.crontab)
    wrapper = settings.agency_root / "scripts/cronjobs"
    wanted = crontab.desired(
        target, settings, [(Task(name="alpha", schedule="@daily", command="true"), True)]
    )
    assert wanted.entries == {"alpha": [f"@daily {wrapper}/alpha.sh # agency-cron:alpha"]}
    assert wanted.files == {}
    assert crontab.read(target) == Installed(FOREIGN, {})

    assert _task_actions(site.plan(settings)) == {"alpha": ADDED, "beta": ADDED}
    _install(site, settings)
    installed = crontab.read(target)
    assert installed.text.startswith(FOREIGN)  # foreign lines keep their bytes
    assert installed.entries == {
        "alpha": [f"*/5 * * * * {wrapper}/alpha.sh # agency-cron:alpha"],
        "beta": [
            f"# 0 1 * * * {wrapper}/beta.sh # agency-cron:beta",
            f"# */30 * * * * {wrapper}/beta.sh # agency-cron:beta",
        ],
    }
    again = site.plan(settings)
    assert _task_actions(again) == {"alpha": UNCHANGED, "beta": UNCHANGED}
    assert not again.changes

    table.chmod(0o600)  # a file: crontab keeps the mode it has
    uninstall = build_uninstall_plan(settings, purge=False)
    assert _task_actions(uninstall) == {"alpha": REMOVED, "beta": REMOVED}
    from agency_cron.apply import apply_plan

    apply_plan(uninstall, settings)
    assert table.read_text() == FOREIGN
    assert table.stat().st_mode & 0o777 == 0o600


def test_crond_backend_writes_a_user_field_and_mode_0644(site):
    table = site.root / "cron.d" / "agency-cron"
    table.parent.mkdir()
    settings = site.configure(f"system:{table}")
    target = parse_target(settings.crontab)
    wrapper = settings.agency_root / "scripts/cronjobs/alpha.sh"
    task = Task(name="alpha", schedule="@hourly", command="true", user="nobody")
    assert crond.desired(target, settings, [(task, True)]).entries == {
        "alpha": [f"@hourly nobody {wrapper} # agency-cron:alpha"]
    }
    assert crond.run_as(target, task) == "nobody"
    assert crond.run_as(target, Task(name="b", schedule="@hourly", command="true")) == "root"

    _install(site, settings)
    assert table.stat().st_mode & 0o777 == 0o644
    lines = crond.read(target).entries["alpha"]
    assert lines == [f"*/5 * * * * root {wrapper} # agency-cron:alpha"]
    assert not site.plan(settings).changes


def test_systemd_backend_holds_units_not_lines(site):
    units = site.root / "units"
    settings = site.configure(f"systemd:{units}")
    target = parse_target(settings.crontab)
    assert systemd.read(target) == Installed()  # no folder yet: nothing installed

    plan = site.plan(settings)
    assert plan.crontab_before == plan.crontab_after == ""
    unit_files = sorted(c.path.name for c in plan.files if c.path.parent == units)
    # beta is disabled: its service stays runnable by hand, it gets no timer
    assert unit_files == [
        "agency-cron-alpha.service",
        "agency-cron-alpha.timer",
        "agency-cron-beta.service",
    ]
    _install(site, settings)
    installed = systemd.read(target)
    assert installed.entries == {"alpha": [], "beta": []}
    assert installed.files == {
        units / name: name.split("-")[2].split(".")[0] for name in unit_files
    }
    assert not site.plan(settings).changes

    # A unit left by a task the manifest dropped is removed by a full install.
    (units / "agency-cron-gone.service").write_text("[Service]\n")
    plan = site.plan(settings)
    assert _task_actions(plan)["gone"] == REMOVED
    assert [c.path.name for c in plan.files if c.action == REMOVED] == ["agency-cron-gone.service"]

    uninstall = build_uninstall_plan(settings, purge=False)
    assert sorted(c.path.name for c in uninstall.files) == sorted(
        [*unit_files, "agency-cron-gone.service"]
    )


# --- the real crontab binary ------------------------------------------------------------


@pytest.fixture
def throwaway_user():
    if os.geteuid() != 0:
        pytest.fail("this test needs root (useradd, crontab -u)")
    name = f"agcron-b-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True, check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_user_crontab_backend_through_the_real_binary(site, throwaway_user):
    subprocess.run(["crontab", "-u", throwaway_user, "-"], input=FOREIGN, text=True, check=True)
    settings = site.configure(f"user:{throwaway_user}")
    target = parse_target(settings.crontab)
    assert target == Target(settings.crontab, "user", user=throwaway_user)
    assert crontab.read(target) == Installed(FOREIGN, {})
    disabled = Task(
        name="alpha", schedule="0 0 1 1 *", command="true"
    )  # off: cron must never run it
    wanted = crontab.desired(target, settings, [(disabled, False)])

    crontab.write(target, crontab.merge(FOREIGN, wanted.entries, None))
    listed = subprocess.run(
        ["crontab", "-u", throwaway_user, "-l"], capture_output=True, text=True, check=True
    ).stdout
    assert listed.startswith(FOREIGN)
    assert crontab.read(target) == Installed(listed, wanted.entries)
    assert crontab.run_as(target, disabled) == throwaway_user
    assert crontab.user_problems(
        target, [Task(name="x", schedule="@daily", command="true", user="root")]
    ) == [
        f"task x: user: 'root', but the crontab of {throwaway_user!r} runs every task as "
        f"{throwaway_user!r}"
    ]

    crontab.write(target, "")  # an empty table: `crontab -r`
    assert crontab.read(target) == Installed()
