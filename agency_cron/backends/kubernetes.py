"""Kubernetes export: one batch/v1 `CronJob` per task and schedule, plus one `ConfigMap`.

`agency-cron export kubernetes [--image IMAGE] [--namespace NS] [--working-dir DIR]` is for
users who outgrow one host. The output is plain data: nothing here talks to a cluster or
writes a file.

How a task runs in the cluster
------------------------------
The container runs the task through agency-cron's own runner, as the crontab line does on a
host, so the log format, the history rows, the timeout handling and the alert decision are
the same. The image must therefore contain agency-cron (`python3 -m agency_cron.runner`) and
whatever the commands call, at the paths the manifest uses. A task without its own
working_dir runs in --working-dir (default `/`), not in the host's AGENCY_ROOT, which the
image may not have.

- `ConfigMap agency-cron-specs` holds each task's runner spec (render.spec) as `NAME.json`,
  mounted read-only at /etc/agency-cron (only that task's key). A ConfigMap is readable by
  anyone who can read the namespace, so the spec is stripped: no `secrets` list, no alert
  URLs, no secret-named env values. The runner's own retries are 0 because Kubernetes
  retries (backoffLimit); two retry layers would multiply attempts.
- Logs and history go to /var/log/agency-cron and /var/lib/agency-cron on emptyDir volumes:
  the runner also echoes every line to stdout, so `kubectl logs` shows the task log. Without
  a fleet history (HISTORY_URL unset or sqlite://) the history dies with the pod; mount a
  PersistentVolumeClaim there to keep it across pods.
- The fleet history (HISTORY_URL=postgresql://...): the runner records in its SQLite file
  first and then sends the rows to PostgreSQL, so the emptyDir is only a spool. The URL
  holds a password, so it never enters the ConfigMap (the spec's `history_url` is dropped):
  each container reads it as AGENCY_CRON_HISTORY_URL from the Secret's key HISTORY_URL, not
  optional, because a pod that cannot record must not run as if it could (a missing key
  stops the pod before the task, visibly). AGENCY_CRON_HOST is the node's name (downward
  API `spec.nodeName`): the fleet views group runs by host, and a pod's name is new for
  every run.
- Secrets never appear in the output. Env variables with secret names (secrets.is_secret_name),
  any value that contains a known secret, and ALERT_URLS come from `Secret
  agency-cron-secrets` through `secretKeyRef` (key = the variable name; a task with its own
  alert_urls reads `ALERT_URLS.<task>`, which should hold the global URLs plus its own).
  A task that pings (ping_url, PING_URL) reads its URL from `PING_URL.<task>` as
  AGENCY_CRON_PING_URL: the spec keeps only `ping_timeout`, and the runner keeps that
  variable from the task. The runner passes its environment to the task, so the task sees
  the others. The export never
  creates the Secret: it would have to contain the values. A command, script, description
  or working_dir that contains a secret value is refused, since it would land in the
  ConfigMap in clear.
- `AGENCY_CRON_SCHEDULED=no`: Kubernetes already fires in the task's zone (`timeZone`); the
  runner's own zone check compares the start minute with the schedule, and a pod that
  starts a minute late (image pull) would be skipped as "not due".

Mapping of task fields
----------------------
- schedule: cron text as is; @hourly/@daily/@midnight/@weekly/@monthly/@yearly/@annually
  too (the CronJob controller parses them with robfig/cron, as documented). Day-of-week 7
  (Sunday to Debian cron) is out of range for robfig/cron, so a field like `5-7` is
  rewritten as the exact list `0,5,6`. `@reboot` and `once` are refused: a CronJob has no
  start-up trigger, and a one-time run is a Job. Several schedules give one CronJob each,
  named NAME-0, NAME-1, ...
- name: refused unless it is a lowercase RFC 1123 label of at most 52 characters with its
  suffix (the controller appends 11 characters to name each Job, and a Job name is at most
  63). Names are never rewritten: `backup_verify` -> `backup-verify` could collide.
- overlap: skip -> Forbid, allow -> Allow, wait -> Forbid with an `agency-cron/overlap-note`
  annotation (Kubernetes cannot queue a run behind the previous one).
- timeout: `activeDeadlineSeconds` on the pod, per attempt like the runner's timeout, with a
  margin so that the runner's own timeout (exit 124, recorded, alerted) fires first; on the
  Job, a backstop covering every attempt and Kubernetes' retry back-off, which also ends a
  Job whose pod never starts (with Forbid, a stuck Job would block every later run).
- retries -> backoffLimit, with restartPolicy Never (each attempt is a fresh pod). retry_delay
  and retry_backoff do not carry over: Kubernetes waits 10s, 20s, 40s... up to 6 minutes.
- startingDeadlineSeconds: 300, capped by the shortest gap between two fire times. cron
  never starts a missed run late; Kubernetes does while the deadline allows. Five minutes
  lets a briefly unavailable controller (upgrade, leader election) catch up without letting
  a late run stand in for the next one, and bounds the controller's missed-run count (over
  100 missed runs it stops scheduling the CronJob).
- enabled -> suspend; timezone -> timeZone (only when set; otherwise the controller's zone,
  usually UTC, where cron would use the host's); history limits 3 successful, 5 failed.
- jitter and user have no CronJob equivalent: jitter gets an annotation, the pod runs as the
  image's user.

Why build dicts rather than a Jinja template: the YAML emitter quotes commands, scripts and
env values correctly whatever they contain (a template would need escaping rules for every
field), and tests validate the very dicts that are dumped.
"""

