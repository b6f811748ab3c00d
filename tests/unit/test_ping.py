"""agency_cron.ping: URL templates, masking, the run's UUID, the final ping's body, and the
helper process that sends the pings (against a real HTTP server on 127.0.0.1).

The helper is forked, so its tests drive it from a separate Python process: pytest's own
process runs the recorder's server threads, and the runner forks from a single thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from agency_cron import ping, secrets

CANONICAL_UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
CHECK_UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
PING_KEY = "fqOOd6-F4MMNuCEnzTU01w"


# --- templates and validation ----------------------------------------------------------


def test_resolve_fills_in_the_name_and_none_opts_out():
    assert (
        ping.resolve("https://hc-ping.com/KEY/{name}", "backup") == "https://hc-ping.com/KEY/backup"
    )
    assert (
        ping.resolve(f" https://hc-ping.com/{CHECK_UUID} ", "x")
        == f"https://hc-ping.com/{CHECK_UUID}"
    )
    for nothing in (None, "", "  ", "none", "None", "NONE"):
        assert ping.resolve(nothing, "backup") is None


@pytest.mark.parametrize(
    "url",
    [
        f"https://hc-ping.com/{CHECK_UUID}",
        f"https://hc-ping.com/{PING_KEY}/{{name}}",
        f"https://hc-ping.com/{PING_KEY}/{{name}}?create=1",
        "http://127.0.0.1:8000/ping/{name}",
        "HTTPS://user:secret@hc.example.com/ping/abc/",
        "none",
    ],
)
def test_problem_accepts_http_urls_with_the_name_placeholder(url):
    assert ping.problem(url) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"ftp://hc-ping.com/{CHECK_UUID}", "expected an http:// or https:// URL"),
        (f"hc-ping.com/{CHECK_UUID}", "expected an http:// or https:// URL"),
        ("https:///path-only", "has no host"),
        (f"https://hc-ping.com/{CHECK_UUID} extra", "must not contain spaces"),
        (f"https://hc-ping.com/{CHECK_UUID}\nx", "must not contain spaces"),
        ("https://hc-ping.com/KEY/{task}", "the only placeholder is {name}"),
        ("https://hc-ping.com/KEY/{name", "the only placeholder is {name}"),
        (f"https://hc-ping.com/{CHECK_UUID}#x", "#fragment"),
        (f"https://hc-ping.com:99999/{CHECK_UUID}", "cannot parse"),
    ],
)
def test_problem_names_what_is_wrong_and_masks_the_check(url, words):
    found = ping.problem(url)
    assert found is not None and words in found
    assert CHECK_UUID not in found


# --- secrets and masking -----------------------------------------------------------------


def test_a_check_uuid_is_a_secret_and_masked():
    url = f"https://hc-ping.com/{CHECK_UUID}"
    assert set(secrets.ping_url_secrets(url)) == {url, CHECK_UUID}
    assert secrets.masked_ping_url(url) == "https://hc-ping.com/***"
    # Whatever the case: healthchecks.io accepts upper-case UUIDs too.
    assert secrets.masked_ping_url(
        url.upper().replace("HTTPS://HC-PING.COM", "https://hc-ping.com")
    ) == ("https://hc-ping.com/***")


def test_the_ping_key_of_a_slug_url_is_a_secret_the_slug_is_not():
    url = f"https://hc-ping.com/{PING_KEY}/nightly-database-backup"
    found = secrets.ping_url_secrets(url, "nightly-database-backup")
    assert PING_KEY in found and "nightly-database-backup" not in found
    assert secrets.masked_ping_url(url, "nightly-database-backup") == (
        "https://hc-ping.com/***/nightly-database-backup"
    )
    template = f"https://hc-ping.com/{PING_KEY}/{{name}}"
    assert secrets.masked_ping_url(template) == "https://hc-ping.com/***/{name}"


def test_credentials_and_query_tokens_are_secrets_words_are_not():
    url = "https://opsuser:s3cr%40t@hc.example.com/ping/backup?api_token=abcdef123&create=1"
    found = secrets.ping_url_secrets(url, "backup")
    assert {"opsuser", "s3cr%40t", "s3cr@t", "abcdef123"} <= set(found)
    assert not {"ping", "backup", "create", "hc.example.com"} & set(found)
    assert (
        secrets.masked_ping_url(url, "backup")
        == "https://***:***@hc.example.com/ping/backup?api_token=***&create=1"
    )


def test_a_local_url_without_secrets_masks_nothing_but_itself():
    url = "http://127.0.0.1:8000/ping/backup"
    assert secrets.ping_url_secrets(url, "backup") == [url]
    assert secrets.masked_ping_url(url, "backup") == url


# --- the run's UUID, the final ping -----------------------------------------------------


def test_rid_is_a_canonical_uuid_derived_from_the_run_id():
    rid = ping.rid_of("a1b2c3d4e5f6")
    assert CANONICAL_UUID.match(rid)
    assert str(uuid.UUID(rid)) == rid and uuid.UUID(rid).version == 4
    assert ping.rid_of("a1b2c3d4e5f6") == rid  # found again for a lost run
    others = {ping.rid_of(os.urandom(6).hex()) for _ in range(1000)}
    assert len(others) == 1000 and all(CANONICAL_UUID.match(r) for r in others)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("success", 0, "success"),
        ("failed", 3, "3"),
        ("failed", 255, "255"),
        ("failed", None, "fail"),
        ("timeout", 124, "fail"),
        ("killed", 143, "fail"),
        ("lost", None, "fail"),
    ],
)
def test_signal_of_each_ending(status, code, expected):
    assert ping.signal_of(status, code) == expected


def test_ping_urls_of_each_signal():
    rid = ping.rid_of("abc")
    base = f"https://hc-ping.com/{CHECK_UUID}"
    assert ping.ping_url(base, "start", rid) == f"{base}/start?rid={rid}"
    assert ping.ping_url(base + "/", "success", rid) == f"{base}?rid={rid}"
    assert ping.ping_url(base, "3", rid) == f"{base}/3?rid={rid}"
    slug = f"https://hc-ping.com/{PING_KEY}/backup?create=1"
    assert ping.ping_url(slug, "fail", rid) == (
        f"https://hc-ping.com/{PING_KEY}/backup/fail?create=1&rid={rid}"
    )


def test_body_keeps_the_header_and_the_last_whole_lines_within_the_limit():
    lines = b"".join(b"line %05d \xc3\xa9\n" % n for n in range(5000))
    found = ping.body("task backup failed", lines)
    assert len(found) <= ping.BODY_LIMIT
    assert found.startswith(b"task backup failed\n")
    rest = found.split(b"\n", 1)[1]
    assert rest.endswith(b"line 04999 \xc3\xa9\n")
    assert re.match(rb"^line \d{5} ", rest)  # starts at a line, not inside one
    rest.decode("utf-8")  # never half a character
    assert ping.body("head", b"short\n") == b"head\nshort\n"


# --- the helper process, against a real server ---------------------------------------------

DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    from agency_cron import ping, secrets

    args = json.loads(sys.argv[1])
    pinger = ping.Pinger(args["url"], args["run_id"], ping.Budget(args["budget"]))
    began = time.monotonic()
    if args.get("start", True):
        pinger.start()
    print(json.dumps({"helper": pinger.pid}), flush=True)
    if args.get("die"):
        os.kill(os.getpid(), 9)
    time.sleep(args.get("command_s", 0))
    if args.get("term_helper"):
        os.kill(pinger.pid, 15)
    outcome = pinger.finish(args.get("action", "success"), args.get("body", "").encode())
    print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - began}))
    """
)


