"""The `http_recorder` fixture (tests/conftest.py) does what its tests will rely on: it records
every part of a request and answers, hangs or hangs up as told. Driven by a plain client
(http.client), so nothing of agency-cron is involved."""

from __future__ import annotations

import http.client
import socket

import pytest


def connect(recorder, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=timeout)


def test_records_method_path_query_headers_and_body(http_recorder):
    client = connect(http_recorder)
    client.request(
        "POST",
        "/ping/abc?status=fail&note=&note=two",
        body=b'{"ok": false}\x00\xff',
        headers={"Content-Type": "application/json", "X-Run": "r1"},
    )
    response = client.getresponse()
    assert (response.status, response.read()) == (200, b"")
    [request] = http_recorder.requests
    assert request.method == "POST"
    assert request.path == "/ping/abc"
    assert request.query == {"status": ["fail"], "note": ["", "two"]}
    assert request.body == b'{"ok": false}\x00\xff'
    assert request.header("content-type") == "application/json"
    assert request.header("X-RUN") == "r1"
    assert request.header("missing") is None
    assert ("X-Run", "r1") in request.headers


def test_a_chunked_body_is_recorded_whole(http_recorder):
    client = connect(http_recorder)
    client.request("PUT", "/up", body=iter([b"one ", b"two"]), encode_chunked=True)
    assert client.getresponse().status == 200
    assert http_recorder.requests[0].body == b"one two"


def test_answers_with_the_status_body_and_headers_it_is_given(http_recorder):
    http_recorder.answer(503, b"down", {"Retry-After": "5"})
    http_recorder.answer(204, path="/ok")
    client = connect(http_recorder)
    client.request("GET", "/x")
    response = client.getresponse()
    assert (response.status, response.read(), response.getheader("Retry-After")) == (
        503,
        b"down",
        "5",
    )
    client.request("GET", "/ok")  # the same kept-alive connection
    assert client.getresponse().status == 204
    assert [r.path for r in http_recorder.wait_for(2)] == ["/x", "/ok"]


def test_hang_records_the_request_and_never_answers(http_recorder):
    http_recorder.hang()
    client = connect(http_recorder, timeout=0.5)
    client.request("POST", "/slow", body=b"payload")
    with pytest.raises(socket.timeout):
        client.getresponse()
    assert http_recorder.wait_for(1)[0].body == b"payload"


def test_disconnect_hangs_up_without_an_answer(http_recorder):
    http_recorder.disconnect(path="/gone")
    client = connect(http_recorder)
    client.request("GET", "/gone")
    with pytest.raises(http.client.RemoteDisconnected):
        client.getresponse()
    client = connect(http_recorder)
    client.request("GET", "/other")  # other paths still answer
    assert client.getresponse().status == 200
    assert [r.path for r in http_recorder.requests] == ["/gone", "/other"]


def test_wait_for_fails_when_the_requests_do_not_come(http_recorder):
    with pytest.raises(AssertionError, match="0 of 1 requests arrived"):
        http_recorder.wait_for(1, timeout=0.2)