# No `from __future__ import annotations` here: annotations() below would shadow it.
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agency_cron import render, timing
from agency_cron.config import Settings
from agency_cron.errors import ConfigError, shown
from agency_cron.fields import CLEAR_FIELDS, clear_secret_problem
from agency_cron.manifest import Task
from agency_cron.schedule import REBOOT, cron_form, is_interval, is_once
from agency_cron.secrets import is_secret_name, password_of_url, worth_masking

# RFC 1123 label (Kubernetes' IsDNS1123Label): namespaces, and CronJob names by our choice.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAMESPACE_MAX = 63
# The controller names each Job NAME-<11 chars>, and a Job name is at most 63.
CRONJOB_NAME_MAX = 52
# The distribution/reference grammar that container runtimes parse image names with.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::[\w][\w.-]{{0,127}})?(?:@{_DIGEST})?$"
)
IMAGE_NAME_MAX = 255

SPECS_CONFIGMAP = "agency-cron-specs"
SECRET = "agency-cron-secrets"
SPEC_DIR = "/etc/agency-cron"
LOG_DIR = "/var/log/agency-cron"
STATE_DIR = "/var/lib/agency-cron"
ALERT_URLS = "ALERT_URLS"
PING_ENV = "AGENCY_CRON_PING_URL"  # the runner's ping URL when the spec has none
HISTORY_KEY = "HISTORY_URL"  # the config key, and the Secret's key that holds it
HISTORY_ENV = "AGENCY_CRON_HISTORY_URL"  # the runner's fleet history URL, over the spec's
HOST_ENV = "AGENCY_CRON_HOST"  # the host name the runner records, over uname
DEFAULT_WORKING_DIR = "/"
# A ConfigMap's data is at most 1 MiB (etcd's object size limit).
CONFIGMAP_MAX_BYTES = 1024 * 1024
LABELS = {"app.kubernetes.io/managed-by": "agency-cron", "app.kubernetes.io/name": "agency-cron"}
TASK_LABEL = "agency-cron/task"
CONCURRENCY = {"skip": "Forbid", "allow": "Allow", "wait": "Forbid"}
SUCCESSFUL_HISTORY = 3
FAILED_HISTORY = 5
STARTING_DEADLINE_S = 300
# Python start-up, an image pull (the pod's clock starts before it), the history write.
START_MARGIN_S = timing.POD_START_MARGIN_S
# Time for a Job's pod to be scheduled at all (a cluster autoscaler adding a node).
PENDING_ALLOWANCE_S = 600
# The Job controller's retry back-off: 10s, doubling, at most 6 minutes.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 10, 360
# cronsim needs a start to walk fire times; any fixed one keeps the output deterministic.
GAP_START = datetime(2000, 1, 1)
GAP_SAMPLES = 200
# robfig/cron's day-of-week range is 0-6; Debian cron's is 0-7.
ROBFIG_LAST_WEEKDAY = 6


