"""The Kubernetes export, piece by piece: checks, schedule translation, deadlines, env, spec.

tests/integration/test_kubernetes_export.py validates whole documents against the Kubernetes
schema and runs an exported spec through the runner.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml
from cronsim import CronSim

from agency_cron import render
from agency_cron.backends import kubernetes as k8s
from agency_cron.errors import ConfigError
from agency_cron.manifest import Task
from agency_cron.schedule import cron_form

DIGEST = "sha256:" + "ab" * 32
IMAGE = "registry.example.com/ops/agency-cron:1.4"
ALERT_URL = "tgram://123456789:AAbbCCddEEffGGhhIIjj/4242"


@pytest.fixture
def settings(tmp_path, monkeypatch, settings_at):
    monkeypatch.chdir(tmp_path)
    return settings_at(tmp_path, ALERT_URLS=ALERT_URL, ALERT_TIMEOUT="30")


def task(**fields) -> Task:
    body = {} if "script" in fields else {"command": "true"}
    return Task.model_validate({"name": "job", "schedule": "0 2 * * *", **body, **fields})


# --- image and namespace ------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "alpine",
        "alpine:3.20",
        "library/python:3.12-slim",
        IMAGE,
        "registry.example.com:5000/ops/agency-cron:1.4",
        "localhost:5000/agency-cron",
        f"ghcr.io/org/agency-cron@{DIGEST}",
        f"ghcr.io/org/agency-cron:1.4@{DIGEST}",
        "[::1]:5000/agency-cron:dev",
        "my_org/agency__cron---x:v1.0_rc-2",
    ],
)
def test_valid_images(image):
    assert k8s.target_problems(image, "ops") == []


@pytest.mark.parametrize(
    "image",
    [
        "Alpine",  # repository paths are lowercase
        "alpine:",
        "alpine:has space",
        "-alpine",
        "alpine:-tag",
        "ghcr.io/org/img@sha256:abc",  # digest too short
        "a//b",
        "img/" + "a" * 252,  # repository name over 255 characters
        "alpine:" + "t" * 129,  # tag over 128 characters
        " alpine",
    ],
)
def test_invalid_images(image):
    [problem] = k8s.target_problems(image, "ops")
    assert problem.startswith(f"image: {image!r} is not a valid image reference")


@pytest.mark.parametrize("image", ["", "   "])
def test_empty_image(image):
    assert k8s.target_problems(image, "ops") == [
        "image: is empty; give --image with an image that has agency-cron"
    ]


@pytest.mark.parametrize("namespace", ["default", "ops", "ops-1", "a" * 63, "0ps"])
def test_valid_namespaces(namespace):
    assert k8s.target_problems("alpine", namespace) == []


@pytest.mark.parametrize("namespace", ["", "Ops", "ops_1", "-ops", "ops-", "ops.prod", "a" * 64])
def test_invalid_namespaces(namespace):
    [problem] = k8s.target_problems("alpine", namespace)
    assert problem.startswith(f"namespace: {namespace!r} is not a valid Kubernetes namespace")


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["backup_verify", "Backup", "backup-", "UPPER"])
def test_names_kubernetes_refuses(name):
    [problem] = k8s.name_problems(task(name=name))
    assert problem.startswith(f"task {name}: name: {name!r} is not a valid Kubernetes name")
    assert "does not rewrite names" in problem


def test_name_length_counts_the_schedule_suffix():
    assert k8s.name_problems(task(name="a" * 52)) == []
    two = ["0 1 * * *", "0 2 * * *"]
    assert k8s.name_problems(task(name="a" * 50, schedule=two)) == []
    [problem] = k8s.name_problems(task(name="a" * 51, schedule=two))
    assert problem.startswith(f"task {'a' * 51}: name: the CronJob name '{'a' * 51}-1' has 53")
    assert k8s.name_problems(task(name="a" * 53))


def test_cronjob_names():
    assert k8s.cronjob_names(task(name="x")) == ["x"]
    assert k8s.cronjob_names(task(name="x", schedule=["@hourly", "@daily", "0 3 * * *"])) == [
        "x-0",
        "x-1",
        "x-2",
    ]


def test_collisions_with_suffixed_names():
    problems = k8s.collision_problems(
        [task(name="a", schedule=["@hourly", "@daily"]), task(name="a-1"), task(name="b")]
    )
    assert problems == [
        "task a-1: name: the CronJob name 'a-1' is also made for task a; rename one of them"
    ]


# --- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("*/15 9-17 * * mon-fri", "*/15 9-17 * * mon-fri"),
        ("0 0 * * */7", "0 0 * * */7"),  # robfig's */7 over 0-6 is {0}: the same Sunday
        ("0 9 * * 7", "0 9 * * 0"),
        ("0 9 * * 5-7", "0 9 * * 0,5,6"),
        ("0 9 * * 1,7", "0 9 * * 0,1"),
        ("0 0 1 * 0-7", "0 0 1 * 0,1,2,3,4,5,6"),  # stays restricted: still an OR with day 1
        ("0 0 * * 5-7/2", "0 0 * * 0,5"),
        ("0 0 * * */2,7", "0 0 * * 0,2,4,6"),  # day-of-month '*': AND either way
        ("0 0 1 * sun", "0 0 1 * sun"),
    ],
)
def test_schedule_translation(expr, expected):
    assert k8s.k8s_schedule(expr) == expected
    # The rewrite fires exactly when the original does (cronsim: Debian cron's rules).
    start = datetime(2026, 1, 1)
    original, rewritten = CronSim(expr, start), CronSim(expected, start)
    assert [next(original) for _ in range(300)] == [next(rewritten) for _ in range(300)]


@pytest.mark.parametrize(
    "nickname", ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]
)
def test_nicknames_pass_through(nickname):
    # The CronJob controller parses these itself (robfig/cron descriptors).
    assert k8s.k8s_schedule(nickname) == nickname


def test_star_weekday_with_seven_and_restricted_days_is_refused():
    [problem] = k8s.schedule_problems(task(schedule="0 0 1 * */2,7"))
    assert problem.startswith("task job: schedule: '0 0 1 * */2,7': Kubernetes reads day-of-week")
    with pytest.raises(ConfigError):
        k8s.k8s_schedule("0 0 1 * */2,7")


def test_reboot_and_once_are_refused():
    problems = k8s.schedule_problems(
        task(schedule=["@reboot", "once 2030-01-01T03:00", "0 1 * * *"])
    )
    assert len(problems) == 2
    assert problems[0].startswith("task job: schedule: '@reboot': a CronJob has no start-up")
    assert problems[1].startswith(
        "task job: schedule: 'once 2030-01-01T03:00': a one-time run is a Kubernetes Job"
    )


@pytest.mark.parametrize(
    ("expr", "deadline"),
    [
        ("* * * * *", 60),
        ("*/2 * * * *", 120),
        ("*/5 * * * *", 300),
        ("*/10 * * * *", 300),
        ("58,2 * * * *", 240),  # 58 -> 02 of the next hour
        ("59 23 * * *", 300),
        ("@hourly", 300),
        ("0 0 29 2 *", 300),
    ],
)
def test_starting_deadline_is_capped_by_the_interval(expr, deadline):
    assert k8s.starting_deadline(expr) == deadline


# --- deadlines ----------------------------------------------------------------------------


def test_deadlines(settings):
    once = task(timeout="1m")
    assert k8s.pod_deadline(once, settings) == 60 + 10 + 30 + k8s.START_MARGIN_S
    assert k8s.job_deadline(once, settings) == 220 + k8s.PENDING_ALLOWANCE_S
    three = task(timeout="1m", retries=3)
    assert k8s.job_deadline(three, settings) == 4 * 220 + (10 + 20 + 40) + 600
    # Kubernetes' back-off stops doubling at 6 minutes; 100 retries stay a plain integer.
    many = task(timeout="1m", retries=100)
    backoff = 10 + 20 + 40 + 80 + 160 + 320 + 360 * 94
    assert k8s.job_deadline(many, settings) == 101 * 220 + backoff + 600


# --- env and spec -------------------------------------------------------------------------


def test_secret_names(settings):
    t = task(
        env={
            "DB_PASSWORD": "hunter2-long",
            "API_TOKEN": "t0k3n-value",
            "DSN": "postgres://app:hunter2-long@db/app",  # a secret inside a plain name
            "MODE": "full",
        }
    )
    hidden = k8s.secret_names(t, render.redaction_list(t, settings))
    assert hidden == {"DB_PASSWORD", "API_TOKEN", "DSN"}


def test_container_env(settings):
    t = task(env={"DB_PASSWORD": "hunter2-long", "MODE": "full"})
    env = k8s.container_env(t, settings, {"DB_PASSWORD"})
    assert [item["name"] for item in env] == [
        "AGENCY_CRON_SCHEDULED",
        "AGENCY_ROOT",
        "LOG_DIR",
        "STATE_DIR",
        "DB_PASSWORD",
        "MODE",
        "ALERT_URLS",
    ]
    by_name = {item["name"]: item for item in env}
    assert by_name["AGENCY_CRON_SCHEDULED"]["value"] == "no"
    assert by_name["AGENCY_ROOT"]["value"] == str(settings.agency_root)
    assert by_name["LOG_DIR"]["value"] == "/var/log/agency-cron"
    assert by_name["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "agency-cron-secrets", "key": "DB_PASSWORD"}},
    }
    assert by_name["MODE"] == {"name": "MODE", "value": "full"}
    assert by_name["ALERT_URLS"]["valueFrom"]["secretKeyRef"] == {
        "name": "agency-cron-secrets",
        "key": "ALERT_URLS",
        "optional": True,
    }


def test_alert_url_keys(settings):
    own = task(name="own", alert_urls=["json://hooks.example.com/x"])
    [alert] = [e for e in k8s.container_env(own, settings, set()) if e["name"] == "ALERT_URLS"]
    assert alert["valueFrom"]["secretKeyRef"]["key"] == "ALERT_URLS.own"
    silent = task(alert="never")
    assert "ALERT_URLS" not in {e["name"] for e in k8s.container_env(silent, settings, set())}


def test_task_spec_is_stripped(settings):
    t = task(
        env={"DB_PASSWORD": "hunter2-long", "MODE": "full"},
        retries=4,
        jitter="30s",
        alert_urls=["json://user:pa55word@hooks.example.com/x"],
    )
    spec = k8s.task_spec(t, settings, True, {"DB_PASSWORD"})
    original = render.spec(t, settings, True)
    assert "secrets" not in spec
    assert spec["env"] == {"MODE": "full"}
    assert spec["alert_urls"] == []
    assert spec["retries"] == 0
    assert spec["jitter"] == 0
    assert spec["log"] == "/var/log/agency-cron/job.log"
    assert (spec["log_dir"], spec["state_dir"]) == ("/var/log/agency-cron", "/var/lib/agency-cron")
    assert spec["working_dir"] == "/"  # not the host's AGENCY_ROOT
    changed = {"env", "alert_urls", "retries", "jitter", "log", "log_dir", "state_dir"}
    changed |= {"working_dir"}
    assert {key: spec[key] for key in spec if key not in changed} == {
        key: value for key, value in original.items() if key not in changed | {"secrets"}
    }
    text = k8s._spec_text(spec)
    for secret in ("hunter2-long", "pa55word", ALERT_URL):
        assert secret not in text


def test_leaks_in_clear_fields_are_refused(settings):
    t = task(
        command="curl -H 'Authorization: Bearer t0k3n-value' https://api.example.com",
        env={"API_TOKEN": "t0k3n-value"},
        description="uses t0k3n-value",
    )
    problems = k8s.leak_problems(t, render.redaction_list(t, settings))
    assert [p.split(": contains")[0] for p in problems] == [
        "task job: command",
        "task job: description",
    ]


def test_annotations():
    assert k8s.annotations(task()) == {}
    notes = k8s.annotations(
        task(overlap="wait", retries=2, jitter="10s", description="Nightly backup")
    )
    assert set(notes) == {
        "agency-cron/description",
        "agency-cron/overlap-note",
        "agency-cron/retry-note",
        "agency-cron/jitter-note",
    }
    assert "no Kubernetes equivalent" in notes["agency-cron/overlap-note"]


def test_concurrency_policy(settings):
    target = k8s.Target(settings, IMAGE, "ops")
    policies = {
        overlap: k8s.cronjob(task(overlap=overlap), 0, True, target, set())["spec"][
            "concurrencyPolicy"
        ]
        for overlap in ("skip", "wait", "allow")
    }
    assert policies == {"skip": "Forbid", "wait": "Forbid", "allow": "Allow"}


def test_configmap_size_limit(settings):
    big = task(script="echo " + "x" * (1024 * 1024))
    with pytest.raises(ConfigError) as caught:
        k8s.cronjobs(settings, [(big, True)], IMAGE, "ops")
    [problem] = caught.value.problems
    assert problem.startswith("ConfigMap agency-cron-specs: the task specs take")


def test_no_tasks(settings):
    assert k8s.cronjobs(settings, [], IMAGE, "ops") == []
    assert k8s.export(settings, [], IMAGE, "ops").startswith("# agency-cron export kubernetes: 0")


def test_export_is_deterministic_and_plain_yaml(settings):
    tasks = [(task(name="a", script="echo 1\necho 2\n"), True), (task(name="b"), False)]
    first = k8s.export(settings, tasks, IMAGE, "ops")
    assert first == k8s.export(settings, tasks, IMAGE, "ops")
    assert "&id" not in first and "*id" not in first  # no YAML anchors
    documents = list(yaml.safe_load_all(first))
    assert documents == k8s.cronjobs(settings, tasks, IMAGE, "ops")
    assert first.count("\n---\n") == 3
    assert "  a.json: |\n" in first  # the spec as a block, readable in review


def test_schedule_cron_form_agrees_for_nicknames():
    # Nicknames pass through, so the deadline must read them the way cron does.
    assert k8s.starting_deadline("@hourly") == k8s.starting_deadline(cron_form("@hourly"))


# --- --working-dir ------------------------------------------------------------------------


@pytest.mark.parametrize("working_dir", ["/", "/srv/agency", "/opt/agency stack/x"])
def test_valid_working_dirs(working_dir):
    assert k8s.target_problems("alpine", "ops", working_dir) == []


@pytest.mark.parametrize("working_dir", ["", "srv", "./srv", "~/srv", "/srv\n/x", "/a\0b"])
def test_invalid_working_dirs(working_dir):
    [problem] = k8s.target_problems("alpine", "ops", working_dir)
    assert problem.startswith(f"working-dir: {working_dir!r} is not an absolute path")
    assert "\n" not in problem


def test_task_spec_working_dir(settings):
    assert k8s.task_spec(task(), settings, True, set())["working_dir"] == "/"
    assert k8s.task_spec(task(), settings, True, set(), "/srv")["working_dir"] == "/srv"
    own = task(working_dir="/data")
    assert k8s.task_spec(own, settings, True, set(), "/srv")["working_dir"] == "/data"


# --- the fleet history --------------------------------------------------------------------

FLEET_URL = "postgresql://agency:s3cret-pw%21@db.example.com/agency_cron"


@pytest.mark.parametrize(
    ("value", "fleet"),
    [
        ("", False),
        ("sqlite:///var/lib/agency_stack/history.db", False),
        (FLEET_URL, True),
        ("postgres://agency@db/agency_cron", True),
        ("PostgreSQL://agency@db/agency_cron", True),
        ("  postgresql://agency@db/agency_cron  ", True),
    ],
)
def test_fleet_history_url(tmp_path, settings_at, value, fleet):
    found = k8s.fleet_history_url(settings_at(tmp_path, HISTORY_URL=value))
    assert found == (value.strip() if fleet else None)


def test_fleet_secrets(tmp_path, settings_at):
    assert k8s.fleet_secrets(settings_at(tmp_path)) == []
    found = k8s.fleet_secrets(settings_at(tmp_path, HISTORY_URL=FLEET_URL))
    # The URL, and its password as written and percent-decoded.
    assert sorted(found) == sorted([FLEET_URL, "s3cret-pw%21", "s3cret-pw!"])
    passwordless = settings_at(tmp_path, HISTORY_URL="postgresql://agency@db/agency_cron")
    assert k8s.fleet_secrets(passwordless) == ["postgresql://agency@db/agency_cron"]


def test_container_env_with_a_fleet_history(tmp_path, settings_at):
    fleet = settings_at(tmp_path, HISTORY_URL=FLEET_URL, ALERT_URLS=ALERT_URL)
    # A task's own variable of the same name does not redirect the history.
    t = task(env={"MODE": "full", "AGENCY_CRON_HOST": "elsewhere"})
    env = k8s.container_env(t, fleet, set())
    names = [item["name"] for item in env]
    assert names[-2:] == ["AGENCY_CRON_HISTORY_URL", "AGENCY_CRON_HOST"]
    assert names.count("AGENCY_CRON_HOST") == 1
    by_name = {item["name"]: item for item in env}
    assert by_name["AGENCY_CRON_HISTORY_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "agency-cron-secrets", "key": "HISTORY_URL"}
    }
    assert by_name["AGENCY_CRON_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    without = k8s.container_env(t, settings_at(tmp_path, ALERT_URLS=ALERT_URL), set())
    assert {"AGENCY_CRON_HISTORY_URL"} & {item["name"] for item in without} == set()


def test_history_url_is_a_required_secret_key(tmp_path, settings_at):
    fleet = settings_at(tmp_path, HISTORY_URL=FLEET_URL)
    documents = k8s.cronjobs(fleet, [(task(alert="never"), True)], IMAGE, "ops")
    assert k8s.required_secret_keys(documents) == [("HISTORY_URL", False)]
    text = k8s.export(fleet, [(task(alert="never"), True)], IMAGE, "ops")
    assert "s3cret-pw" not in text and FLEET_URL not in text
    assert text.splitlines()[1].endswith(": HISTORY_URL")
