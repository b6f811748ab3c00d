"""The admin API over HTTP, for real: `agency-cron serve` as a uvicorn process on 127.0.0.1.

Every test drives the `api` (or `make_server`) server of tests/integration/conftest.py: a
throwaway installation with a `file:` crontab holding a foreign line, a real SQLite history
and real runner processes. Nothing is mocked. Waits poll with a deadline so that a hang
fails instead of hanging; no test asserts that anything is fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

# The same values as tests/integration/conftest.py (conftest cannot be imported here).
ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
FOREIGN = "# someone else's\n0 4 * * * /usr/local/bin/report > /dev/null 2>&1\n"
MARKER = "# agency-cron:"
WAIT_S = 30  # the bound on every poll
FINAL = {"success", "failed", "timeout", "skipped", "killed"}
PROBLEM = "application/problem+json"
CLIENT = re.compile(r"^127\.0\.0\.1:\d+$")


# --------------------------------------------------------------------------- helpers


def task_body(name: str, command: str = "true", **fields) -> dict:
    return {"name": name, "schedule": "*/10 * * * *", "command": command, **fields}


def wrapper(env, name: str) -> Path:
    return env.agency_root / "scripts" / "cronjobs" / f"{name}.sh"


def api_file(env, name: str) -> Path:
    return env.state_dir / "api" / "tasks" / f"{name}.json"


def spec_file(env, name: str) -> Path:
    return env.state_dir / "tasks" / f"{name}.json"


def audit_path(env) -> Path:
    return env.state_dir / "api" / "audit.log"


def audit_entries(env) -> list[dict]:
    path = audit_path(env)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def lines_of(env, name: str) -> list[str]:
    """The crontab's managed lines for task `name`."""
    return [line for line in env.crontab.read_text().splitlines() if line.endswith(MARKER + name)]


def assert_foreign_intact(env) -> None:
    text = env.crontab.read_text()
    assert text.startswith(FOREIGN), text
    others = "".join(line + "\n" for line in text.splitlines() if MARKER not in line)
    assert others == FOREIGN


def api_folder(env, with_audit: bool = True) -> dict[str, tuple[bytes, int]]:
    """Every file under STATE_DIR/api with its bytes and mode."""
    root = env.state_dir / "api"
    found = {}
    if root.exists():
        for path in sorted(root.rglob("*")):
            if path.is_file() and (with_audit or path.name != "audit.log"):
                found[str(path)] = (path.read_bytes(), path.stat().st_mode)
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def create(client: httpx.Client, body: dict) -> dict:
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(what: str, probe, seconds: float = WAIT_S):
    """Call `probe` until it returns something truthy; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds}s (last: {last!r})")


def final_run(client: httpx.Client, run_id: str, attempts: int = 1) -> dict:
    """GET /api/runs/ID once the run has `attempts` attempts and a final status."""

    def probe():
        response = client.get(f"/api/runs/{run_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        run = response.json()
        done = run["status"] in FINAL and len(run["attempts"]) >= attempts
        return run if done else None

    return wait_for(f"run {run_id} finished", probe)


def run_now(client: httpx.Client, name: str) -> str:
    response = client.post(f"/api/tasks/{name}/actions/run")
    assert response.status_code == 202, response.text
    started = response.json()
    assert re.fullmatch(r"[0-9a-f]{12}", started["run_id"])
    assert started["task"] == name
    assert started["run_url"] == f"/api/runs/{started['run_id']}"
    return started["run_id"]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "Traceback" not in response.text
    problem = response.json()
    assert problem["status"] == status
    assert problem["detail"]
    return problem


def raw_status(url: str, method: str, path: str) -> int:
    """Send a request line as written (httpx would remove `..` segments); its status code."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode()
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- 1. listing


