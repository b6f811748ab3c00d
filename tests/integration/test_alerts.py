"""alerts.send against real servers on 127.0.0.1: an HTTP endpoint, an SMTP server, a target that
never answers and a port where nothing listens. No mocks; every server binds port 0."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from agency_cron import alerts
from agency_cron.secrets import MARKER

SECRET = "s3cr3t-from-the-env"
URL_PASSWORD = "hunter2pass"


def make_event(**overrides) -> dict:
    """A finished run as the runner describes it."""
    event = {
        "host": "web-01",
        "task": "health-check",
        "status": "failed",
        "exit_code": 3,
        "duration_s": 12.5,
        "attempt": 2,
        "attempts": 3,
        "run_id": "run-42",
        "output_tail": f"checking disks\nusing token {SECRET}\ndisk /srv is 97% full\n",
    }
    event.update(overrides)
    return event


@pytest.fixture
def http_target(http_recorder):
    """A real HTTP server (tests/conftest.py's recorder, answering 200): its port and the
    requests it got so far."""
    return http_recorder.port, http_recorder.requests


@pytest.fixture
def smtp_target(smtp_inbox):
    """A real SMTP server (plain, AUTH allowed without TLS, as Apprise's mode=insecure expects)."""
    return smtp_inbox.port, smtp_inbox


@pytest.fixture
def silent_target() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never reads nor answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]
    # Closing the listener resets the pending connections, so abandoned requests end too.


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_json_alert_carries_the_run_and_no_secret(http_target, caplog):
    port, received = http_target
    url = f"json://user:{URL_PASSWORD}@127.0.0.1:{port}/hooks/tok3n-in-the-path"
    caplog.set_level(logging.DEBUG)  # Apprise logs request URLs and payloads at DEBUG

    outcome = alerts.send([url], "failure", make_event(), [SECRET], timeout=10)

    assert outcome == "sent to 1 target(s)"
    assert len(received) == 1
    request = received[0]
    payload = request.json()
    assert payload["title"] == "[agency-cron] FAILED health-check on web-01"
    message = payload["message"]
    for expected in ("web-01", "health-check", "status: failed", "exit code: 3", "attempt 2 of 3"):
        assert expected in message
    assert "run-42" in message and "12.5" in message
    assert "disk /srv is 97% full" in message
    headers = {k: v for k, v in request.headers if k.lower() != "authorization"}
    seen = request.line + json.dumps(headers) + request.body.decode()
    assert_clean(seen, SECRET, URL_PASSWORD)
    assert MARKER in message  # the secret was there, masked
    assert_clean(outcome + caplog.text, SECRET, URL_PASSWORD, "tok3n-in-the-path")


def test_recovery_and_ok_titles(http_target):
    port, received = http_target
    url = f"json://127.0.0.1:{port}/"
    event = make_event(status="success", exit_code=0, output_tail="")

    assert alerts.send([url], "recovery", event, [], timeout=10) == "sent to 1 target(s)"
    assert alerts.send([url], "success", event, [], timeout=10) == "sent to 1 target(s)"

    titles = [r.json()["title"] for r in received]
    assert titles == [
        "[agency-cron] RECOVERED health-check on web-01",
        "[agency-cron] OK health-check on web-01",
    ]


def test_output_keeps_the_end_and_never_half_a_secret(http_target):
    port, received = http_target
    # Cutting before redacting would keep the last 5 characters of the secret.
    tail = "A" * 5000 + SECRET + "y" * (2000 - 5 - len("THE-END")) + "THE-END"
    outcome = alerts.send(
        [f"json://127.0.0.1:{port}/"], "failure", make_event(output_tail=tail), [SECRET], 10
    )

    assert outcome == "sent to 1 target(s)"
    message = received[0].json()["message"]
    assert message.endswith("THE-END")
    assert "A" * 10 not in message
    assert SECRET[-5:] not in message


def test_email_alert_arrives_over_plain_smtp(smtp_target):
    port, inbox = smtp_target
    url = f"mailto://user:pass@127.0.0.1:{port}?from=a@example.com&to=b@example.com&mode=insecure"

    outcome = alerts.send([url], "failure", make_event(), [SECRET], timeout=10)

    assert outcome == "sent to 1 target(s)"
    assert len(inbox.messages) == 1
    mail = inbox.messages[0].decode()
    assert "health-check" in mail and "b@example.com" in mail
    assert SECRET not in mail
    assert inbox.logins == [(b"user", b"pass")]


def test_silent_target_is_a_bounded_wait(silent_target):
    started = time.monotonic()
    outcome = alerts.send(
        [f"json://127.0.0.1:{silent_target}/"], "failure", make_event(), [], timeout=3
    )

    assert time.monotonic() - started < 3 + 2
    assert outcome.startswith(("timed out", "failed"))


def test_silent_target_with_long_apprise_timeouts_times_out(silent_target):
    # The URL's own cto/rto win over ours, so only send()'s own join can end the wait.
    url = f"json://127.0.0.1:{silent_target}/?cto=60&rto=60"
    started = time.monotonic()
    outcome = alerts.send([url], "failure", make_event(), [], timeout=3)

    assert time.monotonic() - started < 3 + 2
    assert outcome == "timed out after 3s"


def test_refused_connection_fails(closed_port):
    url = f"json://user:{URL_PASSWORD}@127.0.0.1:{closed_port}/"
    outcome = alerts.send([url], "failure", make_event(), [SECRET], timeout=5)

    assert outcome.startswith("failed")
    assert_clean(outcome, URL_PASSWORD, SECRET)


def test_invalid_url_fails_with_the_url_redacted():
    url = "nosuchscheme://abcdef0123456789token"
    outcome = alerts.send([url], "failure", make_event(), [], timeout=5)

    assert outcome.startswith("failed: invalid alert URL")
    assert "abcdef0123456789token" not in outcome


def test_invalid_url_does_not_stop_the_valid_ones(http_target):
    port, received = http_target
    urls = ["nosuchscheme://abcdef0123456789token", f"json://127.0.0.1:{port}/"]
    outcome = alerts.send(urls, "failure", make_event(), [], timeout=10)

    assert outcome.startswith("failed: invalid alert URL #1")
    assert len(received) == 1


def test_no_targets():
    assert alerts.send([], "failure", make_event(), [SECRET]) == "no alert targets"
