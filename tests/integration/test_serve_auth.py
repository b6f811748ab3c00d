"""Authentication and authorisation of the admin API, over real HTTP against `serve`.

Every route the server describes in /openapi.json (but `/` and /openapi.json) is taken
from that description, so a route added later is covered without touching this file.
Path parameters are filled in with tasks that exist (the operator's `nightly` and one made
through the API) and run id `0`; write routes get a valid body, so a request that got
past the token check would really change something.

The constant-time property of the token comparison is measured in-process at the end.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path

import httpx

from agency_cron.config import load_settings
from agency_cron.serve import auth

# Redefined here: tests cannot import conftest under importlib mode.
ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
PROBLEM = "application/problem+json"
WRITE_METHODS = {"post", "put", "delete", "patch"}
HTTP_METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}
UNAUTHENTICATED = {"/", "/openapi.json"}
API_TASK = "made-by-api"  # created through the API by the tests that need one
PATH_VALUES = {"run_id": "0"}

WRONG_TOKENS = {
    "same length, last character changed": ADMIN_TOKEN[:-1] + "X",
    "same length, first character changed": "X" + ADMIN_TOKEN[1:],
    "a prefix of the right one": ADMIN_TOKEN[:12],
    "a prefix plus other characters": ADMIN_TOKEN[:12] + "0000000000000000",
    "the right one plus more": ADMIN_TOKEN + "x",
    "the read token plus more": READ_TOKEN + "x",
    "the right one in another case": ADMIN_TOKEN.upper(),
}
WRONG_HEADERS = {
    "empty Bearer": "Bearer ",
    "Bearer and nothing": "Bearer",
    "Bearer and spaces": "Bearer    ",
    "right token, Basic scheme": f"Basic {ADMIN_TOKEN}",
    "right token, Token scheme": f"Token {ADMIN_TOKEN}",
    "right token, no scheme": ADMIN_TOKEN,
}
QUERY_TOKENS = {
    "token": ADMIN_TOKEN,
    "access_token": ADMIN_TOKEN,
    "Token": "anything-at-all",
    "ACCESS_TOKEN": READ_TOKEN,
    "api_key": ADMIN_TOKEN,
    # The real tokens as the value of a parameter with any other name, including ones
    # that the routes do take.
    "q": ADMIN_TOKEN,
    "redirect": READ_TOKEN,
    "tag": ADMIN_TOKEN,
    "since": ADMIN_TOKEN,
    "name": READ_TOKEN,
}
# What an error body must never carry: a stack trace or where the server's code lives.
PYTHON_SOURCE = re.compile(r"[\w./\\-]+\.py\b|site-packages|File \"")


# --- helpers -----------------------------------------------------------------------------


def openapi(server) -> dict:
    response = httpx.get(f"{server.url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def routes(spec: dict) -> list[tuple[str, str, dict]]:
    """(method, path template, operation) for every protected route of the description."""
    found = [
        (method, path, operation)
        for path, item in spec["paths"].items()
        if path not in UNAUTHENTICATED
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    # A description that lost its routes would make every loop below pass vacuously.
    assert len(found) >= 10, sorted((m, p) for m, p, _ in found)
    assert any(m in WRITE_METHODS for m, _, _ in found)
    assert any(m == "get" for m, _, _ in found)
    return found


def requests_for(spec: dict, names=("nightly",)):
    """(method, url path, json body or None, label) for every protected route, once per task
    name for routes that take one."""
    for method, template, operation in routes(spec):
        params = set(re.findall(r"{(\w+)}", template))
        for name in names if "name" in params else (None,):
            path = template
            for param in params:
                value = name if param == "name" else PATH_VALUES[param]
                path = path.replace(f"{{{param}}}", value)
            body = None
            if "requestBody" in operation:
                body = {
                    "name": name or "intruder",
                    "schedule": "0 5 * * *",
                    "command": "echo intruder",
                }
            yield method.upper(), path, body, f"{method.upper()} {path}"


def send(client: httpx.Client, method: str, path: str, body, headers=None, params=None):
    return client.request(method, path, json=body, headers=headers or {}, params=params)


def anonymous(server) -> httpx.Client:
    """A client that sends no Authorization header unless a request gives one."""
    return httpx.Client(base_url=server.url, timeout=30)


def assert_problem(response: httpx.Response, status: int, label: str) -> dict:
    """`response` is a problem+json error of `status` that gives nothing away."""
    assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM), (label, response.headers)
    body = response.json()
    assert body["status"] == status, (label, body)
    assert isinstance(body["title"], str) and body["title"], (label, body)
    assert isinstance(body["detail"], str) and body["detail"], (label, body)
    assert_no_internals(response, label)
    return body


def assert_no_internals(response: httpx.Response, label: str) -> None:
    text = response.text
    assert "Traceback" not in text, (label, text)
    assert not PYTHON_SOURCE.search(text), (label, text)
    assert ADMIN_TOKEN not in text and READ_TOKEN not in text, (label, text)


def assert_unauthorized(response: httpx.Response, label: str) -> None:
    assert_problem(response, 401, label)
    assert response.headers.get("www-authenticate", "").startswith("Bearer"), (
        label,
        response.headers,
    )


def written_state(env) -> dict:
    """What a write would change: the crontab's bytes, and every file under STATE_DIR and
    AGENCY_ROOT with its bytes and mtime (the history database and lock files aside: reads
    may touch those; and the audit log's refusals, which test_serve_hardening.py checks)."""
    found: dict = {"crontab": env.crontab.read_bytes(), "changes audited": []}
    for root in (env.state_dir, env.agency_root):
        for path in sorted(root.rglob("*")):
            if path.name == "audit.log":
                found["changes audited"] = changes_audited(path)
            elif path.is_file() and "history.db" not in path.name and path.suffix != ".lock":
                found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def changes_audited(path: Path) -> list[dict]:
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in entries if e["outcome"] not in ("refused", "suppressed")]