def drive(environ: dict | None = None, **args) -> dict:
    """Run the pinger in a fresh process; its report (helper pid, outcome, seconds)."""
    args.setdefault("run_id", "a1b2c3d4e5f6")
    args.setdefault("budget", 5)
    quiet = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**quiet, **(environ or {})},
    )
    assert done.returncode == (-9 if args.get("die") else 0), done.stderr
    report: dict = {}
    for line in done.stdout.splitlines():
        report.update(json.loads(line))
    return report


def test_start_then_final_share_one_rid(http_recorder):
    url = f"{http_recorder.url}/ping/{CHECK_UUID}"
    report = drive(url=url, action="3", body="last line\n", command_s=0.2)
    assert report["outcome"] == "ok"
    start, final = http_recorder.requests
    assert (start.method, start.path, start.body) == ("GET", f"/ping/{CHECK_UUID}/start", b"")
    assert (final.method, final.path, final.body) == (
        "POST",
        f"/ping/{CHECK_UUID}/3",
        b"last line\n",
    )
    assert start.query["rid"] == final.query["rid"] == [ping.rid_of("a1b2c3d4e5f6")]
    assert final.header("Content-Type") == "text/plain; charset=utf-8"
    assert final.header("User-Agent") == "agency-cron"


def test_a_final_ping_alone_when_no_start_was_sent(http_recorder):
    report = drive(url=f"{http_recorder.url}/p", start=False, action="fail", body="lost")
    assert report["outcome"] == "ok"
    [only] = http_recorder.requests
    assert (only.method, only.path, only.body) == ("POST", "/p/fail", b"lost")


def test_a_4xx_answer_is_not_retried(http_recorder):
    http_recorder.answer(404, b"not found")
    report = drive(url=f"{http_recorder.url}/p", start=False)
    assert report["outcome"] == "failed (HTTP 404)"
    assert len(http_recorder.requests) == 1


def test_5xx_answers_are_retried_until_the_budget_is_spent(http_recorder):
    http_recorder.answer(503)
    report = drive(url=f"{http_recorder.url}/p", start=False, budget=2)
    tries = len(http_recorder.requests)
    assert tries >= 2 and {r.path for r in http_recorder.requests} == {"/p"}
    assert report["outcome"] == f"failed (HTTP 503, {tries} tries)"
    assert report["seconds"] < 2 + 1.5  # PING_TIMEOUT, plus the process's own start


