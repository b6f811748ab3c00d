"""`agency-cron serve` against hostile and careless clients, over real sockets.

Real `python -m agency_cron serve` processes (the `make_server` fixture of
tests/integration/conftest.py: tokens, the operator's manifest, a `file:` crontab):
stopping it by signal, a port already taken, every kind of refused request in the audit
log, a flood of refusals, clients that send a request one header line at a time, more
idle connections than the cap, and bodies of 100 MB with and without Content-Length.
Nothing here asserts how fast anything is: only what is kept, refused, closed or written.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import httpx

from agency_cron import admin
from agency_cron.serve import refusals

# The same values as tests/integration/conftest.py (conftest cannot be imported here).
ADMIN_TOKEN = "admin-0123456789abcdef-secret"
READ_TOKEN = "read-0123456789abcdef-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NO_TOKENS = {"ADMIN_TOKEN": "", "ADMIN_READ_TOKEN": ""}
PROBLEM = "application/problem+json"
MIB = 1024 * 1024


def audit_path(env):
    return env.state_dir / "api" / "audit.log"


def audit_entries(env) -> list[dict]:
    path = audit_path(env)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stop(server, sig=signal.SIGTERM) -> int:
    server.process.send_signal(sig)
    return server.process.wait(timeout=60)


def host_port(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def raw_connection(server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(host_port(server), timeout=30, source_address=(source, 0))
    return sock


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def serve_once(env, *extra: str, environ: dict | None = None) -> subprocess.CompletedProcess:
    """`serve` expected to refuse to start: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "agency_cron", *env.args("serve", *extra)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", **(environ or {})},
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [expected], result.stderr


# --- stopping -----------------------------------------------------------------------------


def test_sigterm_and_sigint_exit_0_even_with_a_slow_client_connected(make_server):
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = make_server()
        slow = raw_connection(server)
        slow.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        assert stop(server, sig) == 0, server.output()
        assert "Traceback" not in server.output()
        assert slow.recv(100) == b""  # the server closed it on its way out
        slow.close()


# --- where it cannot listen -----------------------------------------------------------------


def test_a_port_in_use_is_one_line_and_exit_2(api_config):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = serve_once(api_config, "--port", str(port))
        assert_one_line(
            result, f"agency-cron: error: 127.0.0.1:{port}: address already in use (--port)"
        )
        taken.settimeout(5)
        with socket.create_connection(("127.0.0.1", port)):
            taken.accept()[0].close()  # the socket's owner still has its port


def test_a_bad_host_is_one_line_and_exit_2(api_config):
    result = serve_once(api_config, "--host", "no-such-host.invalid", "--port", "8765")
    assert_one_line(
        result,
        "agency-cron: error: --host: 'no-such-host.invalid': cannot resolve it"
        " (Name or service not known)",
    )
    # A documentation address (RFC 5737) that is no address of this machine.
    result = serve_once(api_config, "--host", "192.0.2.7", "--port", "8765")
    assert_one_line(
        result, "agency-cron: error: 192.0.2.7:8765: cannot assign requested address (--host)"
    )