# --- checks: every problem, one line each --------------------------------------------------


def target_problems(
    image: str, namespace: str, working_dir: str = DEFAULT_WORKING_DIR
) -> list[str]:
    """Problems with --image, --namespace and --working-dir."""
    problems = []
    if not image or not image.strip():
        problems.append("image: is empty; give --image with an image that has agency-cron")
    elif not IMAGE.match(image) or len(_image_name(image)) > IMAGE_NAME_MAX:
        problems.append(
            f"image: {image!r} is not a valid image reference "
            "(expected [registry/]path[:tag][@digest], e.g. registry.example.com/ops/agency-cron:1.4)"
        )
    if not DNS_LABEL.match(namespace or "") or len(namespace) > NAMESPACE_MAX:
        problems.append(
            f"namespace: {namespace!r} is not a valid Kubernetes namespace (lowercase letters, "
            f"digits and '-', starting and ending with a letter or digit, at most {NAMESPACE_MAX})"
        )
    if not working_dir.startswith("/") or any(c in working_dir for c in "\n\r\0"):
        problems.append(
            f"working-dir: {shown(working_dir)} is not an absolute path (it must start with '/', "
            "on one line); give the folder inside the image, e.g. --working-dir /srv/agency"
        )
    return problems


def _image_name(image: str) -> str:
    """The repository part of a reference: no digest, no tag (a ':' after the last '/')."""
    name = image.split("@")[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def cronjob_names(task: Task) -> list[str]:
    """NAME for one schedule; NAME-0, NAME-1, ... for several."""
    if len(task.schedule) == 1:
        return [task.name]
    return [f"{task.name}-{index}" for index in range(len(task.schedule))]


def name_problems(task: Task) -> list[str]:
    if not DNS_LABEL.match(task.name):
        return [
            f"task {task.name}: name: {task.name!r} is not a valid Kubernetes name (lowercase "
            "letters, digits and '-', starting and ending with a letter or digit); rename the "
            "task: the export does not rewrite names, since two could end up the same"
        ]
    longest = cronjob_names(task)[-1]
    if len(longest) > CRONJOB_NAME_MAX:
        return [
            f"task {task.name}: name: the CronJob name {longest!r} has {len(longest)} characters; "
            f"Kubernetes allows {CRONJOB_NAME_MAX} (it adds 11 to name each Job); shorten the task name"
        ]
    return []


def schedule_problems(task: Task) -> list[str]:
    problems = []
    for expr in task.schedule:
        where = f"task {task.name}: schedule: {expr!r}"
        if expr == REBOOT:
            problems.append(
                f"{where}: a CronJob has no start-up trigger; run it from the image's entrypoint "
                "or an init container instead, or leave this task out of the export"
            )
        elif is_once(expr):
            problems.append(
                f"{where}: a one-time run is a Kubernetes Job, not a CronJob; create one at that "
                "time (kubectl create job) and leave this task out of the export"
            )
        elif is_interval(expr):
            problems.append(
                f"{where}: a CronJob fires at cron times, and cron cannot keep this interval; "
                "use a schedule cron can express (@every 15m, */10 * * * *)"
            )
        elif not expr.startswith("@") and _weekday_field(expr) is None:
            problems.append(
                f"{where}: Kubernetes reads day-of-week 0-6, and this field cannot be "
                "rewritten exactly (it starts with '*' while day-of-month is restricted); "
                "write Sunday as 0 or sun"
            )
    return problems


def leak_problems(task: Task, secrets: Iterable[str]) -> list[str]:
    """Fields that go into the ConfigMap or the CronJob in clear must hold no secret value."""
    problems = []
    for field in CLEAR_FIELDS:
        value = getattr(task, field) or ""
        if any(secret in value for secret in secrets):
            problems.append(f"task {task.name}: {clear_secret_problem(field)}")
    return problems


def collision_problems(tasks: list[Task]) -> list[str]:
    """NAME-0 of a task with several schedules may be the name of another task."""
    owner: dict[str, str] = {}
    problems = []
    for task in tasks:
        for name in cronjob_names(task):
            if name in owner:
                problems.append(
                    f"task {task.name}: name: the CronJob name {name!r} is also made for task "
                    f"{owner[name]}; rename one of them"
                )
            owner.setdefault(name, task.name)
    return problems


def configmap_problems(data: dict[str, str]) -> list[str]:
    size = sum(len(key.encode()) + len(value.encode()) for key, value in data.items())
    if size <= CONFIGMAP_MAX_BYTES:
        return []
    return [
        f"ConfigMap {SPECS_CONFIGMAP}: the task specs take {size} bytes; Kubernetes stores at "
        f"most {CONFIGMAP_MAX_BYTES}; move long scripts into the image and call them as commands"
    ]


# --- schedules ----------------------------------------------------------------------------


def k8s_schedule(expr: str) -> str:
    """The CronJob `schedule` for a normalised agency-cron schedule (not @reboot or once)."""
    if expr.startswith("@"):
        return expr  # the controller knows every nickname agency-cron accepts
    weekday = _weekday_field(expr)
    if weekday is None:
        raise ConfigError(f"schedule {expr!r}: day-of-week has no exact Kubernetes form")
    return " ".join([*expr.split(" ")[:4], weekday])


def _weekday_field(expr: str) -> str | None:
    """The day-of-week field of a 5-field expression, written so that robfig/cron reads it
    as Debian cron does; None if no exact form exists.

    Only a range end of 7 (Sunday) is out of robfig's range, and the fix is the field's day
    list. Both crons AND the two day fields when either starts with `*`, else OR them; the
    list never starts with `*`, so a `*` field (`*/2,7`) can only be rewritten when the
    day-of-month field starts with `*` and keeps the rule at AND.
    """
    fields = expr.split(" ")
    ends = [end for part in fields[4].split(",") for end in part.split("/")[0].split("-")]
    if not any(end.isdigit() and int(end) > ROBFIG_LAST_WEEKDAY for end in ends):
        return fields[4]
    if fields[4].startswith("*") and not fields[2].startswith("*"):
        return None
    from cronsim import CronSim

    # cronsim also models "nth weekday" as (day, n) pairs; Debian's forms have none.
    weekdays = CronSim(expr, GAP_START).weekdays
    days = sorted({day % 7 for day in weekdays if isinstance(day, int)})
    return ",".join(str(day) for day in days)


def starting_deadline(expr: str) -> int:
    """STARTING_DEADLINE_S, or less when two fire times can be closer than that."""
    from cronsim import CronSim

    fires = CronSim(cron_form(expr), GAP_START)
    previous = next(fires)
    shortest = STARTING_DEADLINE_S
    for _, current in zip(range(GAP_SAMPLES), fires, strict=False):
        shortest = min(shortest, int((current - previous).total_seconds()))
        if shortest <= 60:  # cron's resolution: nothing can be closer
            break
        previous = current
    return shortest


# --- deadlines ----------------------------------------------------------------------------


def pod_deadline(task: Task, settings: Settings) -> int:
    """Per attempt: the runner's timeout, its kill grace, an alert, its pings (when it
    pings) and a start-up margin. The runner in the pod does not retry (backoffLimit does)."""
    pings = settings.ping_timeout if render.ping_url(task, settings) else 0.0
    bound = timing.run_bound(
        task.timeout,
        0,
        task.retry_delay,
        task.retry_backoff,
        task.retry_max_delay,
        settings.alert_timeout,
        pings,
    )
    return bound + START_MARGIN_S


def job_deadline(task: Task, settings: Settings) -> int:
    """Every attempt, the Job controller's back-off between them, and time to get scheduled."""
    backoff = sum(
        min(BACKOFF_FIRST_S * 2 ** min(retry, 10), BACKOFF_MAX_S) for retry in range(task.retries)
    )
    return (task.retries + 1) * pod_deadline(task, settings) + backoff + PENDING_ALLOWANCE_S


# --- the fleet history --------------------------------------------------------------------


def fleet_history_url(settings: Settings) -> str | None:
    """HISTORY_URL when it names PostgreSQL (the history every pod shares); None when it is
    unset or SQLite (each pod keeps its own, see the module doc)."""
    return settings.history_url


def fleet_secrets(settings: Settings) -> list[str]:
    """The fleet history URL and its password: values that must stay out of the ConfigMap
    and the CronJobs (a task env that holds one comes from the Secret too)."""
    url = fleet_history_url(settings)
    return worth_masking([url, *password_of_url(url)]) if url else []


def fleet_env() -> dict[str, dict]:
    """The runner's fleet history URL from the Secret, and the node as its host name."""
    return {
        # Not optional: a Job that cannot reach the fleet history must not start as if it could.
        HISTORY_ENV: _secret_ref(HISTORY_ENV, HISTORY_KEY, optional=False),
        HOST_ENV: {"name": HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    }


# --- env and spec -------------------------------------------------------------------------


def secret_names(task: Task, secrets: Iterable[str]) -> set[str]:
    """Env variables that must come from the Secret: secret names, or a secret inside."""
    secrets = list(secrets)
    return {
        key
        for key, value in task.env.items()
        if is_secret_name(key) or key == ALERT_URLS or any(s in value for s in secrets)
    }


def container_env(task: Task, settings: Settings, hidden: set[str]) -> list[dict]:
    """What the wrapper exports on a host, then the task's env; secrets by reference."""
    env: dict[str, dict] = {}

    def plain(key: str, value: str) -> None:
        env[key] = {"name": key, "value": value}

    plain("AGENCY_CRON_SCHEDULED", "no")  # Kubernetes did the scheduling (see module doc)
    plain("AGENCY_ROOT", str(settings.agency_root))
    plain("LOG_DIR", LOG_DIR)
    plain("STATE_DIR", STATE_DIR)
    for key, value in sorted(task.env.items()):
        if key in hidden:
            env[key] = _secret_ref(key, key, optional=False)
        else:
            plain(key, value)
    if task.alert != "never":
        key = f"{ALERT_URLS}.{task.name}" if task.alert_urls else ALERT_URLS
        # Optional: a cluster without alerting needs no Secret key for it.
        env[ALERT_URLS] = _secret_ref(ALERT_URLS, key, optional=True)
    if render.ping_url(task, settings):
        # Optional too: a missing key only means no pings, never a pod that cannot start.
        env[PING_ENV] = _secret_ref(PING_ENV, f"PING_URL.{task.name}", optional=True)
    if fleet_history_url(settings):
        for key, item in fleet_env().items():  # over the task's: it cannot redirect them
            env.pop(key, None)
            env[key] = item
    return list(env.values())


def _secret_ref(name: str, key: str, optional: bool) -> dict:
    ref: dict[str, str | bool] = {"name": SECRET, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def task_spec(
    task: Task,
    settings: Settings,
    enabled: bool,
    hidden: set[str],
    working_dir: str = DEFAULT_WORKING_DIR,
) -> dict:
    """render.spec() for the container: no secrets, container paths, Kubernetes retries."""
    spec = render.spec(task, settings, enabled)
    spec.pop("secrets", None)  # the list is the secret values themselves
    spec.pop("ping_url", None)  # its check UUID or ping key: from the Secret (container_env)
    spec.pop("history_url", None)  # its password: from the Secret (fleet_env)
    spec.pop("host", None)  # the exporting machine's name; the pod's is AGENCY_CRON_HOST
    spec.pop("history_db", None)  # a path of the exporting host; the pod records in its state_dir
    spec.update(
        env={key: value for key, value in spec["env"].items() if key not in hidden},
        working_dir=task.working_dir or working_dir,
        log=f"{LOG_DIR}/{task.log_name}",
        log_dir=LOG_DIR,
        state_dir=STATE_DIR,
        retries=0,
        alert_urls=[],
        jitter=0,
    )
    return spec


# --- documents ----------------------------------------------------------------------------


def _metadata(name: str, namespace: str, task: Task | None = None, notes=None) -> dict:
    labels = dict(LABELS)
    if task is not None:
        labels[TASK_LABEL] = task.name
    meta = {"name": name, "namespace": namespace, "labels": labels}
    if notes:
        meta["annotations"] = notes
    return meta


def annotations(task: Task) -> dict[str, str]:
    """Plain-English notes on what does not carry over exactly."""
    notes = {}
    if task.description:
        notes["agency-cron/description"] = task.description
    if task.overlap == "wait":
        notes["agency-cron/overlap-note"] = (
            "overlap: wait has no Kubernetes equivalent (a CronJob cannot queue a run behind "
            "the previous one); concurrencyPolicy Forbid skips the run instead"
        )
    if task.retries:
        notes["agency-cron/retry-note"] = (
            "retry_delay does not carry over: Kubernetes starts each retry after 10s, 20s, "
            "40s... (at most 6 minutes)"
        )
    if task.jitter:
        notes["agency-cron/jitter-note"] = (
            f"jitter ({task.jitter}s) is not applied: a CronJob has no random start delay"
        )
    if task.user:
        notes["agency-cron/user-note"] = (
            f"user {task.user} does not carry over: the pod runs as the image's user"
        )
    return notes


def pod_spec(task: Task, settings: Settings, image: str, hidden: set[str]) -> dict:
    key = f"{task.name}.json"
    return {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": pod_deadline(task, settings),
        "containers": [
            {
                "name": "task",
                "image": image,
                "command": ["python3", "-m", "agency_cron.runner", f"{SPEC_DIR}/{key}"],
                "env": container_env(task, settings, hidden),
                "volumeMounts": [
                    {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
                    {"name": "logs", "mountPath": LOG_DIR},
                    {"name": "state", "mountPath": STATE_DIR},
                ],
            }
        ],
        "volumes": [
            {
                "name": "spec",
                "configMap": {"name": SPECS_CONFIGMAP, "items": [{"key": key, "path": key}]},
            },
            {"name": "logs", "emptyDir": {}},
            {"name": "state", "emptyDir": {}},
        ],
    }


@dataclass(frozen=True)
class Target:
    """Where and with what the CronJobs run."""

    settings: Settings
    image: str
    namespace: str


def cronjob(task: Task, index: int, enabled: bool, target: Target, hidden: set[str]) -> dict:
    """The CronJob of schedule number `index` of `task`."""
    expr = task.schedule[index]
    labels = {**LABELS, TASK_LABEL: task.name}
    spec = {
        "schedule": k8s_schedule(expr),
        # Only when set: without it the controller's zone applies (cron: the host's).
        **({"timeZone": task.timezone} if task.timezone else {}),
        "concurrencyPolicy": CONCURRENCY[task.overlap],
        "startingDeadlineSeconds": starting_deadline(expr),
        "suspend": not enabled,
        "successfulJobsHistoryLimit": SUCCESSFUL_HISTORY,
        "failedJobsHistoryLimit": FAILED_HISTORY,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": task.retries,
                "activeDeadlineSeconds": job_deadline(task, target.settings),
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod_spec(task, target.settings, target.image, hidden),
                },
            },
        },
    }
    name = cronjob_names(task)[index]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(name, target.namespace, task, annotations(task)),
        "spec": spec,
    }


