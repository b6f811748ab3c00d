"""The Kubernetes export checked against the Kubernetes schema, and run through the runner.

kubernetes-validate ships the OpenAPI schemas of each Kubernetes release (1.25 to 1.37 in
1.37.0) and validates offline. The schema checks types and field names (strict: no unknown
fields) but not name formats or cron syntax, so those are asserted here and in
tests/unit/test_kubernetes_units.py. There is no cluster in the test environment: the
container is emulated by running its command, with its env, on the exported spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from agency_cron.backends import kubernetes as k8s
from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import load_manifest

IMAGE = "registry.example.com/ops/agency-cron:1.4"
NAMESPACE = "ops"
DB_PASSWORD = "hunter2-correct-horse"
CONFIG_TOKEN = "cfg-t0ken-battery-staple"
ALERT_URL = "tgram://123456789:AAbbCCddEEffGGhhIIjj/4242"
# timeZone went GA in 1.27: validate against every shipped release from there.
VERSIONS = sorted(
    {v for v in all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 27)},
    key=lambda v: tuple(map(int, v.split("."))),
)

MANIFEST = """\
tasks:
  - name: backup
    description: "Nightly: dump and ship"
    schedule: ["0 2 * * *", "@hourly", "30 9 * * 5-7"]
    command: /opt/agency_stack/scripts/cronjobs/backup.sh --all
    timeout: 1h
    retries: 2
    overlap: wait
    timezone: Europe/Paris
    env:
      DB_PASSWORD: "hunter2-correct-horse"
      DSN: "postgres://app:hunter2-correct-horse@db/app"
      MODE: full
  - name: health-check
    schedule: "*/1 * * * *"
    command: echo ok
    timeout: 45s
    overlap: allow
  - name: report
    schedule: ["@weekly", "@monthly", "@annually"]
    script: |
      set -eu
      echo "mode=$MODE secret-length=${#DB_PASSWORD}"
      echo "it's: quoted # not a comment"
      exit "$${EXIT_WITH:-0}"  # $$: a literal $, not expanded at load
    env: {MODE: report, DB_PASSWORD: "hunter2-correct-horse"}
    jitter: 1m
  - name: cleanup
    schedule: "@midnight"
    command: "find /tmp -mtime +7 -delete"
    enabled: false
    alert: never
    retries: 5