def test_bad_limits_are_refused_before_serving(api_config):
    result = serve_once(api_config, environ={"API_MAX_BODY": "lots", "API_HEADER_TIMEOUT": "0"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "agency-cron: error: environment: API_MAX_BODY: expected a size in bytes >= 1"
        " (1048576, 512K, 1M), got 'lots'",
        "agency-cron: error: environment: API_HEADER_TIMEOUT: expected seconds > 0, got '0'",
    ]


# --- refusals in the audit log --------------------------------------------------------------


def refused_entries(env) -> list[dict]:
    return [e for e in audit_entries(env) if e["outcome"] == "refused"]


def test_every_kind_of_refusal_is_audited(make_server):
    server = make_server()
    url = server.url
    wrong = ADMIN_TOKEN[:-1] + "X"
    read, basic = f"Bearer {READ_TOKEN}", f"Basic {ADMIN_TOKEN}"
    kinds = [  # (method, path, headers) -> (status, actor, reason, task)
        ("GET", "/api/tasks", {}, 401, "anonymous", "no token", None),
        ("GET", "/api/tasks", {"Authorization": f"Bearer {wrong}"}, 401, "anonymous", "wrong token", None),
        ("GET", "/api/tasks", {"Authorization": basic}, 401, "anonymous", "not a Bearer token", None),
        ("POST", "/api/tasks/nightly/actions/pause", {"Authorization": read}, 403, "read-only",
         "read-only token on a write", "nightly"),
        ("GET", f"/api/tasks?access_token={ADMIN_TOKEN}", {}, 401, "anonymous", "token in the URL", None),
        ("POST", "/api/tasks/nightly/actions/run", {**ADMIN, "Sec-Fetch-Site": "cross-site"}, 403,
         "admin", "Sec-Fetch-Site: cross-site", "nightly"),
        ("DELETE", "/api/tasks/nightly", {**ADMIN, "Origin": "https://evil.example"}, 403,
         "admin", "Origin: https://evil.example", "nightly"),
    ]  # fmt: skip
    for method, path, headers, status, *_ in kinds:
        answer = httpx.request(method, url + path, headers=headers, timeout=30)
        assert answer.status_code == status, (path, headers, answer.text)
    tokenless = make_server("--insecure-localhost", environ=NO_TOKENS)
    rebound = httpx.get(tokenless.url + "/api/tasks", headers={"Host": "evil.example"})
    assert rebound.status_code == 403, rebound.text
    foreign_host = "Host 'evil.example' is not a loopback name (no token configured)"

    entries = refused_entries(server.env)
    found = [
        (e["action"], e["detail"]["status"], e["actor"], e["detail"]["reason"], e["task"])
        for e in entries
    ]
    assert found == [
        (f"{method} {path.split('?')[0]}", *rest) for method, path, _, *rest in kinds
    ] + [("GET /api/tasks", 403, "insecure-localhost", foreign_host, None)]
    for entry in entries:
        assert entry["client"].startswith("127.0.0.1:")
        assert entry["user_agent"].startswith("python-httpx/")
    text = audit_path(server.env).read_text()
    assert ADMIN_TOKEN not in text and READ_TOKEN not in text and wrong not in text
    # Nothing was done: the operator's task is still there and not paused.
    task = httpx.get(f"{url}/api/tasks/nightly", headers=ADMIN, timeout=30).json()
    assert task["enabled"] is True


def test_a_flood_of_refusals_leaves_the_audit_log_bounded_and_counted(make_server):
    server = make_server()
    flood = 5000
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(flood):
            assert client.get("/api/tasks").status_code == 401
    # The summary of the last window is written at the latest when the server stops.
    assert stop(server) == 0, server.output()
    entries = audit_entries(server.env)
    refused = [e for e in entries if e["outcome"] == "refused"]
    summaries = [e for e in entries if e["outcome"] == "suppressed"]
    # One minute's worth of lines (two if the flood straddled the end of a window).
    assert refusals.PER_CLIENT <= len(refused) <= 2 * refusals.PER_CLIENT
    assert len(summaries) in (1, 2)  # one summary per minute boundary crossed
    assert {e["client"] for e in summaries} == {"127.0.0.1"}
    # Nothing lost silently: every refusal is a line or counted in a summary.
    assert len(refused) + sum(e["detail"]["refusals"] for e in summaries) == flood
    assert audit_path(server.env).stat().st_size < 64 * 1024


def test_a_flood_from_many_addresses_is_bounded_in_all(make_server):
    server = make_server()
    sources, each = [f"127.0.0.{n}" for n in range(2, 42)], 40  # 40 clients, 1,600 refusals
    for source in sources:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=server.url, transport=transport, timeout=30) as client:
            for _ in range(each):
                assert client.get("/api/tasks").status_code == 401
    assert stop(server) == 0, server.output()
    entries = audit_entries(server.env)
    refused = [e for e in entries if e["outcome"] == "refused"]
    summaries = [e for e in entries if e["outcome"] == "suppressed"]
    assert len(refused) <= 2 * refusals.TOTAL
    assert len(summaries) <= 2 * (refusals.SUMMARIZED + 1)
    assert refusals.OTHERS in {e["client"] for e in summaries}
    # The first clients' first refusals are there, each client within its share.
    by_client = {}
    for entry in refused:
        host = entry["client"].rsplit(":", 1)[0]
        by_client[host] = by_client.get(host, 0) + 1
    assert by_client["127.0.0.2"] >= refusals.PER_CLIENT
    assert max(by_client.values()) <= 2 * refusals.PER_CLIENT
    assert len(refused) + sum(e["detail"]["refusals"] for e in summaries) == len(sources) * each