def api_dir(state: dict, env) -> dict:
    prefix = str(env.state_dir / "api") + "/"
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def make_api_task(server) -> None:
    with server.client(ADMIN_TOKEN) as client:
        response = client.post(
            "/api/tasks", json={"name": API_TASK, "schedule": "0 6 * * *", "command": "true"}
        )
    assert response.status_code == 201, response.text


# --- no token, wrong tokens --------------------------------------------------------------


def test_every_route_declares_the_bearer_scheme(api):
    spec = openapi(api)
    for method, path, operation in routes(spec):
        assert operation.get("security"), f"{method.upper()} {path} declares no security"
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values()), schemes


def test_no_authorization_header_is_401(api):
    make_api_task(api)
    before = written_state(api.env)
    with anonymous(api) as client:
        for method, path, body, label in requests_for(openapi(api), ("nightly", API_TASK)):
            assert_unauthorized(send(client, method, path, body), label)
            assert_unauthorized(send(client, method, path, None), f"{label} without a body")
    assert written_state(api.env) == before


def test_wrong_token_is_401(api):
    make_api_task(api)
    before = written_state(api.env)
    spec = openapi(api)
    with anonymous(api) as client:
        for kind, token in WRONG_TOKENS.items():
            headers = {"Authorization": f"Bearer {token}"}
            for method, path, body, label in requests_for(spec, ("nightly", API_TASK)):
                response = send(client, method, path, body, headers)
                assert_unauthorized(response, f"{kind}: {label}")
    assert written_state(api.env) == before


