"""plan.py: desired state vs what is installed -> rows added, changed, removed, unchanged.

Plans are built on a throwaway site with a `file:` crontab holding a foreign line; between
plans the site is changed with apply_plan (what install does), so each row is checked
against a real installed state. Building a plan must write nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agency_cron.apply import apply_plan
from agency_cron.errors import UsageError
from agency_cron.manifest import load_manifest
from agency_cron.plan import ADDED, CHANGED, REMOVED, UNCHANGED, build_plan

FOREIGN = "# mine\n0 4 * * * /usr/local/bin/report\n"
TWO_TASKS = """\
tasks:
  - {name: a, schedule: "0 2 * * *", command: "echo a", env: {A: "1"}}
  - {name: b, schedule: ["@hourly", "@reboot"], command: "echo b"}
"""


class Site:
    def __init__(self, root: Path, settings_at):
        self.root = root
        self.crontab = root / "crontab"
        self.manifest = root / "tasks.yaml"
        self.crontab.write_text(FOREIGN)
        self.settings = settings_at(root, SERVICE_TOKEN="config-secret-value")

    def plan(self, text: str = TWO_TASKS, names=None, overrides=None):
        self.manifest.write_text(textwrap.dedent(text))
        manifest = load_manifest(self.manifest, self.settings, strict=True)
        return build_plan(self.settings, manifest, self.manifest, names, overrides or {})

    def install(self, text: str = TWO_TASKS, **options):
        return apply_plan(self.plan(text, **options), self.settings)

    def files(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and p.name != "tasks.yaml"
        }

    def wrapper(self, name: str) -> Path:
        return self.root / "agency" / "scripts" / "cronjobs" / f"{name}.sh"


@pytest.fixture
def site(tmp_path, settings_at) -> Site:
    return Site(tmp_path, settings_at)


def task_rows(plan) -> dict[str, tuple[str, str]]:
    return {row.item: (row.action, row.detail) for row in plan.rows if row.kind == "task"}


def line(site: Site, name: str, schedule: str) -> str:
    return f"{schedule} {site.wrapper(name)} # agency-cron:{name}"


def test_a_fresh_site_adds_everything_and_writes_nothing(site):
    before = site.files()
    plan = site.plan()
    assert site.files() == before
    assert task_rows(plan) == {
        "a": (ADDED, "0 2 * * * (enabled)"),
        "b": (ADDED, "@hourly, @reboot (enabled)"),
    }
    assert plan.changes
    assert plan.crontab_before == FOREIGN
    assert plan.crontab_after == FOREIGN + "".join(
        f"{text}\n"
        for text in (
            line(site, "a", "0 2 * * *"),
            line(site, "b", "@hourly"),
            line(site, "b", "@reboot"),
        )
    )
    shared = [row for row in plan.rows if row.kind == "file"]
    assert shared and {row.action for row in shared} == {ADDED}
    assert str(site.settings.logrotate_dir / "agency_stack_cron") in {row.item for row in shared}
    owners = {change.owner for change in plan.files}
    assert owners == {"a", "b", "shared"}
    assert {change.path.name for change in plan.files if change.owner == "a"} == {
        "a.sh",
        "a.json",
        "a.marshal",
    }


def test_after_install_every_row_is_unchanged(site):
    site.install()
    plan = site.plan()
    assert task_rows(plan) == {
        "a": (UNCHANGED, "0 2 * * * (enabled)"),
        "b": (UNCHANGED, "@hourly, @reboot (enabled)"),
    }
    assert not plan.changes
    assert plan.crontab_before == plan.crontab_after
    assert all(change.action == UNCHANGED for change in plan.files)
    assert {row.action for row in plan.rows if row.kind == "file"} == {UNCHANGED}


def test_a_new_schedule_changes_that_task_only(site):
    site.install()
    plan = site.plan(TWO_TASKS.replace("0 2 * * *", "30 3 * * *"))
    assert task_rows(plan)["a"] == (CHANGED, "30 3 * * * (enabled)")
    assert task_rows(plan)["b"][0] == UNCHANGED
    assert line(site, "a", "30 3 * * *") in plan.crontab_after
    assert line(site, "a", "0 2 * * *") not in plan.crontab_after


def test_a_change_only_the_wrapper_sees_still_changes_the_task(site):
    site.install()
    plan = site.plan(TWO_TASKS.replace('A: "1"', 'A: "2"'))
    assert task_rows(plan)["a"][0] == CHANGED
    assert plan.crontab_before == plan.crontab_after
    changed = {change.path.name for change in plan.files if change.action == CHANGED}
    assert changed == {"a.sh", "a.json", "a.marshal"}


def test_a_task_dropped_from_the_manifest_is_removed_with_its_files(site):
    site.install()
    plan = site.plan(TWO_TASKS.split("  - {name: b")[0])
    assert task_rows(plan) == {"a": (UNCHANGED, "0 2 * * * (enabled)"), "b": (REMOVED, "")}
    removed = {change.path.name for change in plan.files if change.action == REMOVED}
    assert removed == {"b.sh", "b.json", "b.marshal"}
    assert "agency-cron:b" not in plan.crontab_after
    assert plan.crontab_after.startswith(FOREIGN)


def test_named_tasks_leave_the_others_alone(site):
    site.install()
    only_a = TWO_TASKS.split("  - {name: b")[0].replace("0 2 * * *", "@daily")
    plan = site.plan(only_a, names=["a"])
    assert task_rows(plan) == {"a": (CHANGED, "@daily (enabled)")}
    assert line(site, "b", "@hourly") in plan.crontab_after  # not stale: out of scope
    assert not [change for change in plan.files if change.action == REMOVED]


def test_a_disabled_task_is_commented_out(site):
    site.install()
    plan = site.plan(overrides={"a": False})
    assert task_rows(plan)["a"] == (CHANGED, "0 2 * * * (disabled locally)")
    assert f"# {line(site, 'a', '0 2 * * *')}\n" in plan.crontab_after


def test_an_unknown_name_is_a_usage_error_and_writes_nothing(site):
    before = site.files()
    with pytest.raises(UsageError, match=r"unknown task 'nope' \(tasks in the manifest: a, b\)"):
        site.plan(names=["nope"])
    assert site.files() == before


def test_foreign_lines_are_never_in_a_plan_row(site):
    plan = site.plan()
    assert not [row for row in plan.rows if "report" in row.item]
    assert plan.crontab_after.startswith(FOREIGN)


def test_the_diff_masks_secrets(site):
    text = TWO_TASKS.replace('A: "1"', 'A: "1", DB_PASSWORD: "task-secret-value"')
    diff = site.plan(text).diff()
    assert "task-secret-value" not in diff
    assert "config-secret-value" not in diff


def test_the_diff_names_binary_files_without_dumping_them(site):
    diff = site.plan().diff()
    marshal_part = diff.split("a.marshal", 1)[1].split("\n--- ", 1)[0]
    assert "\x00" not in marshal_part and "\ufffd" not in marshal_part