def _spec_text(spec: dict) -> str:
    # The format of render.spec_text, so a spec reads the same on a host and in the cluster.
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def cronjobs(
    settings: Settings,
    tasks_with_enabled: list[tuple[Task, bool]],
    image: str,
    namespace: str,
    working_dir: str = DEFAULT_WORKING_DIR,
) -> list[dict]:
    """The ConfigMap of specs, then each task's CronJobs in manifest order; `working_dir`
    for the tasks that set none.

    Raises ConfigError with every problem (one line each) before building anything.
    """
    tasks = [task for task, _ in tasks_with_enabled]
    fleet = fleet_secrets(settings)
    secrets = {task.name: [*render.redaction_list(task, settings), *fleet] for task in tasks}
    problems = target_problems(image, namespace, working_dir)
    for task in tasks:
        problems += name_problems(task) + schedule_problems(task)
        problems += leak_problems(task, secrets[task.name])
    problems += collision_problems(tasks)
    if problems:
        raise ConfigError(*problems)
    if not tasks:
        return []
    hidden = {task.name: secret_names(task, secrets[task.name]) for task in tasks}
    data = {
        f"{task.name}.json": _spec_text(
            task_spec(task, settings, enabled, hidden[task.name], working_dir)
        )
        for task, enabled in tasks_with_enabled
    }
    if problems := configmap_problems(data):
        raise ConfigError(*problems)
    documents = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(SPECS_CONFIGMAP, namespace),
            "data": data,
        }
    ]
    target = Target(settings, image, namespace)
    for task, enabled in tasks_with_enabled:
        for index in range(len(task.schedule)):
            documents.append(cronjob(task, index, enabled, target, hidden[task.name]))
    return documents