"""


@pytest.fixture
def site(env):
    env.add_config(f"ALERT_URLS={ALERT_URL}\nSHIPPING_TOKEN={CONFIG_TOKEN}\n")
    env.write_manifest(MANIFEST)
    env.agency_root.mkdir()
    settings = load_settings(env.config, environ={})
    manifest = load_manifest(env.manifest, settings)
    enabled = [(task, task.enabled) for task in manifest.tasks]
    return settings, enabled


@pytest.fixture
def exported(site):
    settings, enabled = site
    text = k8s.export(settings, enabled, IMAGE, NAMESPACE)
    return text, list(yaml.safe_load_all(text))


def by_name(documents: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "CronJob"}


def pod(document: dict) -> dict:
    return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container_env(document: dict) -> dict[str, dict]:
    return {item["name"]: item for item in pod(document)["containers"][0]["env"]}


# --- the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_validates(exported, version):
    _, documents = exported
    assert [d["kind"] for d in documents] == ["ConfigMap"] + ["CronJob"] * 8
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_yaml_text_validates_with_the_cli(exported, tmp_path):
    # The command-line tool reads the multi-document text as kubectl would.
    text, _ = exported
    path = tmp_path / "agency-cron.yaml"
    path.write_text(text)
    result = subprocess.run(
        [Path(sys.executable).with_name("kubernetes-validate"), "--strict", "-k", "1.30.0", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == 9


def test_names_and_labels(exported):
    _, documents = exported
    assert list(by_name(documents)) == [
        "backup-0",
        "backup-1",
        "backup-2",
        "health-check",
        "report-0",
        "report-1",
        "report-2",
        "cleanup",
    ]
    for document in documents:
        assert document["metadata"]["namespace"] == NAMESPACE
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "agency-cron"
        assert labels["app.kubernetes.io/name"] == "agency-cron"
    for name, document in by_name(documents).items():
        task = document["metadata"]["labels"]["agency-cron/task"]
        assert name == task or name.startswith(f"{task}-")
        template = document["spec"]["jobTemplate"]["spec"]["template"]
        assert template["metadata"]["labels"]["agency-cron/task"] == task


# --- field by field -----------------------------------------------------------------------


def test_schedules_and_zones(exported):
    jobs = by_name(exported[1])
    schedules = {name: job["spec"]["schedule"] for name, job in jobs.items()}
    assert schedules == {
        "backup-0": "0 2 * * *",
        "backup-1": "@hourly",
        "backup-2": "30 9 * * 0,5,6",  # Debian's 7 is Sunday; Kubernetes reads 0-6
        "health-check": "*/1 * * * *",
        "report-0": "@weekly",
        "report-1": "@monthly",
        "report-2": "@annually",
        "cleanup": "@midnight",
    }
    zones = {name: job["spec"].get("timeZone") for name, job in jobs.items()}
    assert {name for name, zone in zones.items() if zone} == {"backup-0", "backup-1", "backup-2"}
    assert zones["backup-0"] == "Europe/Paris"
    assert jobs["health-check"]["spec"]["startingDeadlineSeconds"] == 60
    assert jobs["backup-0"]["spec"]["startingDeadlineSeconds"] == 300


def test_overlap_retries_timeouts_and_suspend(exported, site):
    settings, _ = site
    jobs = by_name(exported[1])
    assert jobs["backup-0"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert "agency-cron/overlap-note" in jobs["backup-0"]["metadata"]["annotations"]
    assert jobs["health-check"]["spec"]["concurrencyPolicy"] == "Allow"
    assert jobs["cleanup"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert "annotations" not in jobs["cleanup"]["metadata"] or (
        "agency-cron/overlap-note" not in jobs["cleanup"]["metadata"]["annotations"]
    )
    backup = jobs["backup-0"]["spec"]["jobTemplate"]["spec"]
    assert backup["backoffLimit"] == 2
    grace = 10 + int(settings.alert_timeout) + k8s.START_MARGIN_S
    assert pod(jobs["backup-0"])["activeDeadlineSeconds"] == 3600 + grace
    assert backup["activeDeadlineSeconds"] == 3 * (3600 + grace) + 10 + 20 + 600
    assert pod(jobs["health-check"])["activeDeadlineSeconds"] == 45 + grace
    assert jobs["cleanup"]["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 5
    suspended = {name for name, job in jobs.items() if job["spec"]["suspend"]}
    assert suspended == {"cleanup"}
    for job in jobs.values():
        assert job["spec"]["successfulJobsHistoryLimit"] == 3
        assert job["spec"]["failedJobsHistoryLimit"] == 5
        assert pod(job)["restartPolicy"] == "Never"
    assert "agency-cron/jitter-note" in jobs["report-0"]["metadata"]["annotations"]


def test_the_container_runs_the_runner_on_the_task_spec(exported):
    _, documents = exported
    configmap = documents[0]
    assert configmap["metadata"]["name"] == "agency-cron-specs"
    assert sorted(configmap["data"]) == [
        "backup.json",
        "cleanup.json",
        "health-check.json",
        "report.json",
    ]
    for name, job in by_name(documents).items():
        task = job["metadata"]["labels"]["agency-cron/task"]
        spec = pod(job)
        [container] = spec["containers"]
        assert container["image"] == IMAGE
        assert container["command"] == [
            "python3",
            "-m",
            "agency_cron.runner",
            f"/etc/agency-cron/{task}.json",
        ], name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["spec"]["configMap"] == {
            "name": "agency-cron-specs",
            "items": [{"key": f"{task}.json", "path": f"{task}.json"}],
        }
        assert volumes["logs"] == {"name": "logs", "emptyDir": {}}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert set(mounts) == {"/etc/agency-cron", "/var/log/agency-cron", "/var/lib/agency-cron"}
        assert mounts["/etc/agency-cron"]["readOnly"] is True
        spec_json = json.loads(configmap["data"][f"{task}.json"])
        assert spec_json["name"] == task
        assert spec_json["retries"] == 0  # Kubernetes retries (backoffLimit)
        assert spec_json["log"] == f"/var/log/agency-cron/{task}.log"


def test_secrets_by_reference_only(exported):
    text, documents = exported
    for secret in (DB_PASSWORD, CONFIG_TOKEN, ALERT_URL, "AAbbCCddEEffGGhhIIjj"):
        assert secret not in text
    env = container_env(by_name(documents)["backup-0"])
    ref = {"name": "agency-cron-secrets", "key": "DB_PASSWORD"}
    assert env["DB_PASSWORD"] == {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": ref}}
    # Not a secret name, but it holds the password: by reference too.
    assert env["DSN"]["valueFrom"]["secretKeyRef"]["key"] == "DSN"
    assert env["MODE"] == {"name": "MODE", "value": "full"}
    assert env["ALERT_URLS"]["valueFrom"]["secretKeyRef"] == {
        "name": "agency-cron-secrets",
        "key": "ALERT_URLS",
        "optional": True,
    }
    assert "ALERT_URLS" not in container_env(by_name(documents)["cleanup"])  # alert: never
    backup_spec = json.loads(documents[0]["data"]["backup.json"])
    assert backup_spec["env"] == {"MODE": "full"}
    assert backup_spec["alert_urls"] == []
    assert "secrets" not in backup_spec
    # The header tells the operator which keys the Secret needs, never their values.
    assert text.splitlines()[1].endswith(": ALERT_URLS (optional), DB_PASSWORD, DSN")


# --- the exported spec, run as the container would run it ---------------------------------


def run_container(document: dict, configmap: dict, secret: dict, tmp_path: Path, **extra):
    """The container's command and env on this machine: paths under tmp_path, the Secret's
    values resolved as the kubelet would."""
    [container] = pod(document)["containers"]
    task = document["metadata"]["labels"]["agency-cron/task"]
    spec = json.loads(configmap["data"][f"{task}.json"])
    spec.update(log=str(tmp_path / "log" / f"{task}.log"), log_dir=str(tmp_path / "log"))
    spec["state_dir"] = str(tmp_path / "state")
    spec_path = tmp_path / f"{task}.json"
    spec_path.write_text(json.dumps(spec))
    env = {"PATH": os.environ["PATH"], **extra}
    for item in container["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[item["name"]] = item["value"]
        elif ref["key"] in secret:
            env[item["name"]] = secret[ref["key"]]
    command = [sys.executable, *container["command"][1:3], str(spec_path)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_exported_spec_runs_through_the_runner(exported, tmp_path):
    _, documents = exported
    report = by_name(documents)["report-0"]
    secret = {"DB_PASSWORD": DB_PASSWORD}
    result = run_container(report, documents[0], secret, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"mode=report secret-length={len(DB_PASSWORD)}" in result.stdout
    assert "it's: quoted # not a comment" in result.stdout
    log = (tmp_path / "log" / "report.log").read_text()
    assert "status=success" in log
    assert (tmp_path / "state" / "history.db").exists()


def test_a_failed_run_is_one_attempt(exported, tmp_path):
    # Retries belong to Kubernetes (backoffLimit): the runner in the pod tries once.
    _, documents = exported
    report = by_name(documents)["report-0"]
    secret = {"DB_PASSWORD": DB_PASSWORD}
    result = run_container(report, documents[0], secret, tmp_path, EXIT_WITH="3")
    assert result.returncode == 3
    log = (tmp_path / "log" / "report.log").read_text()
    assert log.count("start task=report") == 1
    assert "attempt=1/1" in log and "status=failed" in log


# --- bad input ----------------------------------------------------------------------------

BAD_MANIFEST = """\
tasks:
  - name: backup_verify
    schedule: "@daily"
    command: "true"
  - name: Report
    schedule: "@daily"
    command: "true"
  - name: {long}
    schedule: ["@daily", "@hourly"]
    command: "true"
  - name: boot
    schedule: ["@reboot", "@daily"]
    command: "true"
  - name: one-off
    schedule: "once 2030-06-01T03:00"
    command: "true"
  - name: fine
    schedule: ["@daily", "@hourly"]
    command: "true"
  - name: fine-1
    schedule: "@daily"
    command: "true"
