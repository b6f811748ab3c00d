"""api_tasks.py: the admin API's tasks over the operator's manifest, and the loader's
overlay parameter that applies it (end to end through HTTP: test_serve_api.py)."""

from __future__ import annotations

import json

import pytest

from agency_cron import api_tasks, layout
from agency_cron.api_tasks import Overlay
from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import load_manifest

MANIFEST = """\
tasks:
  - {name: report, schedule: "@daily", command: "echo operator"}
"""


@pytest.fixture
def site(tmp_path):
    """(settings factory, manifest path, API task folder) of a throwaway installation."""

    def settings(**values: str):
        environ = {"AGENCY_ROOT": str(tmp_path / "agency"), "STATE_DIR": str(tmp_path / "state")}
        return load_settings(environ={**environ, **values})

    manifest = tmp_path / "tasks.yaml"
    manifest.write_text(MANIFEST)
    folder = layout.api_tasks_dir(settings())
    folder.mkdir(parents=True)
    return settings, manifest, folder


def _api_task(folder, name: str, command: str):
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "schedule": "@hourly", "command": command}))
    return path


@pytest.mark.parametrize(
    ("value", "replaces"),
    [("true", True), ("YES", True), (" on ", True), ("1", True), ("false", False), ("", False)],
)
def test_api_edits_manifest(site, value, replaces):
    settings, _, _ = site
    assert api_tasks.api_may_replace(settings(API_EDITS_MANIFEST=value)) is replaces


def test_api_files_as_they_are_about_to_be(site):
    settings, _, folder = site
    kept, gone = _api_task(folder, "kept", "true"), _api_task(folder, "gone", "true")
    (folder / "notes.txt").write_text("not a task")
    new = folder / "new.json"
    files = api_tasks.api_files(settings(), {gone: None, new: {"name": "new"}})
    assert files == sorted([kept, new])


def test_the_default_overlay_is_the_api_folder(site):
    settings, manifest, folder = site
    _api_task(folder, "extra", "echo api")
    loaded = load_manifest(manifest, settings())
    assert [t.name for t in loaded.tasks] == ["report", "extra"]
    assert loaded.origins["extra"] == folder / "extra.json"


def test_an_api_copy_is_a_duplicate_unless_api_edits_manifest(site):
    settings, manifest, folder = site
    _api_task(folder, "report", "echo api")
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest, settings())
    assert len(info.value.problems) == 1
    assert info.value.problems[0].endswith(api_tasks.REPLACE_HINT)
    replaced = load_manifest(manifest, settings(API_EDITS_MANIFEST="true"))
    assert [(t.name, t.command) for t in replaced.tasks] == [("report", "echo api")]


def test_the_loader_applies_the_overlay_it_is_given(site, tmp_path):
    settings, manifest, folder = site
    _api_task(folder, "ignored", "true")  # not in the overlay given: not read
    other = tmp_path / "other"
    other.mkdir()
    extra = _api_task(other, "report", "echo other")
    plain = load_manifest(manifest, settings(), overlay=Overlay())
    assert [t.name for t in plain.tasks] == ["report"]
    replacing = load_manifest(manifest, settings(), overlay=Overlay((extra,), True))
    assert [(t.name, t.command) for t in replacing.tasks] == [("report", "echo other")]
    assert replacing.origins["report"] == extra
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest, settings(), overlay=Overlay((extra,), False, " (a hint)"))
    first = f"{manifest}: tasks[0] (report)"
    assert info.value.problems[0].endswith(f"first defined at {first} (a hint)")


def test_two_overlay_files_of_one_name_are_duplicates_even_when_replacing(site, tmp_path):
    settings, manifest, folder = site
    one = _api_task(folder, "twin", "echo 1")
    other = tmp_path / "other"
    other.mkdir()
    two = _api_task(other, "twin", "echo 2")
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest, settings(), overlay=Overlay((one, two), True, " (hint)"))
    assert "duplicate task name" in info.value.problems[0]