# --- YAML ---------------------------------------------------------------------------------


def _dumper():
    """A SafeDumper that writes multi-line strings (specs, scripts) as `|` blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:
            return True  # `&id001` anchors are legal but baffle readers and some tools

    def text(dumper, value: str):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def required_secret_keys(documents: list[dict]) -> list[tuple[str, bool]]:
    """(key, optional) for every key of the Secret that the CronJobs reference."""
    found: dict[str, bool] = {}
    for document in documents:
        if document["kind"] != "CronJob":
            continue
        pod = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for item in pod["containers"][0]["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found[ref["key"]] = found.get(ref["key"], True) and ref.get("optional", False)
    return sorted(found.items())


def _header(documents: list[dict], namespace: str) -> str:
    count = sum(document["kind"] == "CronJob" for document in documents)
    lines = [f"# agency-cron export kubernetes: {count} CronJob(s) in namespace {namespace}."]
    keys = required_secret_keys(documents)
    if keys:
        listed = ", ".join(f"{key}{' (optional)' if optional else ''}" for key, optional in keys)
        lines += [
            f"# They read Secret {SECRET} (not exported: it holds the values): {listed}",
            f"#   kubectl -n {namespace} create secret generic {SECRET} --from-literal=KEY=VALUE ...",
        ]
    return "\n".join(lines) + "\n"


def export(
    settings: Settings,
    tasks_with_enabled: list[tuple[Task, bool]],
    image: str,
    namespace: str,
    working_dir: str = DEFAULT_WORKING_DIR,
) -> str:
    """cronjobs() as multi-document YAML, each document starting with `---`."""
    import yaml

    documents = cronjobs(settings, tasks_with_enabled, image, namespace, working_dir)
    body = yaml.dump_all(
        documents,
        Dumper=_dumper(),
        sort_keys=False,
        explicit_start=True,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,  # long commands stay on one line
    )
    return _header(documents, namespace) + body