def raw_request(server, method: str, path: str, authorization: str, body) -> httpx.Response:
    """A request with the Authorization header exactly as given, through http.client:
    httpx refuses to send a header value that ends in a space."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.putrequest(method, path)
        connection.putheader("Authorization", authorization)
        if payload is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        raw = connection.getresponse()
        return httpx.Response(raw.status, headers=raw.getheaders(), content=raw.read())
    finally:
        connection.close()


def test_malformed_authorization_header_is_401(api):
    before = written_state(api.env)
    spec = openapi(api)
    for kind, authorization in WRONG_HEADERS.items():
        for method, path, body, label in requests_for(spec):
            response = raw_request(api, method, path, authorization, body)
            assert_unauthorized(response, f"{kind}: {label}")
    assert written_state(api.env) == before


def test_unparseable_body_without_a_token_is_401(api):
    """The token is checked before anything of the request is read: an anonymous caller
    learns nothing from how its body is parsed (nor makes the server parse it)."""
    with_body = [r for r in requests_for(openapi(api)) if r[2] is not None]
    assert with_body, "no route takes a body"
    with anonymous(api) as client:
        for method, path, _, label in with_body:
            for content in (b"{not json", b"[1, 2"):
                response = client.request(
                    method, path, content=content, headers={"Content-Type": "application/json"}
                )
                assert_unauthorized(response, f"{label} with body {content!r}")


# --- the read-only token -----------------------------------------------------------------


def test_read_token_on_write_routes_is_403_and_writes_nothing(api):
    make_api_task(api)
    before = written_state(api.env)
    writes = [r for r in requests_for(openapi(api), ("nightly", API_TASK)) if r[0] != "GET"]
    assert {r[0] for r in writes} >= {"POST", "PUT", "DELETE"}, writes
    with api.client(READ_TOKEN) as client:
        for method, path, body, label in writes:
            assert_problem(send(client, method, path, body), 403, label)
    after = written_state(api.env)
    assert after["crontab"] == before["crontab"]
    assert api_dir(after, api.env) == api_dir(before, api.env)
    assert after == before


def test_read_token_may_read_every_get_route(api):
    reads = [r for r in requests_for(openapi(api)) if r[0] == "GET"]
    with api.client(READ_TOKEN) as client:
        for method, path, body, label in reads:
            response = send(client, method, path, body)
            assert response.status_code not in (401, 403), f"{label}: {response.text}"
            assert response.status_code < 500, f"{label}: {response.text}"
            if response.status_code >= 400:
                assert_problem(response, response.status_code, label)
        listing = send(client, "GET", "/api/tasks", None)
    assert listing.status_code == 200, listing.text
    assert {t["name"] for t in listing.json()["items"]} >= {"nightly", "hourly"}


# --- tokens in the URL -------------------------------------------------------------------


def test_token_in_query_string_is_401_even_with_a_valid_header(api):
    make_api_task(api)
    before = written_state(api.env)
    spec = openapi(api)
    for header in (ADMIN_TOKEN, READ_TOKEN):
        with api.client(header) as client:
            for method, path, body, label in requests_for(spec, ("nightly", API_TASK)):
                for key, value in QUERY_TOKENS.items():
                    response = send(client, method, path, body, params={key: value})
                    assert_unauthorized(response, f"{label}?{key}=...")
                # Among other, harmless parameters too.
                params = [("limit", "5"), ("x", ADMIN_TOKEN)]
                response = send(client, method, path, body, params=params)
                assert_unauthorized(response, f"{label}?limit=5&x=ADMIN_TOKEN")
    assert written_state(api.env) == before


def test_query_string_without_a_token_is_no_reason_to_refuse(api):
    """The refusal is about tokens in URLs, not about query strings: a normal parameter
    with the admin header goes through."""
    with api.client(ADMIN_TOKEN) as client:
        response = client.get("/api/tasks", params={"tag": "ops", "limit": 5})
    assert response.status_code == 200, response.text
    assert {t["name"] for t in response.json()["items"]} == {"nightly", "hourly"}


# --- error bodies ------------------------------------------------------------------------


def test_error_bodies_never_carry_a_trace_or_source_paths(api):
    """Errors of every kind the server has, with the admin token: each is problem+json,
    never a 5xx, never a trace or the path of a Python source."""
    long_name = "a" * 300
    cases = [
        ("GET", "/api/tasks/no-such-task", None, None),
        ("GET", "/api/tasks/..", None, None),
        ("GET", "/api/tasks/%2e%2e%2fetc", None, None),
        ("GET", "/api/tasks/-leading-dash", None, None),
        ("GET", f"/api/tasks/{long_name}", None, None),
        ("GET", "/api/tasks/nightly%00", None, None),
        ("GET", "/api/tasks?limit=0", None, None),
        ("GET", "/api/tasks?limit=abc", None, None),
        ("GET", "/api/tasks?offset=-1", None, None),
        ("GET", "/api/tasks?state=bogus", None, None),
        ("GET", "/api/runs/not-hex", None, None),
        ("GET", "/api/runs/ffffffff", None, None),
        ("GET", "/api/summary?since=forever", None, None),
        ("GET", "/api/summary?since=-5h", None, None),
        ("GET", "/api/summary?task=no-such-task", None, None),
        ("GET", "/api/summary?task=..", None, None),
        ("GET", "/api/tasks/no-such-task/executions", None, None),
        ("GET", "/api/no-such-route", None, None),
        ("PATCH", "/api/tasks", None, None),
        ("DELETE", "/api/tasks", None, None),
        ("POST", "/api/tasks", None, b"{not json"),
        ("POST", "/api/tasks", None, b"[1, 2, 3]"),
        ("POST", "/api/tasks", None, b'"just a string"'),
        ("POST", "/api/tasks", {}, None),
        ("POST", "/api/tasks", {"name": 5, "schedule": [], "command": None}, None),
        ("POST", "/api/tasks", {"name": "../../etc/passwd", "command": "true"}, None),
        ("POST", "/api/tasks", {"name": "x", "schedule": "61 * * * *", "command": "true"}, None),
        ("POST", "/api/tasks", {"name": "x", "schedule": "@daily", "unknown": 1}, None),
        ("POST", "/api/tasks", {"name": "nightly", "schedule": "@daily", "command": "t"}, None),
        ("PUT", "/api/tasks/nightly", {"name": "nightly", "schedule": "@daily"}, None),
        ("PUT", "/api/tasks/nightly", {"name": "other", "schedule": "@daily"}, None),
        ("PUT", "/api/tasks/no-such-task", {"schedule": "@daily", "command": "t"}, None),
        ("DELETE", "/api/tasks/nightly", None, None),
        ("DELETE", "/api/tasks/no-such-task", None, None),
        ("POST", "/api/tasks/nightly/actions/reset-retries", None, None),
        ("POST", "/api/tasks/nightly/actions/no-such-action", None, None),
        ("POST", "/api/tasks/no-such-task/actions/run", None, None),
        ("POST", "/api/tasks/no-such-task/actions/pause", None, None),
    ]
    with api.client(ADMIN_TOKEN) as client:
        for method, path, body, content in cases:
            label = f"{method} {path} {body or content!r}"
            headers = {"Content-Type": "application/json"} if content else {}
            response = client.request(method, path, json=body, content=content, headers=headers)
            status = response.status_code
            assert 400 <= status < 500, f"{label}: {status} {response.text}"
            assert_problem(response, status, label)


# --- constant time -----------------------------------------------------------------------


def _elapsed(tokens: auth.Tokens, presented: str) -> int:
    started = time.perf_counter_ns()
    auth.role_of(tokens, presented)
    return time.perf_counter_ns() - started


def test_token_comparison_takes_as_long_however_much_of_a_wrong_token_matches(tmp_path: Path):
    """role_of must not leak how much of a wrong token matched the right one.

    With a 1 MiB admin token, a byte-by-byte comparison (`==`) stops at the first
    difference: a guess wrong only in its last character would take about a thousand
    times longer to refuse than one wrong in its first. Both are timed interleaved, and
    the minimum of each is kept (the least disturbed run).

    The bound is a ratio of the two minimums, not an absolute time: how long a megabyte
    takes to hash or compare depends on the machine and on its load, but both guesses
    run on the same machine at the same moment, so only a difference in the work done
    for them moves the ratio far from 1.
    """
    right = "A" * (1024 * 1024)
    config = tmp_path / "config.env"
    config.write_text("")
    settings = load_settings(config, environ={"ADMIN_TOKEN": right, "ADMIN_READ_TOKEN": READ_TOKEN})
    tokens = auth.load_tokens(settings)
    late = right[:-1] + "B"  # wrong only in the last character
    early = "B" + right[1:]  # wrong from the first character
    assert auth.role_of(tokens, right) == auth.ADMIN
    assert auth.role_of(tokens, READ_TOKEN) == auth.READ
    assert auth.role_of(tokens, late) is None
    assert auth.role_of(tokens, early) is None

    for _ in range(3):  # warm up caches and the allocator
        _elapsed(tokens, late)
        _elapsed(tokens, early)
    late_times, early_times = [], []
    for _ in range(30):
        late_times.append(_elapsed(tokens, late))
        early_times.append(_elapsed(tokens, early))
    ratio = min(late_times) / min(early_times)
    assert 0.5 <= ratio <= 2.0, (
        f"wrong-at-the-end {min(late_times)} ns vs wrong-at-the-start"
        f" {min(early_times)} ns: ratio {ratio:.2f}"
    )
