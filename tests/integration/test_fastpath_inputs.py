"""The no-op install fingerprint is made of what the install read (fastpath.py): each input
the planner reads, edited after a settled install, sends the next install down the full
path, which then shows the edit.

The package is run from a copy of its sources on PYTHONPATH, as an editable install runs
them, so that a test can edit agency-cron's own code and templates; zone files come from
a copy of the system's zoneinfo on PYTHONTZPATH (the zone search path zoneinfo honours;
agency-cron reads zones only through zoneinfo).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agency_cron

MANIFEST = """
tasks:
  - name: alpha
    schedule: "*/5 * * * *"
    command: echo alpha
"""
PARIS = """
  - name: paris
    schedule: "0 9 * * *"
    timezone: Europe/Paris
    command: echo paris
"""
ZONEINFO = Path("/usr/share/zoneinfo")


@pytest.fixture
def site(env, tmp_path):
    """The env installation, run from a copy of the package with its own zone files."""
    source = tmp_path / "src"
    shutil.copytree(
        Path(agency_cron.__file__).parent,
        source / "agency_cron",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    zones = tmp_path / "zones"
    for name in ("Europe/Paris", "Asia/Tokyo", "UTC"):
        (zones / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ZONEINFO / name, zones / name)
    extra = {
        "PYTHONPATH": str(source),
        "PYTHONTZPATH": str(zones),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TZ": "UTC",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.source, env.zones, env.extra = source / "agency_cron", zones, extra
    return env


def install(site) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "agency_cron", *site.args("install")],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **site.extra},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def fast(result) -> bool:
    return "task(s) unchanged\nno changes" in result.stdout


def settled(site) -> None:
    """Install until the fingerprint of an install that wrote nothing is recorded."""
    install(site)
    install(site)
    assert fast(install(site))


def record(site) -> dict:
    found = list((Path(site.extra["XDG_CACHE_HOME"]) / "agency-cron").glob("install-*.json"))
    assert len(found) == 1
    return json.loads(found[0].read_text())


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_runs_from_the_copy(site):
    site.write_manifest(MANIFEST)
    settled(site)
    files = {path for path, _ in record(site)["files"]}
    assert str(site.source / "cli.py") in files  # the copy's code, not the installed one
    assert str(site.source / "templates" / "wrapper.sh.j2") in files


def test_the_fingerprint_holds_what_install_read(site):
    site.write_manifest(MANIFEST + PARIS)
    settled(site)
    found = record(site)
    files = {path for path, _ in found["files"]}
    assert {str(site.config), str(site.manifest), str(site.crontab)} <= files
    assert str(site.zones / "Europe" / "Paris") in files  # opened through zoneinfo
    assert any(
        path.endswith(".dist-info/METADATA") and "pydantic-" in path.lower() for path in files
    )
    assert any(path.endswith(".dist-info/METADATA") and "jinja2-" in path.lower() for path in files)
    listings = {path for path, _ in found["listings"]}
    assert str(site.state_dir / "tasks") in files | listings  # the rendered specs' folder
    logrotate = shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert logrotate in {name for name, _ in found["programs"]}  # `logrotate -d` was run
    assert logrotate in files  # and the binary itself is an input
    # The user database: the lookups made and their answers, not /etc/passwd's mtime.
    me = [list(entry) for entry in [pwd.getpwuid(os.geteuid())]]
    assert ["pwd", "getpwuid", os.geteuid(), *me] in found["lookups"]
    assert "/etc/passwd" not in files


def test_config_edit(site):
    site.write_manifest(MANIFEST)
    settled(site)
    append(site.config, "ALERT_TIMEOUT=7\n")
    assert not fast(install(site))
    spec = json.loads((site.state_dir / "tasks" / "alpha.json").read_text())
    assert spec["alert_timeout"] == 7


def test_each_file_of_a_manifest_folder(site):
    folder = site.root / "tasks.d"
    folder.mkdir()
    (folder / "a.yaml").write_text(MANIFEST)
    (folder / "b.yaml").write_text(MANIFEST.replace("alpha", "beta"))
    site.manifest = folder
    settled(site)
    for name, task in (("a.yaml", "alpha"), ("b.yaml", "beta")):
        path = folder / name
        path.write_text(path.read_text().replace("*/5", "*/9"))
        assert not fast(install(site))
        line = next(x for x in site.crontab.read_text().splitlines() if f"{task}.sh" in x)
        assert line.startswith("*/9 "), line
        settled(site)
    (folder / "c.yaml").write_text(MANIFEST.replace("alpha", "gamma"))  # a file added
    assert not fast(install(site))
    assert "gamma.sh" in site.crontab.read_text()


def test_overrides_edit(site):
    site.write_manifest(MANIFEST)
    settled(site)
    overrides = site.state_dir / "overrides.json"
    overrides.write_text('{"version": 1, "enabled": {"alpha": false}}\n')
    assert not fast(install(site))
    assert "# */5 * * * *" in site.crontab.read_text()


def test_api_task_added(site):
    site.write_manifest(MANIFEST)
    settled(site)
    folder = site.state_dir / "api" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    task = {"name": "from-api", "schedule": "@daily", "command": "echo api"}
    (folder / "from-api.json").write_text(json.dumps(task))
    assert not fast(install(site))
    assert "from-api.sh" in site.crontab.read_text()


def test_a_stray_spec_is_seen(site):
    """A spec of a task the manifest no longer has (its folder only checked, then listed)."""
    site.write_manifest(MANIFEST)
    settled(site)
    stray = site.state_dir / "tasks" / "ghost.json"
    stray.write_text((site.state_dir / "tasks" / "alpha.json").read_text())
    assert not fast(install(site))
    assert not stray.exists()


def test_crontab_edit(site):
    site.write_manifest(MANIFEST)
    settled(site)
    text = site.crontab.read_text()
    site.crontab.write_text(text.replace("*/5 * * * *", "*/7 * * * *"))
    assert not fast(install(site))
    assert site.crontab.read_text() == text


@pytest.mark.parametrize(
    "module", ["checks/models.py", "checks/health.py", "serve/app.py", "runner.py"]
)
def test_code_edit(site, module):
    """Code install imports (checks/models.py validates components) and code it only
    renders the path of (the runner, the checks' task, the server)."""
    site.write_manifest(MANIFEST)
    settled(site)
    append(site.source / module, "\n# edited\n")
    assert not fast(install(site))


def test_checks_validation_edit_is_seen(site):
    """The case of issue 11: the checks' validation edited in place refuses a manifest that
    the last install accepted; install must say so, never "no changes"."""
    site.write_manifest(
        MANIFEST
        + """
components:
  - name: web
    checks:
      - {type: http, url: "http://127.0.0.1:9/health"}
"""
    )
    settled(site)
    models = site.source / "checks" / "models.py"
    text = models.read_text()
    assert 'type: Literal["http"]' in text
    models.write_text(text.replace('type: Literal["http"]', 'type: Literal["https-only"]'))
    result = subprocess.run(
        [sys.executable, "-m", "agency_cron", *site.args("install")],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **site.extra},
        check=False,
    )
    assert "no changes" not in result.stdout
    assert result.returncode == 2 and "http" in result.stderr, result.stderr


def test_template_edit(site):
    site.write_manifest(MANIFEST)
    settled(site)
    append(site.source / "templates" / "wrapper.sh.j2", "# edited template\n")
    assert not fast(install(site))
    wrapper = site.agency_root / "scripts" / "cronjobs" / "alpha.sh"
    assert wrapper.read_text().endswith("# edited template\n")


def test_zone_file_edit(site):
    site.write_manifest(MANIFEST + PARIS)
    settled(site)
    line = next(x for x in site.crontab.read_text().splitlines() if "paris.sh" in x)
    shutil.copyfile(site.zones / "Asia" / "Tokyo", site.zones / "Europe" / "Paris")
    assert not fast(install(site))
    now = next(x for x in site.crontab.read_text().splitlines() if "paris.sh" in x)
    assert now != line  # 09:00 in "Europe/Paris" now falls at another UTC hour


def test_an_unchanged_copy_stays_fast(site):
    """The control: the copy, the zones and the cache folder alone do not defeat it."""
    site.write_manifest(MANIFEST + PARIS)
    settled(site)
    assert fast(install(site))