"""


def test_bad_input_reports_every_problem(env):
    long_name = "n" * 51
    env.write_manifest(BAD_MANIFEST.format(long=long_name))
    settings = load_settings(env.config, environ={})
    manifest = load_manifest(env.manifest, settings)
    with pytest.raises(ConfigError) as caught:
        k8s.export(settings, [(t, True) for t in manifest.tasks], "", "Prod_1")
    problems = caught.value.problems
    heads = [problem.split(": ")[0] + ": " + problem.split(": ")[1] for problem in problems]
    assert heads == [
        "image: is empty; give --image with an image that has agency-cron",
        "namespace: 'Prod_1' is not a valid Kubernetes namespace (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63)",
        "task backup_verify: name",
        "task Report: name",
        f"task {long_name}: name",
        "task boot: schedule",
        "task one-off: schedule",
        "task fine-1: name",
    ]
    assert all("\n" not in problem for problem in problems)
    assert "'once 2030-06-01T03:00': a one-time run is a Kubernetes Job" in problems[6]
    assert f"'{long_name}-1' has 53 characters" in problems[4]


def test_a_secret_in_a_command_is_refused(env):
    env.write_manifest(
        textwrap.dedent(
            """\
            tasks:
              - name: notify
                schedule: "@daily"
                command: 'curl -H "X-Token: s3cr3t-value-123" https://hooks.example.com'
                env: {HOOK_TOKEN: s3cr3t-value-123}
            """
        )
    )
    settings = load_settings(env.config, environ={})
    manifest = load_manifest(env.manifest, settings)
    with pytest.raises(ConfigError) as caught:
        k8s.export(settings, [(t, True) for t in manifest.tasks], IMAGE, NAMESPACE)
    [problem] = caught.value.problems
    assert problem.startswith("task notify: command: contains a secret value")
    assert "s3cr3t-value-123" not in problem


# --- the fleet history (HISTORY_URL) ------------------------------------------------------

HISTORY_PASSWORD = "fl33t-pw-never-in-yaml"
HISTORY_URL = f"postgresql://agency:{HISTORY_PASSWORD}@db.example.com:5432/agency_cron"
FLEET_MANIFEST = """\
tasks:
  - name: backup
    schedule: "@daily"
    command: /opt/agency_stack/scripts/cronjobs/backup.sh
    env: {MODE: full, REPORT_DB: "${HISTORY_URL}"}
  - name: quiet
    schedule: "@hourly"
    command: "true"
    alert: never