def test_a_dropped_connection_is_retried_and_the_next_answer_counts(http_recorder):
    http_recorder.disconnect(path="/p/start")
    report = drive(url=f"{http_recorder.url}/p", command_s=0.5)
    assert report["outcome"].startswith("ok; start failed (")
    assert http_recorder.requests[-1].path == "/p"


def test_a_server_that_never_answers_costs_at_most_the_budget(http_recorder):
    http_recorder.hang()
    report = drive(url=f"{http_recorder.url}/p", budget=2)
    assert report["outcome"].startswith("failed (")
    assert report["seconds"] < 2 + 1.5
    assert not _alive(report["helper"])


def test_an_unresolvable_host_costs_at_most_the_budget():
    report = drive(url="http://nonexistent.invalid/p", budget=2)
    assert report["outcome"].startswith("failed (")
    assert report["seconds"] < 2 + 1.5


def test_the_helper_ignores_a_stop_signal_meant_for_the_run(http_recorder):
    report = drive(url=f"{http_recorder.url}/p", action="fail", term_helper=True, command_s=0.3)
    assert report["outcome"] == "ok"
    assert [r.path for r in http_recorder.requests] == ["/p/start", "/p/fail"]


def test_the_helper_ends_when_the_runner_dies(http_recorder):
    report = drive(url=f"{http_recorder.url}/p", die=True)
    deadline = time.monotonic() + 30  # a bound against a stuck test, not a timing check
    while _alive(report["helper"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(report["helper"])
    assert [r.path for r in http_recorder.requests] in ([], ["/p/start"])


def test_the_helper_holds_none_of_the_runners_descriptors(http_recorder, tmp_path):
    http_recorder.hang()  # the helper stays in its start ping while we look
    lock = tmp_path / "task.lock"
    code = textwrap.dedent(
        f"""
        import fcntl, json, os, time
        from agency_cron import ping, secrets
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        pinger = ping.Pinger({http_recorder.url + "/p"!r}, "abc", ping.Budget(3))
        pinger.start()
        time.sleep(0.5)
        fds = [os.readlink(f"/proc/{{pinger.pid}}/fd/{{n}}") for n in os.listdir(f"/proc/{{pinger.pid}}/fd")]
        print(json.dumps(fds))
        pinger.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fds = json.loads(done.stdout)
    assert str(lock) not in fds
    assert sum(target.startswith("pipe:") for target in fds) == 2  # its two, nothing else
    assert fds.count("/dev/null") == 3


def test_credentials_in_the_url_go_as_basic_auth(http_recorder):
    url = http_recorder.url.replace("http://", "http://ops:s%40cret@") + "/p"
    assert drive(url=url, start=False)["outcome"] == "ok"
    [only] = http_recorder.requests
    assert only.header("Authorization") == "Basic b3BzOnNAY3JldA=="  # ops:s@cret
    assert only.header("Host") == f"127.0.0.1:{http_recorder.port}"


def test_a_proxy_in_the_environment_is_used(http_recorder):
    # The recorder stands in for the proxy: the target's name never resolves.
    report = drive(
        environ={"http_proxy": http_recorder.url},
        url="http://nonexistent.invalid/p",
        action="fail",
    )
    assert report["outcome"] == "ok"
    assert [(r.method, r.path) for r in http_recorder.requests] == [
        ("GET", "/p/start"),
        ("POST", "/p/fail"),
    ]
    assert http_recorder.requests[0].header("Host") == "nonexistent.invalid"


@pytest.fixture
def tls_server(make_http_recorder, tls_certificate):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate (the recorder of
    tests/conftest.py): (url, cert, the paths it was asked for)."""
    cert, context = tls_certificate
    recorder = make_http_recorder(tls=context)
    recorder.answer(200, b"OK")
    return recorder.url, cert, recorder


def paths_of(recorder) -> list[str]:
    return [request.path for request in recorder.requests]


def test_https_with_a_trusted_certificate(tls_server):
    url, cert, recorder = tls_server
    report = drive(environ={"SSL_CERT_FILE": str(cert)}, url=f"{url}/p", action="3")
    assert report["outcome"] == "ok"
    assert paths_of(recorder) == ["/p/start", "/p/3"]


def test_https_with_an_untrusted_certificate_fails_at_once(tls_server):
    url, _, recorder = tls_server
    report = drive(url=f"{url}/p", start=False, budget=5)
    assert report["outcome"].startswith("failed (") and "certificate" in report["outcome"]
    assert "tries" not in report["outcome"]  # not retried: it would not verify later either
    assert paths_of(recorder) == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_importing_the_module_imports_no_http_client():
    # The runner imports ping.py for every run that pings; urllib is the helper's cost.
    code = "import sys, agency_cron.ping; print(sorted(m for m in sys.modules if m.startswith(('urllib', 'http', 'signal', 'enum'))))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.replace("'", '"')) == []