def test_a_full_audit_log_is_rotated_once(make_server):
    server = make_server()
    path = audit_path(server.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Short lines: the file ends less than one of them below the cap, a refusal is longer.
    line = json.dumps({"outcome": "done", "detail": "x" * 40}) + "\n"
    path.write_text(line * (admin.AUDIT_MAX_BYTES // len(line)), encoding="ascii")
    before = path.read_bytes()
    for _ in range(3):
        assert httpx.get(server.url + "/api/tasks", timeout=30).status_code == 401
    rotated = path.with_name("audit.log.1")
    assert rotated.read_bytes() == before  # the old lines whole, in audit.log.1
    assert len(refused_entries(server.env)) == 3  # and the new ones in a new audit.log
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.glob("audit.log*")) == ["audit.log", "audit.log.1"]


# --- slow clients and many connections --------------------------------------------------------


def lines_sent_before_close(sock: socket.socket, first: bytes, line: bytes, most: int) -> int:
    """Send `first`, then `line` every 2 s (waiting for the server meanwhile) until the
    server closes the connection or `most` lines went out; returns the lines sent."""
    sock.sendall(first)
    for sent in range(most):
        readable, _, _ = select.select([sock], [], [], 2)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return sent
            if not data or data.startswith(b"HTTP/1.1 408 "):
                return sent
            raise AssertionError(f"unexpected answer: {data[:200]!r}")
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            return sent
    return most


def logged(server, line: str, within: float = 15) -> bool:
    """The server's log names `line`, waited for: the log is written after the close the
    client saw, and on a busy machine the write can come a moment later."""
    deadline = time.monotonic() + within
    while line not in server.output():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_client_sending_one_header_line_every_2s_is_dropped(make_server):
    server = make_server(environ={"API_HEADER_TIMEOUT": "3"})
    with raw_connection(server) as slow:
        sent = lines_sent_before_close(
            slow, b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n", 10
        )
    assert sent < 10, "the server kept a client that never finished its head"
    assert logged(server, "request not received within 3s (API_HEADER_TIMEOUT); closed")
    # Others are still served.
    assert httpx.get(server.url + "/api/tasks", headers=ADMIN, timeout=30).status_code == 200


def test_a_client_sending_its_body_one_byte_every_2s_is_dropped(make_server):
    server = make_server(environ={"API_HEADER_TIMEOUT": "3"})
    head = (
        "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    with raw_connection(server) as slow:
        sent = lines_sent_before_close(slow, head, b" ", 10)
    assert sent < 10, "the server kept a client that never finished its body"
    assert logged(server, "request not received within 3s (API_HEADER_TIMEOUT); closed")
    assert "Traceback" not in server.output()


def status_of_request(sock: socket.socket) -> bytes:
    """Send one request on `sock` and return its status line (b"reset" if refused so)."""
    request = (
        f"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"
        "\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = b""
    try:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    except (BrokenPipeError, ConnectionResetError):
        return answer.split(b"\r\n")[0] or b"reset"
    return answer.split(b"\r\n")[0]


def test_connections_beyond_the_cap_are_refused(make_server):
    cap, tried = 20, 40
    server = make_server(environ={"API_MAX_CONNECTIONS": str(cap), "API_HEADER_TIMEOUT": "60"})
    idle = [raw_connection(server) for _ in range(tried)]
    try:
        refused, pending = [], list(idle)
        while pending and len(refused) < tried - cap:  # the refused ones hear at once
            readable, _, _ = select.select(pending, [], [], 30)
            assert readable, f"only {len(refused)} of {tried - cap} refused"
            for sock in readable:
                refused.append(sock.recv(65536))
                pending.remove(sock)
        for answer in refused:
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
            assert b"API_MAX_CONNECTIONS" in answer
        # The ones within the cap were held open, idle, and are served now.
        statuses = [status_of_request(sock) for sock in pending]
    finally:
        for sock in idle:
            sock.close()
    served = statuses.count(b"HTTP/1.1 200 OK")
    # The fixture's own probe may still have counted as open when the first ones came in:
    # then one more was refused, late.
    assert served in (cap, cap - 1), statuses
    late = [s for s in statuses if s != b"HTTP/1.1 200 OK"]
    assert all(s.startswith(b"HTTP/1.1 503 ") or s == b"reset" for s in late), late
    # Once they are gone, the server takes new connections again.
    for _ in range(3):
        assert httpx.get(server.url + "/api/tasks", headers=ADMIN, timeout=30).status_code == 200


# --- bodies --------------------------------------------------------------------------------


def assert_too_large(answer: httpx.Response, limit: int = MIB) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json() == {
        "type": "about:blank",
        "title": "Content too large",
        "status": 413,
        "detail": f"the request body is larger than API_MAX_BODY ({limit} bytes)",
        "errors": [],
    }


def chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b" " * size


def post_task(server, content) -> httpx.Response:
    headers = {**ADMIN, "Content-Type": "application/json"}
    return httpx.post(f"{server.url}/api/tasks", content=content, headers=headers, timeout=120)


def test_a_100_mb_body_is_refused_without_being_buffered(make_server):
    server = make_server()
    pid = server.process.pid
    assert_too_large(post_task(server, b" " * (2 * MIB)))  # every code path warmed up once
    assert_too_large(post_task(server, chunks(2 * MIB)))
    before = vm_rss_kib(pid)
    assert_too_large(post_task(server, b" " * (100 * MIB)))  # with Content-Length
    after_declared = vm_rss_kib(pid)
    answer = post_task(server, chunks(100 * MIB))  # chunked: counted as it streams
    assert "content-length" not in answer.request.headers
    assert_too_large(answer)
    after_chunked = vm_rss_kib(pid)
    assert after_declared - before < 4 * 1024, (before, after_declared)
    assert after_chunked - before < 4 * 1024, (before, after_chunked)
    # Nothing was created, and a body within the limit still works.
    created = post_task(
        server, json.dumps({"name": "small", "schedule": "@hourly", "command": "true"})
    )
    assert created.status_code == 201, created.text


def test_the_body_limit_is_configurable(make_server):
    server = make_server(environ={"API_MAX_BODY": "1K"})
    body = json.dumps({"name": "tiny", "schedule": "@hourly", "command": "true"})
    assert post_task(server, body).status_code == 201
    padded = json.dumps({"name": "padded", "schedule": "@hourly", "command": "x" * 2000})
    assert_too_large(post_task(server, padded), 1024)
    assert_too_large(post_task(server, chunks(64 * 1024, 512)), 1024)
    names = [t["name"] for t in httpx.get(f"{server.url}/api/tasks", headers=ADMIN).json()["items"]]
    assert "padded" not in names and "tiny" in names