"""


def export_with(env, config: str, manifest: str = FLEET_MANIFEST) -> str:
    env.add_config(config)
    env.write_manifest(manifest)
    settings = load_settings(env.config, environ={})
    tasks = load_manifest(env.manifest, settings).tasks
    return k8s.export(settings, [(task, True) for task in tasks], IMAGE, NAMESPACE)


@pytest.fixture
def fleet(env):
    text = export_with(env, f"HISTORY_URL={HISTORY_URL}\n")
    return text, list(yaml.safe_load_all(text))


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fleet_export_validates(fleet, version):
    _, documents = fleet
    assert [d["kind"] for d in documents] == ["ConfigMap", "CronJob", "CronJob"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_every_job_reads_the_fleet_history_url_from_the_secret(fleet):
    text, documents = fleet
    for name, job in by_name(documents).items():
        env = container_env(job)
        # Not optional: a pod without the key fails to start instead of losing its runs.
        assert env["AGENCY_CRON_HISTORY_URL"] == {
            "name": "AGENCY_CRON_HISTORY_URL",
            "valueFrom": {"secretKeyRef": {"name": "agency-cron-secrets", "key": "HISTORY_URL"}},
        }, name
        assert env["AGENCY_CRON_HOST"] == {
            "name": "AGENCY_CRON_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
        }, name
        # The emptyDir stays: the runner's SQLite file is the spool it sends from.
        volumes = {v["name"]: v for v in pod(job)["volumes"]}
        assert volumes["state"] == {"name": "state", "emptyDir": {}}
    header = text.splitlines()[1]
    assert header.endswith(": ALERT_URLS (optional), HISTORY_URL, REPORT_DB")


def test_no_history_password_anywhere_in_the_output(fleet):
    text, documents = fleet
    for secret in (HISTORY_PASSWORD, HISTORY_URL, "db.example.com"):
        assert secret not in text
    for key, spec_text in documents[0]["data"].items():
        spec = json.loads(spec_text)
        assert "history_url" not in spec and "host" not in spec, key
    # A task env that copies the URL gets it from the Secret as well.
    backup = container_env(by_name(documents)["backup"])
    assert backup["REPORT_DB"]["valueFrom"]["secretKeyRef"]["key"] == "REPORT_DB"
    assert backup["MODE"] == {"name": "MODE", "value": "full"}


def test_the_history_password_in_a_command_is_refused(env):
    manifest = """\