def test_list_tasks_filters_and_pages(api, cli_process):
    env = api.env
    with api.client() as client:
        response = client.get("/api/tasks")
        assert response.status_code == 200, response.text
        page = response.json()
        assert [item["name"] for item in page["items"]] == ["nightly", "hourly"]
        assert (page["total"], page["limit"], page["offset"]) == (2, 50, 0)
        for item in page["items"]:
            assert item["source"] == "manifest"
            assert item["read_only"] is True
            assert item["enabled"] is True
            assert item["state"] == "never-run"
        nightly = page["items"][0]
        assert nightly["description"] == "The operator's own task"
        assert nightly["schedule"] == ["0 3 * * *"]
        assert nightly["tags"] == ["ops"]
        assert nightly["definition"]["command"] == "echo nightly"

        tagged = client.get("/api/tasks", params={"tag": "reports"}).json()
        assert [item["name"] for item in tagged["items"]] == ["hourly"]
        assert tagged["total"] == 1
        both = client.get("/api/tasks", params={"tag": "ops"}).json()
        assert [item["name"] for item in both["items"]] == ["nightly", "hourly"]
        assert client.get("/api/tasks", params={"tag": "nope"}).json()["total"] == 0

        result = cli_process(*env.args("disable", "hourly"))
        assert result.returncode == 0, result.stderr
        disabled = client.get("/api/tasks", params={"state": "disabled"}).json()
        assert [item["name"] for item in disabled["items"]] == ["hourly"]
        assert disabled["items"][0]["enabled"] is False
        never = client.get("/api/tasks", params={"state": "never-run"}).json()
        assert [item["name"] for item in never["items"]] == ["nightly"]
        assert client.get("/api/tasks", params={"state": "failing"}).json()["total"] == 0
        assert_problem(client.get("/api/tasks", params={"state": "bogus"}), 422)

        first = client.get("/api/tasks", params={"limit": 1}).json()
        assert [item["name"] for item in first["items"]] == ["nightly"]
        assert (first["total"], first["limit"], first["offset"]) == (2, 1, 0)
        second = client.get("/api/tasks", params={"limit": 1, "offset": 1}).json()
        assert [item["name"] for item in second["items"]] == ["hourly"]
        assert (second["total"], second["limit"], second["offset"]) == (2, 1, 1)
        past = client.get("/api/tasks", params={"offset": 5}).json()
        assert (past["items"], past["total"]) == ([], 2)
        assert_problem(client.get("/api/tasks", params={"limit": 0}), 422)

    with api.client(READ_TOKEN) as reader:
        assert reader.get("/api/tasks").json()["total"] == 2
    with api.client(None) as anonymous:
        assert_problem(anonymous.get("/api/tasks"), 401)


# --------------------------------------------------------------------------- 2. create


def test_create_task_writes_file_line_and_survives_install(api, cli_process):
    env = api.env
    body = task_body("api-job", "echo from-the-api", tags=["api"], description="made over HTTP")
    with api.client() as client:
        response = client.post("/api/tasks", json=body)
        assert response.status_code == 201, response.text
        assert response.headers["location"] == "/api/tasks/api-job"
        created = response.json()
        assert created["name"] == "api-job"
        assert created["source"] == "api"
        assert created["read_only"] is False
        assert created["schedule"] == ["*/10 * * * *"]
        assert created["tags"] == ["api"]
        assert created["description"] == "made over HTTP"

        path = api_file(env, "api-job")
        assert path.is_file()
        assert mode(path) == 0o600
        assert json.loads(path.read_text()) == body
        expected = f"*/10 * * * * {wrapper(env, 'api-job')} # agency-cron:api-job"
        assert lines_of(env, "api-job") == [expected]
        assert wrapper(env, "api-job").is_file()
        assert spec_file(env, "api-job").is_file()
        assert_foreign_intact(env)

        listed = cli_process(*env.args("list", "--json"))
        assert listed.returncode == 0, listed.stderr
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
        assert set(rows) == {"nightly", "hourly", "api-job"}
        assert rows["api-job"]["schedule"] == ["*/10 * * * *"]
        assert rows["api-job"]["enabled"] is True

        again = cli_process(*env.args("install"))
        assert again.returncode == 0, again.stderr
        assert lines_of(env, "api-job") == [expected]
        assert_foreign_intact(env)

        assert client.get("/api/tasks/api-job").json()["source"] == "api"
        names = [item["name"] for item in client.get("/api/tasks").json()["items"]]
        assert names == ["nightly", "hourly", "api-job"]

        before = (env.crontab.read_bytes(), api_folder(env, with_audit=False))
        problem = assert_problem(client.post("/api/tasks", json=body), 409)
        assert "api-job" in problem["detail"]
        problem = assert_problem(client.post("/api/tasks", json=task_body("nightly")), 409)
        assert "nightly" in problem["detail"]
        assert (env.crontab.read_bytes(), api_folder(env, with_audit=False)) == before

    with api.client(READ_TOKEN) as reader:
        assert_problem(reader.post("/api/tasks", json=task_body("by-reader")), 403)
    assert not api_file(env, "by-reader").exists()


# --------------------------------------------------------------------------- 3. bad input


BAD_TASKS = [
    {"name": "bad-date", "schedule": "0 0 31 2 *", "command": "true"},
    {"name": "bad-key", "schedule": "0 1 * * *", "comand": "true"},
    {"name": "bad-both", "schedule": "0 0 31 2 *", "comand": "true", "retries": -1},
]


