"""The admin API against its own OpenAPI description, with schemathesis.

A real `agency-cron serve` runs on a throwaway installation (module scoped), and the
`schemathesis run` CLI reads its /openapi.json and generates requests for every operation
from it, with the admin token: the description's examples, its coverage cases (boundaries,
missing and wrong-typed values), Hypothesis fuzzing, and stateful sequences along the
links it infers (create a task, then read, change, pause, run and delete it). No response
may be a 5xx, and each one's status code, content type and body must be ones the
description documents.

The run is deterministic (--generation-deterministic: derandomized, no example database),
sequential (one worker, so the server sees the same requests in the same order) and
bounded: at most MAX_EXAMPLES fuzzed cases per operation.

Why the CLI and not schemathesis' pytest integration: a schema loaded from a live server
needs `schemathesis.pytest.from_fixture`, and that (schemathesis 4.32) sets
`request.node._nodeid`, which pytest 9 no longer has; the CLI is what users run anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

# Redefined here: tests cannot import conftest under importlib mode.
ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
MAX_EXAMPLES = 25
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
RUN_TIMEOUT = 300  # seconds; the run takes well under a minute
# Schedules far apart, and freshly installed: no task is overdue while the run lasts, so
# GET /api/health answers 200 (its 503 is documented, but not_a_server_error counts it).
MANIFEST = """\
tasks:
  - name: nightly
    description: The operator's own task
    schedule: "0 3 * * *"
    command: echo nightly
    tags: [ops]
  - name: hourly
    schedule: "@hourly"
    command: echo hourly
    tags: [ops, reports]
"""
CLEARED = ("AGENCY_CRON_CONFIG", "AGENCY_CRON_MANIFEST", "CRONTAB", "AGENCY_ROOT")


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory, serving, make_env):
    """`agency-cron serve` on a throwaway installation for the whole module: its URL and
    the file its output goes to."""
    tmp = tmp_path_factory.mktemp("schema")
    site = make_env(
        tmp / "site",
        config=f"ADMIN_TOKEN={ADMIN_TOKEN}\nADMIN_READ_TOKEN={READ_TOKEN}\n",
        manifest=MANIFEST,
    )
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ.update(NO_COLOR="1", XDG_CACHE_HOME=str(tmp / "cache"))
    options = site.args()
    installed = site.process("install", environ=environ, cwd=tmp)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    with serving(options, site.root / "serve.log", environ=environ, cwd=tmp) as server:
        yield server.url, server.log


def schemathesis_run(url: str, workdir: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`schemathesis run` as a user would type it; returns the process and its JSON report."""
    report = workdir / "schemathesis-report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    # cwd: no schemathesis.toml of the checkout is picked up, nothing is written there.
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**environ, "NO_COLOR": "1"},
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert report.is_file(), f"no report from schemathesis:\n{result.stdout}\n{result.stderr}"
    return result, json.loads(report.read_text())


def test_every_response_is_one_the_description_documents(schema_server, tmp_path):
    url, log = schema_server
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    operations = [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    ]
    assert len(operations) >= 15, operations

    result, report = schemathesis_run(url, tmp_path)
    output = f"{result.stdout}\n{result.stderr}\n--- server log ---\n{log.read_text()[-20000:]}"
    assert result.returncode == 0, output
    assert report["complete"] and report["exit_code"] == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    # Every operation of the description was tested, in every phase.
    assert report["operations"]["total"] == len(operations), report["operations"]
    assert report["operations"]["tested"] == len(operations), report["operations"]
    assert report["operations"]["errored"] == 0, report["operations"]
    for phase, outcome in report["phases"].items():
        assert outcome["status"] == "success", (phase, outcome, output)
    cases = report["test_cases"]
    assert cases["generated"] >= 10 * len(operations), cases
    assert cases["with_failures"] == 0 and cases["errored"] == 0, (cases, output)
    # A 500's trace goes to the server's log; none may be there either.
    assert "Traceback" not in log.read_text(errors="replace"), output


def test_the_task_body_documents_every_task_field(schema_server):
    """POST and PUT /api/tasks take a task as the manifest writes it: /openapi.json names
    every field of the manifest's Task (with what it means), and GET's `definition` too."""
    from agency_cron.manifest import DURATION_FIELDS, Task

    url, _ = schema_server
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    every_field = set(Task.model_fields)
    assert {"name", "schedule", "command", "timeout", "env", "ping_url"} <= every_field
    for method in ("post", "put"):
        path = "/api/tasks" if method == "post" else "/api/tasks/{name}"
        body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
        reference = body["schema"]["$ref"]  # one component, for both methods
        assert reference == "#/components/schemas/TaskDocument"
        schema = spec["components"]["schemas"]["TaskDocument"]
        assert set(schema["properties"]) == every_field, method
        assert schema["additionalProperties"] is False
        assert schema["required"] == ["name", "schedule"]
        for key, field in schema["properties"].items():
            assert field.get("description"), key
        # Durations as the manifest writes them, not the seconds the model stores.
        for key in DURATION_FIELDS:
            assert "string" in json.dumps(schema["properties"][key]), key
        assert schema["properties"]["timeout"]["default"] == "30m"
    definition = spec["components"]["schemas"]["TaskView"]["properties"]["definition"]
    assert set(definition["properties"]) == every_field


def test_a_body_the_schema_refuses_still_gets_the_manifests_messages(schema_server):
    """The schema documents; the manifest validates: one problem per field, 422."""
    url, _ = schema_server
    response = httpx.post(
        f"{url}/api/tasks",
        json={"name": "bad-body", "schedule": "61 * * * *", "command": "true", "timout": "5m"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert len(errors) == 2, errors
    assert any("timout: unknown key (did you mean 'timeout'?)" in e for e in errors), errors
    assert any(": schedule: " in e for e in errors), errors