tasks:
  - name: dump
    schedule: "@daily"
    command: "pg_dump postgresql://agency:fl33t-pw-never-in-yaml@db.example.com/agency_cron"
"""
    with pytest.raises(ConfigError) as caught:
        export_with(env, f"HISTORY_URL={HISTORY_URL}\n", manifest)
    [problem] = caught.value.problems
    assert problem.startswith("task dump: command: contains a secret value")
    assert HISTORY_PASSWORD not in problem


@pytest.mark.parametrize("config", ["", "HISTORY_URL=sqlite:///var/lib/agency_stack/runs.db\n"])
def test_without_a_fleet_history_the_output_is_unchanged(env, make_env, tmp_path, config):
    plain = make_env(tmp_path / "plain")
    expected = export_with(plain, "", MANIFEST)
    text = export_with(env, config, MANIFEST)
    assert text.replace(str(env.root), "ROOT") == expected.replace(str(plain.root), "ROOT")
    for job in by_name(list(yaml.safe_load_all(text))).values():
        env_names = set(container_env(job))
        assert not env_names & {"AGENCY_CRON_HISTORY_URL", "AGENCY_CRON_HOST"}
        assert {v["name"]: v for v in pod(job)["volumes"]}["state"]["emptyDir"] == {}
    assert "HISTORY_URL" not in text.splitlines()[1]


# --- --working-dir ------------------------------------------------------------------------

WORKDIR_MANIFEST = """\
tasks:
  - name: anywhere
    schedule: "@daily"
    command: "pwd"
  - name: pinned
    schedule: "@daily"
    command: "pwd"
    working_dir: /srv/pinned
"""


def exported_working_dirs(out: str) -> dict[str, str]:
    [configmap] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]
    return {
        key.removesuffix(".json"): json.loads(text)["working_dir"]
        for key, text in configmap["data"].items()
    }


def test_working_dir_defaults_to_the_image_root(env, cli):
    env.write_manifest(WORKDIR_MANIFEST)
    code, out, err = cli(*env.args("export", "kubernetes", "-"))
    assert code == 0, err
    # Not the host's AGENCY_ROOT: the image may not have it.
    assert exported_working_dirs(out) == {"anywhere": "/", "pinned": "/srv/pinned"}
    assert str(env.agency_root) not in json.dumps(exported_working_dirs(out))


def test_working_dir_option(env, cli):
    env.write_manifest(WORKDIR_MANIFEST)
    code, out, err = cli(*env.args("export", "kubernetes", "--working-dir", "/srv/agency", "-"))
    assert code == 0, err
    assert exported_working_dirs(out) == {"anywhere": "/srv/agency", "pinned": "/srv/pinned"}
    for document in yaml.safe_load_all(out):
        kubernetes_validate.validate(document, "1.30.0", strict=True)


@pytest.mark.parametrize("bad", ["srv/agency", ".", "", "~/agency", "/srv/a\nb"])
def test_a_bad_working_dir_is_refused(env, cli, bad):
    env.write_manifest(WORKDIR_MANIFEST)
    target = env.root / "out.yaml"
    for destination in ("-", str(target)):
        code, out, err = cli(*env.args("export", "kubernetes", "--working-dir", bad, destination))
        assert (code, out) == (2, "")
        [line] = err.splitlines()
        assert line.startswith("agency-cron: error: working-dir: ")
        assert "is not an absolute path" in line and "--working-dir /srv/agency" in line
    assert not target.exists()


def test_the_help_shows_the_working_dir_option(cli):
    code, out, _ = cli("export", "kubernetes", "--help")
    assert code == 0
    assert "--working-dir" in out and "--working-dir /srv/agency" in out