@pytest.mark.parametrize("body", BAD_TASKS, ids=[b["name"] for b in BAD_TASKS])
def test_refused_task_gets_the_validate_messages_and_changes_nothing(
    api, cli_process, tmp_path, body
):
    env = api.env
    name = body["name"]
    crontab_before = env.crontab.read_bytes()
    folder_before = api_folder(env, with_audit=False)

    with api.client() as client:
        response = client.post("/api/tasks", json=body)
    problem = assert_problem(response, 422)
    assert "Traceback" not in json.dumps(problem)
    assert problem["detail"] == problem["errors"][0]

    # The same task as a manifest file of its own, through `agency-cron validate`.
    manifest = tmp_path / f"{name}.json"
    manifest.write_text(json.dumps(body))
    result = cli_process("--config", str(env.config), "--manifest", str(manifest), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    cli_prefix = f"agency-cron: error: {manifest}: "
    printed = result.stderr.splitlines()
    assert printed and all(line.startswith(cli_prefix) for line in printed), printed
    api_prefix = f"{api_file(env, name)}: "
    assert all(message.startswith(api_prefix) for message in problem["errors"]), problem
    assert [m.removeprefix(api_prefix) for m in problem["errors"]] == [
        line.removeprefix(cli_prefix) for line in printed
    ]

    assert env.crontab.read_bytes() == crontab_before
    assert api_folder(env, with_audit=False) == folder_before
    assert not api_file(env, name).exists()
    assert not spec_file(env, name).exists()
    assert not wrapper(env, name).exists()


def test_refused_messages_name_the_field(api):
    with api.client() as client:
        date = client.post("/api/tasks", json=BAD_TASKS[0]).json()["errors"]
        key = client.post("/api/tasks", json=BAD_TASKS[1]).json()["errors"]
    assert any("schedule" in message for message in date), date
    assert any("comand" in message and "unknown key" in message for message in key), key


@pytest.mark.parametrize("body", [[1, 2], "a string", 42, None, True])
def test_body_that_is_not_an_object_is_refused(api, body):
    env = api.env
    before = (env.crontab.read_bytes(), api_folder(env))
    with api.client() as client:
        assert_problem(client.post("/api/tasks", json=body), 422)
        assert_problem(client.put("/api/tasks/nightly", json=body), 422)
        broken = client.post(
            "/api/tasks", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_problem(broken, 422)
    assert (env.crontab.read_bytes(), api_folder(env)) == before


@pytest.mark.parametrize(
    "name", ["bad name", "..", "../etc", "a/b", "-leading", "", "x" * 65, 7, None]
)
def test_body_name_that_cannot_be_a_task_name_is_refused(api, name):
    env = api.env
    before = (env.crontab.read_bytes(), api_folder(env, with_audit=False))
    body = {"schedule": "0 1 * * *", "command": "true"}
    if name is not None:
        body["name"] = name
    with api.client() as client:
        problem = assert_problem(client.post("/api/tasks", json=body), 422)
    assert "name" in problem["detail"]
    assert (env.crontab.read_bytes(), api_folder(env, with_audit=False)) == before
    assert not list((env.state_dir / "api").glob("**/*.json"))
    # The refusal itself is audited.
    entry = json.loads((env.state_dir / "api" / "audit.log").read_text().splitlines()[-1])
    assert (entry["action"], entry["outcome"]) == ("create", "refused")


URL_NAMES = [
    "%2E%2E",
    "..%2F..%2Fetc%2Fpasswd",
    "a%2Fb",
    "%2Fetc%2Fpasswd",
    "bad%20name",
    "bad%00name",
    "na%24me",
    "-dash",
    "x" * 65,
]


@pytest.mark.parametrize("name", URL_NAMES)
def test_url_name_that_cannot_be_a_task_name_is_refused(api, name):
    env = api.env
    before = (env.crontab.read_bytes(), api_folder(env))
    requests = [
        ("GET", f"/api/tasks/{name}"),
        ("PUT", f"/api/tasks/{name}"),
        ("DELETE", f"/api/tasks/{name}"),
        ("GET", f"/api/tasks/{name}/executions"),
        ("POST", f"/api/tasks/{name}/actions/run"),
        ("POST", f"/api/tasks/{name}/actions/pause"),
        ("POST", f"/api/tasks/{name}/actions/resume"),
        ("POST", f"/api/tasks/{name}/actions/reset-retries"),
    ]
    with api.client() as client:
        for method, path in requests:
            body = task_body("nightly") if method == "PUT" else None
            response = client.request(method, path, json=body)
            assert response.status_code in (400, 404), (method, path, response.text)
            assert "Traceback" not in response.text
    assert (env.crontab.read_bytes(), api_folder(env)) == before


@pytest.mark.parametrize("path", ["/api/tasks/..", "/api/tasks/../../etc", "/api/tasks/./.."])
def test_raw_dot_segments_in_the_url_are_refused(api, path):
    """The request line as a client could send it (httpx itself removes `..` segments)."""
    env = api.env
    before = (env.crontab.read_bytes(), api_folder(env))
    requests = [(method, path) for method in ("GET", "PUT", "DELETE")]
    requests += [("POST", f"{path}/actions/{action}") for action in ("run", "pause", "resume")]
    for method, target in requests:
        status = raw_status(api.url, method, target)
        assert status in (400, 404), (method, target, status)
    assert (env.crontab.read_bytes(), api_folder(env)) == before


# --------------------------------------------------------------------------- 4. get/put/delete


SECRET = "s3cr3t-value-0123456789"


def test_get_put_round_trip_and_secrets(api):
    env = api.env
    body = task_body(
        "edit-me",
        "echo $GREETING",
        timeout="30s",
        retries=2,
        retry_delay="10m",
        env={"API_TOKEN": SECRET, "DB_PASSWORD": SECRET + "-pw", "GREETING": "hello"},
    )
    with api.client() as client:
        create(client, body)
        shown = client.get("/api/tasks/edit-me")
        assert shown.status_code == 200, shown.text
        view = shown.json()
        assert SECRET not in shown.text
        definition = view["definition"]
        assert definition["timeout"] == "30s"
        assert definition["retry_delay"] == "10m"  # an API task is shown as it was sent
        assert definition["env"] == {"API_TOKEN": "***", "DB_PASSWORD": "***", "GREETING": "hello"}
        assert definition["schedule"] == "*/10 * * * *"

        # What GET shows goes back with PUT as it is, and changes nothing.
        line = lines_of(env, "edit-me")
        sent_back = client.put("/api/tasks/edit-me", json=definition)
        assert sent_back.status_code == 200, sent_back.text
        assert sent_back.json()["definition"] == definition
        assert client.get("/api/tasks/edit-me").json()["definition"] == definition
        on_disk = json.loads(api_file(env, "edit-me").read_text())
        assert on_disk["env"]["API_TOKEN"] == SECRET
        assert on_disk["env"]["DB_PASSWORD"] == SECRET + "-pw"
        assert mode(api_file(env, "edit-me")) == 0o600
        assert lines_of(env, "edit-me") == line
        # The runner gets the real value too.
        spec = json.loads(spec_file(env, "edit-me").read_text())
        assert spec["env"]["API_TOKEN"] == SECRET

        changed = {**definition, "schedule": "*/20 * * * *"}
        response = client.put("/api/tasks/edit-me", json=changed)
        assert response.status_code == 200, response.text
        assert response.json()["schedule"] == ["*/20 * * * *"]
        assert lines_of(env, "edit-me") == [
            f"*/20 * * * * {wrapper(env, 'edit-me')} # agency-cron:edit-me"
        ]
        assert json.loads(api_file(env, "edit-me").read_text())["env"]["API_TOKEN"] == SECRET
        assert_foreign_intact(env)

        # A new value replaces the secret; the name in the body must match the URL.
        fresh = {**changed, "env": {**changed["env"], "API_TOKEN": "another-secret-value"}}
        assert client.put("/api/tasks/edit-me", json=fresh).status_code == 200
        on_disk = json.loads(api_file(env, "edit-me").read_text())
        assert on_disk["env"]["API_TOKEN"] == "another-secret-value"
        assert on_disk["env"]["DB_PASSWORD"] == SECRET + "-pw"
        assert_problem(client.put("/api/tasks/edit-me", json={**fresh, "name": "other"}), 422)
        assert_problem(client.put("/api/tasks/missing", json=task_body("missing")), 404)

    audit = audit_path(env).read_text()
    assert SECRET not in audit
    assert "another-secret-value" not in audit
    updates = [
        e
        for e in audit_entries(env)
        if e["action"] in ("create", "update") and e["outcome"] == "done"
    ]
    assert updates and all(e["detail"]["env"]["API_TOKEN"] == "***" for e in updates)
    assert all(e["detail"]["env"]["GREETING"] == "hello" for e in updates)


def test_round_trip_keeps_a_dollar_escape(api):
    """`$$` is the manifest's literal `$`: a command that leaves `${HOME}` to the shell
    must still do so after GET's definition went back with PUT.

    BUG (admin.definition_of): the definition shows the values after ${VAR} expansion
    (`echo ${HOME}`), and PUT expands them again, so the round trip turns the command into
    `echo /root` (or refuses it with 422 when the variable is unset)."""
    env = api.env
    with api.client() as client:
        create(client, task_body("dollar", 'echo "$${HOME}" "$${AGENCY_TEST_UNSET:-dflt}"'))
        spec_before = json.loads(spec_file(env, "dollar").read_text())["command"]
        assert spec_before == 'echo "${HOME}" "${AGENCY_TEST_UNSET:-dflt}"'
        definition = client.get("/api/tasks/dollar").json()["definition"]
        response = client.put("/api/tasks/dollar", json=definition)
        assert response.status_code == 200, response.text
        assert response.json()["definition"] == definition, (
            "BUG admin.definition_of: GET's definition does not survive PUT: `$$` escapes"
            f" are shown expanded and expanded again: {response.json()['definition']}"
        )
    spec_after = json.loads(spec_file(env, "dollar").read_text())["command"]
    assert spec_after == spec_before, f"the round trip changed the command to {spec_after!r}"


def test_masked_secret_with_a_dollar_keeps_its_value(api):
    """`***` sent back keeps the real value, also when that value holds a `$`.

    BUG (admin._kept_secrets): the kept value is the expanded one, written into a
    document that is expanded again on load: `pa$$word` (written `pa$$$$word`) becomes
    `pa$word` after one GET/PUT round trip."""
    env = api.env
    with api.client() as client:
        create(client, task_body("dollar-secret", env={"DB_PASSWORD": "pa$$$$word-0123"}))
        real = json.loads(spec_file(env, "dollar-secret").read_text())["env"]["DB_PASSWORD"]
        assert real == "pa$$word-0123"
        definition = client.get("/api/tasks/dollar-secret").json()["definition"]
        assert definition["env"] == {"DB_PASSWORD": "***"}
        response = client.put("/api/tasks/dollar-secret", json=definition)
        assert response.status_code == 200, response.text
    after = json.loads(spec_file(env, "dollar-secret").read_text())["env"]["DB_PASSWORD"]
    assert after == real, (
        f"BUG admin._kept_secrets: '***' sent back changed the secret from {real!r} to {after!r}"
    )


def test_operator_tasks_are_read_only_and_api_tasks_deletable(api):
    env = api.env
    with api.client() as client:
        nightly = client.get("/api/tasks/nightly").json()
        before = env.crontab.read_bytes()
        problem = assert_problem(
            client.put(
                "/api/tasks/nightly", json={**nightly["definition"], "schedule": "0 5 * * *"}
            ),
            403,
        )
        assert "API_EDITS_MANIFEST" in problem["detail"]
        assert_problem(client.delete("/api/tasks/nightly"), 409)
        assert env.crontab.read_bytes() == before
        assert not api_file(env, "nightly").exists()
        assert client.get("/api/tasks/nightly").json()["schedule"] == ["0 3 * * *"]

        create(client, task_body("gone-soon"))
        assert lines_of(env, "gone-soon")
        assert spec_file(env, "gone-soon").exists()
        response = client.delete("/api/tasks/gone-soon")
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert lines_of(env, "gone-soon") == []
        assert not spec_file(env, "gone-soon").exists()
        assert not api_file(env, "gone-soon").exists()
        assert not wrapper(env, "gone-soon").exists()
        assert_foreign_intact(env)
        assert lines_of(env, "nightly") and lines_of(env, "hourly")
        assert_problem(client.get("/api/tasks/gone-soon"), 404)
        assert_problem(client.delete("/api/tasks/gone-soon"), 404)


def test_api_edits_manifest_lets_a_copy_replace_an_operator_task(
    api_config, write_config, make_server
):
    env = api_config
    write_config(env, "API_EDITS_MANIFEST=true\n")
    server = make_server()
    with server.client() as client:
        nightly = client.get("/api/tasks/nightly").json()
        assert (nightly["source"], nightly["read_only"]) == ("manifest", False)
        original = lines_of(env, "nightly")
        assert original == [f"0 3 * * * {wrapper(env, 'nightly')} # agency-cron:nightly"]

        edited = {**nightly["definition"], "schedule": "0 5 * * *"}
        response = client.put("/api/tasks/nightly", json=edited)
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["source"], view["read_only"], view["schedule"]) == (
            "api",
            False,
            ["0 5 * * *"],
        )
        assert api_file(env, "nightly").is_file()
        assert lines_of(env, "nightly") == [
            f"0 5 * * * {wrapper(env, 'nightly')} # agency-cron:nightly"
        ]
        names = [item["name"] for item in client.get("/api/tasks").json()["items"]]
        assert names == ["nightly", "hourly"]
        assert_foreign_intact(env)

        response = client.delete("/api/tasks/nightly")
        assert response.status_code == 204, response.text
        assert not api_file(env, "nightly").exists()
        back = client.get("/api/tasks/nightly").json()
        assert (back["source"], back["schedule"]) == ("manifest", ["0 3 * * *"])
        assert lines_of(env, "nightly") == original
        assert spec_file(env, "nightly").exists()
        assert_foreign_intact(env)
        # Only the copy can go: the operator's version stays.
        assert_problem(client.delete("/api/tasks/nightly"), 409)


# --------------------------------------------------------------------------- 5. run now


def test_run_now_returns_at_once_and_the_run_is_recorded(api):
    env = api.env
    go = env.root / "go"
    # The command waits for a file the test writes once the 202 is in: a request that
    # waited for the run would never come back.
    command = (
        f"for i in $(seq 600); do [ -e {go} ] && break; sleep 0.05; done; echo RUN-MARK-$((6*7))"
    )
    with api.client() as client:
        create(client, task_body("marker", command))
        run_id = run_now(client, "marker")
        early = client.get(f"/api/runs/{run_id}")  # in history from its start, or not yet
        assert early.status_code == 404 or early.json()["status"] == "running", early.text
        wait_for(
            "marker running",
            lambda: client.get("/api/tasks/marker").json()["state"] == "running",
        )
        go.write_text("")
        run = final_run(client, run_id)
        assert run["run_id"] == run_id
        assert run["task"] == "marker"
        assert (run["status"], run["exit_code"]) == ("success", 0)
        assert len(run["attempts"]) == 1
        assert run["attempts"][0]["run_id"] == run_id
        assert run["log"] == str(env.log_dir / "marker.log")
        excerpt = run["log_excerpt"]
        assert "RUN-MARK-42" in excerpt
        assert re.search(rf"agency-cron: start task=marker run={run_id} attempt=1/1", excerpt[0])
        assert re.search(
            rf"agency-cron: end task=marker run={run_id} attempt=1/1 .* status=success",
            excerpt[-1],
        )

        page = client.get("/api/tasks/marker/executions").json()
        assert (page["total"], page["limit"], page["offset"]) == (1, 50, 0)
        assert [item["run_id"] for item in page["items"]] == [run_id]
        assert page["items"][0]["status"] == "success"

        # A second run: newest first, and the page fields follow.
        go.unlink()
        second = run_now(client, "marker")
        go.write_text("")
        final_run(client, second)
        page = client.get("/api/tasks/marker/executions").json()
        assert [item["run_id"] for item in page["items"]] == [second, run_id]
        assert page["total"] == 2
        paged = client.get("/api/tasks/marker/executions", params={"limit": 1, "offset": 1})
        assert paged.json() == {**page, "items": page["items"][1:], "limit": 1, "offset": 1}
        assert client.get("/api/tasks/marker").json()["state"] == "ok"

        assert_problem(client.get("/api/runs/0123456789ab"), 404)
        assert_problem(client.get("/api/runs/not-a-run"), 422)
        assert_problem(client.post("/api/tasks/missing/actions/run"), 404)
    with api.client(READ_TOKEN) as reader:
        assert_problem(reader.post("/api/tasks/marker/actions/run"), 403)
        assert reader.get(f"/api/runs/{run_id}").json()["status"] == "success"


# --------------------------------------------------------------------------- 6. pause/resume


def test_pause_and_resume_survive_install(api, cli_process):
    env = api.env
    active = f"0 3 * * * {wrapper(env, 'nightly')} # agency-cron:nightly"
    assert lines_of(env, "nightly") == [active]
    with api.client() as client:
        response = client.post("/api/tasks/nightly/actions/pause")
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["enabled"], view["state"]) == (False, "disabled")
        [line] = lines_of(env, "nightly")
        assert line.startswith("# ")
        assert line == f"# {active}"
        assert_foreign_intact(env)

        install = cli_process(*env.args("install"))
        assert install.returncode == 0, install.stderr
        assert lines_of(env, "nightly") == [f"# {active}"]
        view = client.get("/api/tasks/nightly").json()
        assert (view["enabled"], view["state"]) == (False, "disabled")
        listed = {
            row["name"]: row for row in json.loads(cli_process(*env.args("list", "--json")).stdout)
        }
        assert listed["nightly"]["enabled"] is False

        response = client.post("/api/tasks/nightly/actions/resume")
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["enabled"], view["state"]) == (True, "never-run")
        assert lines_of(env, "nightly") == [active]

        install = cli_process(*env.args("install"))
        assert install.returncode == 0, install.stderr
        assert lines_of(env, "nightly") == [active]
        assert client.get("/api/tasks/nightly").json()["enabled"] is True
        assert lines_of(env, "hourly") and not lines_of(env, "hourly")[0].startswith("#")
        assert_foreign_intact(env)
    with api.client(READ_TOKEN) as reader:
        assert_problem(reader.post("/api/tasks/nightly/actions/pause"), 403)
    assert lines_of(env, "nightly") == [active]


