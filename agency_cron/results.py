"""Typed results: what the read commands return, each shape written once.

reports.py (and admin.py, launch.py) build these frozen dataclasses; the CLI's tables take
their columns from them; the admin API's response models are built from their fields
(serve/app.py, `model_of`); `--json` and the API print them through `enveloped`/`to_json`,
the one place that turns a result into JSON. Standard library only, and nothing heavier
than dataclasses: the read commands import this on their quick path.

The JSON envelope: every `--json` output carries `"version": SCHEMA_VERSION`. An object
carries it at the top; a list (list, status, history: CONTRACT.md promises a list of rows)
stays a list, and each of its rows carries it.

Statuses and states are typed `str` here (the vocabulary is statuses.py; the API narrows
them to its Literal types).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TaskListRow:
    """`list`: one task as the manifest and the local overrides have it."""

    name: str
    schedule: list[str]
    enabled: bool
    next_run: str | None  # ISO 8601 in the task's zone; None when disabled or done
    description: str
    tags: list[str]
    override: str | None  # "disabled"/"enabled" where a local choice differs from the manifest


@dataclass(frozen=True)
class TaskStatus:
    """`status`: a task's state and its figures from history."""

    name: str
    state: str  # running, completed, disabled, failing, ok, never-run
    runs: int
    successes: int
    failures: int
    last_run: str | None
    last_success: str | None
    last_failure: str | None
    last_error: str | None
    last_status: str | None  # a statuses.ALL name
    next_run: str | None
    override: str | None
    ping: bool  # whether the task's runs ping (ping_url, else PING_URL)
    last_ping: str | None  # the newest final ping's outcome, None before the first
    host: str = "all"  # the scope shown (`--host`): a host's name, or "all" (the fleet)
    hosts: list[str] = field(default_factory=list)  # the hosts that ran it, sorted


@dataclass(frozen=True)
class RunRow:
    """`history` and the API's executions: one attempt of a run."""

    run_id: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    exit_code: int | None
    status: str  # a statuses.ALL name
    attempt: int
    attempts: int
    note: str | None
    alert: str | None
    ping: str | None = None  # the outcome of the attempt's final heartbeat ping (ping.py)
    host: str | None = None  # the host that ran it (HOST_NAME there)


@dataclass(frozen=True)
class RunAttempt(RunRow):
    """A RunRow with its task and output tail (the API's run view, admin.get_run)."""

    task: str = ""
    output_tail: str | None = None


@dataclass(frozen=True)
class RunDetail:
    """The API's GET /api/runs/RUN_ID: every attempt of one run and its log lines."""

    run_id: str
    task: str
    status: str
    exit_code: int | None
    started_at: str
    finished_at: str | None
    attempts: list[RunRow]
    log: str
    log_excerpt: list[str]


@dataclass(frozen=True)
class SummaryRow:
    """`log-summary`: one task over the window."""

    name: str
    last_run: str | None
    last_status: str | None
    last_duration_s: float | None
    last_exit_code: int | None
    runs: int
    failures: int
    skipped: int
    last_error: list[str]  # the last failure's last lines
    last_success: str | None
    next_run: str | None
    enabled: bool
    overdue: bool
    hosts: list[str] = field(default_factory=list)  # the hosts that ran it in the window


@dataclass(frozen=True)
class Summary:
    """`log-summary`: the window and a row per task, over the hosts of `host`."""

    generated_at: str
    since: str
    tasks: list[SummaryRow]
    host: str = "all"  # the scope shown (`--host`): a host's name, or "all" (the fleet)


@dataclass(frozen=True)
class Overdue:
    """`health`: an enabled task with no success within its expected interval."""

    name: str
    last_success: str | None
    reason: str
    hosts: list[str] = field(default_factory=list)  # the late hosts of a host-scoped task


@dataclass(frozen=True)
class Ended:
    """`kill`: one run in progress that was ended."""

    run_id: str
    pid: int | None  # its runner, None for the processes a dead runner left
    stopped: bool  # False when the wait ran out and the tree is still ending


@dataclass(frozen=True)
class Started:
    """A run started now in the background (`run --detach`, the API's run action)."""

    task: str
    run_id: str
    pid: int  # the runner's


@dataclass(frozen=True)
class PlanRow:
    """`install`/`uninstall`: one line of the plan (plan.Row), in `--json`'s `rows`."""

    item: str
    kind: str  # "task" or "file"
    action: str  # added, changed, removed, unchanged
    detail: str = ""


@dataclass(frozen=True)
class TaskView:
    """The API's task: its definition (secrets masked) and its state (admin.describe)."""

    name: str
    description: str
    schedule: list[str]
    enabled: bool
    tags: list[str]
    state: str
    next_run: str | None
    last_run: str | None
    last_status: str | None
    source: str  # "manifest" or "api"
    read_only: bool
    definition: dict


def names(cls) -> tuple[str, ...]:
    """The field names of a result class, in order (table columns, API models)."""
    return tuple(f.name for f in fields(cls))


def plain(value):
    """A result (or lists and dicts of them) as plain lists and dicts, ready for JSON."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def enveloped(value):
    """The `--json` form of a result: an object gets `version` at the top (one it has of
    its own stays), each row of a list gets it (the list stays a list)."""
    data = plain(value)
    if isinstance(data, dict):
        return {"version": SCHEMA_VERSION, **data}
    if isinstance(data, list):
        return [
            {"version": SCHEMA_VERSION, **row} if isinstance(row, dict) else row for row in data
        ]
    return data


def to_json(value) -> str:
    """What `--json` prints (any path: the CLI or a quicker one): enveloped, indented."""
    import json

    return json.dumps(enveloped(value), indent=2, default=str) + "\n"