# --------------------------------------------------------------------------- 7. reset-retries


def stop_runner(env, name: str) -> None:
    """SIGTERM the runner this test started for `name` if it is still there (a failed
    test must not leave it sleeping out a 10-minute retry delay)."""
    try:
        pid = int((env.state_dir / "locks" / f"{name}.lock").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"agency_cron.runner" in command:
        os.kill(pid, signal.SIGTERM)


def test_reset_retries_starts_the_waiting_attempt_now(api):
    body = task_body("flaky", "echo flaky-try; exit 3", retries=1, retry_delay="10m")
    with api.client() as client:
        create(client, body)
        run_id = run_now(client, "flaky")
        try:

            def waiting():
                items = client.get("/api/tasks/flaky/executions").json()["items"]
                return bool(items) and (items[0]["run_id"], items[0]["status"]) == (
                    run_id,
                    "retry-scheduled",
                )

            wait_for("first attempt of flaky failed, retry scheduled", waiting)
            response = client.post("/api/tasks/flaky/actions/reset-retries")
            assert response.status_code == 200, response.text
            assert response.json() == {"task": "flaky", "run_id": run_id, "reset": True}

            # Within the poll's 30 s, not after the 10-minute delay.
            run = final_run(client, run_id, attempts=2)
        finally:
            stop_runner(api.env, "flaky")
        assert (run["status"], run["exit_code"]) == ("failed", 3)
        assert [a["attempt"] for a in run["attempts"]] == [1, 2]
        assert [a["status"] for a in run["attempts"]] == ["retry-scheduled", "failed"]
        assert "retries reset" in "\n".join(run["log_excerpt"])
        assert client.get("/api/tasks/flaky").json()["state"] == "failing"

        # Nothing is waiting now, nor for a task that never ran.
        assert_problem(client.post("/api/tasks/flaky/actions/reset-retries"), 409)
        assert_problem(client.post("/api/tasks/nightly/actions/reset-retries"), 409)
        assert_problem(client.post("/api/tasks/missing/actions/reset-retries"), 404)


# --------------------------------------------------------------------------- 8. health


def test_health_reports_an_overdue_task(api):
    env = api.env
    with api.client() as client:
        response = client.get("/api/health")
        assert response.status_code == 200, response.text
        assert response.json() == {"healthy": True, "overdue": [], "host": "all"}

        create(client, task_body("watched", schedule="* * * * *", expect_within="1m"))
        hour_ago = time.time() - 3600
        for path in (spec_file(env, "watched"), env.state_dir / "tasks" / "watched.marshal"):
            assert path.exists(), path
            os.utime(path, (hour_ago, hour_ago))

        response = client.get("/api/health")
        assert response.status_code == 503, response.text
        health = response.json()
        assert health["healthy"] is False
        assert [item["name"] for item in health["overdue"]] == ["watched"]
        assert "never succeeded" in health["overdue"][0]["reason"]

        # Paused, it is not expected to run.
        assert client.post("/api/tasks/watched/actions/pause").status_code == 200
        for path in (spec_file(env, "watched"), env.state_dir / "tasks" / "watched.marshal"):
            os.utime(path, (hour_ago, hour_ago))
        assert client.get("/api/health").json() == {"healthy": True, "overdue": [], "host": "all"}


# --------------------------------------------------------------------------- 9. summary


def test_summary_matches_log_summary_json(api, cli_process):
    env = api.env
    with api.client() as client:
        create(client, task_body("fails", "exit 1"))
        for name in ("hourly", "hourly", "fails"):
            final_run(client, run_now(client, name))
        response = client.get("/api/summary")
        assert response.status_code == 200, response.text
        served = response.json()
        only = client.get("/api/summary", params={"task": "hourly", "since": "7d"}).json()
        assert_problem(client.get("/api/summary", params={"task": "missing"}), 404)

    result = cli_process(*env.args("log-summary", "--json"))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    figures = ("name", "runs", "failures", "last_status", "enabled", "overdue")

    def rows(summary):
        return [tuple(row[key] for key in figures) for row in summary["tasks"]]

    assert rows(served) == rows(printed)
    assert rows(served) == [
        ("nightly", 0, 0, None, True, False),
        ("hourly", 2, 0, "success", True, False),
        ("fails", 1, 1, "failed", True, False),
    ]
    assert served["version"] == printed["version"] == 1

    result = cli_process(*env.args("log-summary", "--json", "--task", "hourly", "--since", "7d"))
    assert result.returncode == 0, result.stderr
    assert (
        rows(only) == rows(json.loads(result.stdout)) == [("hourly", 2, 0, "success", True, False)]
    )


# --------------------------------------------------------------------------- 10. audit


def test_every_write_is_audited(api):
    env = api.env
    with api.client() as client:
        create(client, task_body("audited", "echo audited"))
        update = client.put("/api/tasks/audited", json=task_body("audited", "echo changed"))
        assert update.status_code == 200, update.text
        assert client.post("/api/tasks/audited/actions/pause").status_code == 200
        assert client.post("/api/tasks/audited/actions/resume").status_code == 200
        run_id = run_now(client, "audited")
        final_run(client, run_id)
        assert client.delete("/api/tasks/audited").status_code == 204
        refused = client.post(
            "/api/tasks", json={**task_body("audit-bad"), "schedule": "0 0 31 2 *"}
        )
        assert_problem(refused, 422)

    entries = audit_entries(env)
    assert [(e["action"], e["task"], e["outcome"]) for e in entries] == [
        ("create", "audited", "done"),
        ("update", "audited", "done"),
        ("pause", "audited", "done"),
        ("resume", "audited", "done"),
        ("run", "audited", "started"),
        ("delete", "audited", "done"),
        ("create", "audit-bad", "refused"),
    ]
    for entry in entries:
        assert entry["actor"] == "admin"
        assert CLIENT.match(entry["client"]), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"])
    assert entries[0]["detail"] == task_body("audited", "echo audited")
    assert entries[4]["detail"]["run_id"] == run_id
    assert entries[6]["detail"] == refused.json()["errors"]
    assert mode(audit_path(env)) == 0o600


# --------------------------------------------------------------------------- 11. no token


def tokenless(env) -> None:
    """The env fixture's installation with the operator's manifest and no token."""
    env.write_manifest(
        """\
        tasks:
          - name: nightly
            schedule: "0 3 * * *"
            command: echo nightly
        """
    )
    env.crontab.write_text(FOREIGN)
    assert "ADMIN_TOKEN" not in env.config.read_text()


def run_briefly(cli_process, *args: str) -> subprocess.CompletedProcess:
    try:
        return cli_process(*args, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(args)}: still serving after 20s, expected it to refuse to start")


def test_serve_without_a_token_refuses_to_start(env, cli_process):
    tokenless(env)
    result = run_briefly(cli_process, *env.args("serve", "--port", str(free_port())))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agency-cron: error: ADMIN_TOKEN")
    assert "--insecure-localhost" in lines[0]


def test_insecure_localhost_refuses_a_public_address(env, cli_process):
    tokenless(env)
    result = run_briefly(
        cli_process,
        *env.args("serve", "--insecure-localhost", "--host", "0.0.0.0", "--port", str(free_port())),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "0.0.0.0" in lines[0] and "loopback" in lines[0]


def test_insecure_localhost_serves_without_a_token(env, serving):
    tokenless(env)
    with (
        serving(env.args(), env.root / "serve.log", "--insecure-localhost") as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        page = client.get("/api/tasks")
        assert page.status_code == 200, page.text
        assert [item["name"] for item in page.json()["items"]] == ["nightly"]
        created = client.post("/api/tasks", json=task_body("local-job"))
        assert created.status_code == 201, created.text
    assert lines_of(env, "local-job")
    assert_foreign_intact(env)
    [entry] = audit_entries(env)
    assert (entry["actor"], entry["action"], entry["outcome"]) == (
        "insecure-localhost",
        "create",
        "done",
    )
    assert CLIENT.match(entry["client"])


def test_a_secret_expanded_into_an_operator_task_is_masked(api_config, make_server):
    """${CRM_TOKEN} in an operator's env value (not secret-named) is the token's value once
    loaded: never shown. (In the command it is refused: see test_hostile_manifest.py.)"""
    env = api_config
    token = "crm-token-value-0123456789"
    env.add_config(f"CRM_TOKEN={token}\n")
    env.write_manifest(
        """\
        tasks:
          - name: crm-sync
            schedule: "0 5 * * *"
            env: {AUTH_HEADER: "Authorization: Bearer ${CRM_TOKEN}"}
            command: 'curl -fsS -H "$AUTH_HEADER" http://127.0.0.1:9/sync'
        """
    )
    server = make_server()
    with server.client() as client:
        listing = client.get("/api/tasks")
        single = client.get("/api/tasks/crm-sync")
    for response in (listing, single):
        assert response.status_code == 200, response.text
        assert token not in response.text
    header = single.json()["definition"]["env"]["AUTH_HEADER"]
    assert header == "Authorization: Bearer ***"
